"""The ledger's public read of balances: the view and ``ledger.reads`` say
the same, and a join on the view costs what a join on the table costs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

import asyncpg

from ledger import Account, AccountFlags, Ledger, Transfer, TransferFlags
from ledger.reads import ACCOUNT_BALANCES, debit_balance, pending, spendable
from rewards.programs import _BALANCE

NewLedger = Callable[[], Awaitable[int]]


async def test_the_view_derives_balances_as_the_python_functions_do(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    ledger_id = await new_ledger()
    flags = [
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
        AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
        AccountFlags(0),
        AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    ]
    wallet, debt, issuance, other = ids = [uuid.uuid4() for _ in flags]
    await ledger.create_accounts(
        [Account(id=i, ledger=ledger_id, code=1, flags=f) for i, f in zip(ids, flags, strict=True)]
    )

    def move(debit: uuid.UUID, credit: uuid.UUID, amount: int, **kw: object) -> Transfer:
        return Transfer(
            id=uuid.uuid4(),
            debit_account_id=debit,
            credit_account_id=credit,
            amount=amount,
            ledger=ledger_id,
            code=1,
            **kw,  # type: ignore[arg-type]
        )

    held = move(wallet, other, 30, flags=TransferFlags.PENDING)
    outcomes = await ledger.create_transfers(
        [
            move(issuance, wallet, 500),
            move(issuance, wallet, 70, flags=TransferFlags.PENDING),
            move(wallet, issuance, 120),
            held,
            move(debt, issuance, 40),
            move(issuance, debt, 15),
        ]
    )
    assert [o.result for o in outcomes] == ["ok"] * 6

    states = {s.id: s for s in await ledger.lookup_accounts(ids)}
    rows = await pool.fetch(f"SELECT * FROM {ACCOUNT_BALANCES} WHERE id = any($1::uuid[])", ids)
    assert len(rows) == len(ids)
    for row in rows:
        state = states[row["id"]]
        assert (row["ledger"], row["code"], row["flags"]) == (state.ledger, state.code, state.flags)
        balances = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
        assert [row[b] for b in balances] == [getattr(state, b) for b in balances]
        assert (row["spendable"], row["pending"], row["debit_balance"]) == (
            spendable(state),
            pending(state),
            debit_balance(state),
        )
    # Figures worked by hand, so that both sides cannot drift together.
    assert (spendable(states[wallet]), pending(states[wallet])) == (500 - 120 - 30, 70 + 30)
    assert debit_balance(states[debt]) == 40 - 15


def _plan_nodes(plan: list[asyncpg.Record]) -> list[str]:
    # Node types and the indexes they use; relation aliases differ (the
    # view's rows show as the table's).
    nodes = []
    for (line,) in plan:
        found = re.search(r"(?:->\s+)?([A-Z][A-Za-z ]+?)(?: using (\w+))?(?: on |$)", line.strip())
        if found and not line.strip().startswith(("Index Cond", "Filter", "Join Filter")):
            nodes.append(" ".join(filter(None, found.groups())))
    return nodes


async def test_the_member_balance_join_plans_as_the_join_on_the_table(
    pool: asyncpg.Pool,
) -> None:
    """The view is inlined: the member balance stays the key look-ups it was
    when it joined the accounts table (no scan of the view as a subquery)."""
    on_table = (
        _BALANCE.replace(f"{ACCOUNT_BALANCES} w", "accounts w")
        .replace(f"{ACCOUNT_BALANCES} d", "accounts d")
        .replace("w.spendable", "w.credits_posted - w.debits_posted - w.debits_pending")
        .replace("w.pending", "w.credits_pending + w.debits_pending")
        .replace("d.debit_balance", "d.debits_posted - d.credits_posted")
    )
    assert ACCOUNT_BALANCES not in on_table
    async with pool.acquire() as connection, connection.transaction():
        # What the planner does once members is large (as in production).
        await connection.execute("SET LOCAL enable_seqscan = off")
        args = (uuid.uuid4(), "m1")
        through_view = await connection.fetch(f"EXPLAIN (COSTS OFF) {_BALANCE}", *args)
        through_table = await connection.fetch(f"EXPLAIN (COSTS OFF) {on_table}", *args)
    nodes = _plan_nodes(through_view)
    assert nodes == _plan_nodes(through_table)
    assert "Subquery Scan" not in " ".join(nodes)
    assert sum("accounts_pkey" in n for n in nodes) == 2, nodes
