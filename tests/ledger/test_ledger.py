"""The ledger's Python API against real PostgreSQL: examples of each rule."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ledger import (
    Account,
    AccountFlags,
    BatchTooLarge,
    InvalidCursor,
    Ledger,
    Transfer,
    TransferFlags,
    check_invariants,
)

NewLedger = Callable[[], Awaitable[int]]
WALLET = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS


async def open_accounts(ledger: Ledger, ledger_id: int, *flags: AccountFlags) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in flags]
    outcomes = await ledger.create_accounts(
        [Account(id=i, ledger=ledger_id, code=1, flags=f) for i, f in zip(ids, flags, strict=True)]
    )
    assert [o.result for o in outcomes] == ["ok"] * len(ids)
    return ids


def earn(
    ledger_id: int, debit: uuid.UUID, credit: uuid.UUID, amount: int, **kw: object
) -> Transfer:
    return Transfer(
        id=kw.pop("id", None) or uuid.uuid4(),  # type: ignore[arg-type]
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger=ledger_id,
        code=1,
        **kw,  # type: ignore[arg-type]
    )


async def balances(ledger: Ledger, *ids: uuid.UUID) -> list[tuple[int, int, int, int]]:
    return [
        (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        for a in await ledger.lookup_accounts(list(ids))
    ]


async def test_accounts_are_idempotent(ledger: Ledger, new_ledger: NewLedger) -> None:
    ledger_id = await new_ledger()
    account_id = uuid.uuid4()
    first = Account(id=account_id, ledger=ledger_id, code=1, flags=WALLET)
    outcomes = await ledger.create_accounts(
        [first, first, Account(id=account_id, ledger=ledger_id, code=2)]
    )
    assert [o.result for o in outcomes] == ["ok", "exists", "exists_with_different_fields"]
    again = await ledger.create_accounts([first])
    assert again[0].result == "exists"
    bad = await ledger.create_accounts(
        [
            Account(id=uuid.uuid4(), ledger=999_999, code=1),
            Account(id=uuid.uuid4(), ledger=ledger_id, code=1, flags=AccountFlags(3)),
            Account(id=uuid.UUID(int=0), ledger=ledger_id, code=1),
        ]
    )
    assert [o.result for o in bad] == [
        "ledger_not_found",
        "flags_are_mutually_exclusive",
        "id_must_not_be_zero",
    ]


async def test_replay_returns_the_original_result(ledger: Ledger, new_ledger: NewLedger) -> None:
    ledger_id = await new_ledger()
    issuance, member = await open_accounts(ledger, ledger_id, AccountFlags.NONE, WALLET)
    transfer = earn(ledger_id, issuance, member, 100)
    [first] = await ledger.create_transfers([transfer])
    [replay] = await ledger.create_transfers([transfer])
    assert first.result == "ok" and replay.result == "exists"
    assert replay.timestamp == first.timestamp
    changed = earn(ledger_id, issuance, member, 101, id=transfer.id)
    [conflict] = await ledger.create_transfers([changed])
    assert conflict.result == "exists_with_different_fields"
    assert await balances(ledger, member) == [(0, 0, 0, 100)]


async def test_duplicates_inside_one_batch(ledger: Ledger, new_ledger: NewLedger) -> None:
    ledger_id = await new_ledger()
    issuance, member = await open_accounts(ledger, ledger_id, AccountFlags.NONE, WALLET)
    transfer = earn(ledger_id, issuance, member, 10)
    outcomes = await ledger.create_transfers(
        [transfer, transfer, earn(ledger_id, issuance, member, 11, id=transfer.id)]
    )
    assert [o.result for o in outcomes] == ["ok", "exists", "exists_with_different_fields"]
    assert outcomes[1].timestamp == outcomes[0].timestamp
    assert await balances(ledger, member) == [(0, 0, 0, 10)]


async def test_a_failed_id_stays_failed(ledger: Ledger, new_ledger: NewLedger) -> None:
    ledger_id = await new_ledger()
    issuance, member, shop = await open_accounts(
        ledger, ledger_id, AccountFlags.NONE, WALLET, AccountFlags.NONE
    )
    spend = earn(ledger_id, member, shop, 50)
    [failed] = await ledger.create_transfers([spend])
    assert failed.result == "exceeds_credits"
    await ledger.create_transfers([earn(ledger_id, issuance, member, 500)])
    # Funds have arrived, but the id failed: it keeps failing the same way.
    [retry] = await ledger.create_transfers([spend])
    assert retry.result == "exceeds_credits"
    assert await balances(ledger, member) == [(0, 0, 0, 500)]


async def test_bounded_accounts_and_validation(ledger: Ledger, new_ledger: NewLedger) -> None:
    ledger_id = await new_ledger()
    other_ledger = await new_ledger()
    issuance, member = await open_accounts(ledger, ledger_id, AccountFlags.NONE, WALLET)
    [elsewhere] = await open_accounts(ledger, other_ledger, AccountFlags.NONE)
    capped = (await open_accounts(ledger, ledger_id, AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS))[
        0
    ]
    outcomes = await ledger.create_transfers(
        [
            earn(ledger_id, issuance, member, 0),
            earn(ledger_id, issuance, issuance, 5),
            earn(ledger_id, uuid.uuid4(), member, 5),
            earn(ledger_id, issuance, uuid.uuid4(), 5),
            earn(ledger_id, issuance, elsewhere, 5),
            earn(ledger_id, member, issuance, 1),
            earn(ledger_id, issuance, capped, 1),
            earn(ledger_id, issuance, member, 5, timeout=10),
            earn(
                ledger_id, issuance, member, 5, effective_at=datetime.now(UTC) + timedelta(hours=1)
            ),
            earn(ledger_id, issuance, member, 5, pending_id=uuid.uuid4()),
            Transfer(
                id=uuid.UUID(int=0),
                debit_account_id=issuance,
                credit_account_id=member,
                amount=1,
                ledger=ledger_id,
                code=1,
            ),
        ]
    )
    assert [o.result for o in outcomes] == [
        "amount_must_be_positive",
        "accounts_must_be_different",
        "debit_account_not_found",
        "credit_account_not_found",
        "ledger_mismatch",
        "exceeds_credits",
        "exceeds_debits",
        "timeout_reserved_for_pending_transfer",
        "effective_at_must_not_be_in_future",
        "pending_id_must_be_zero",
        "id_must_not_be_zero",
    ]
    assert await balances(ledger, issuance, member) == [(0, 0, 0, 0), (0, 0, 0, 0)]
    with pytest.raises(BatchTooLarge):
        await ledger.create_transfers([earn(ledger_id, issuance, member, 1)] * 8001)


async def test_two_phase(ledger: Ledger, new_ledger: NewLedger) -> None:
    ledger_id = await new_ledger()
    issuance, member, shop = await open_accounts(
        ledger, ledger_id, AccountFlags.NONE, WALLET, AccountFlags.NONE
    )
    await ledger.create_transfers([earn(ledger_id, issuance, member, 100)])
    hold = earn(ledger_id, member, shop, 80, flags=TransferFlags.PENDING)
    [held] = await ledger.create_transfers([hold])
    assert held.result == "ok"
    # The hold reserves funds: a spend beyond what is left fails.
    [over] = await ledger.create_transfers([earn(ledger_id, member, shop, 30)])
    assert over.result == "exceeds_credits"
    assert await balances(ledger, member) == [(80, 0, 0, 100)]

    post = Transfer(
        id=uuid.uuid4(), pending_id=hold.id, flags=TransferFlags.POST_PENDING, amount=60
    )
    void = Transfer(id=uuid.uuid4(), pending_id=hold.id, flags=TransferFlags.VOID_PENDING)
    too_much = Transfer(
        id=uuid.uuid4(), pending_id=hold.id, flags=TransferFlags.POST_PENDING, amount=81
    )
    outcomes = await ledger.create_transfers([too_much, post, void])
    assert [o.result for o in outcomes] == [
        "exceeds_pending_amount",
        "ok",
        "pending_already_posted",
    ]
    # Posting 60 of 80 releases the other 20.
    assert await balances(ledger, member, shop) == [(0, 60, 0, 100), (0, 0, 0, 60)]
    [recorded] = await ledger.lookup_transfers([post.id])
    assert (recorded.debit_account_id, recorded.credit_account_id, recorded.amount) == (
        member,
        shop,
        60,
    )
    [unknown] = await ledger.create_transfers(
        [Transfer(id=uuid.uuid4(), pending_id=uuid.uuid4(), flags=TransferFlags.VOID_PENDING)]
    )
    assert unknown.result == "pending_not_found"
    assert await check_invariants(ledger.pool, ledger_id) == []


async def test_pending_times_out(ledger: Ledger, new_ledger: NewLedger) -> None:
    ledger_id = await new_ledger()
    issuance, member = await open_accounts(ledger, ledger_id, AccountFlags.NONE, WALLET)
    hold = earn(ledger_id, issuance, member, 40, flags=TransferFlags.PENDING, timeout=1)
    assert (await ledger.create_transfers([hold]))[0].result == "ok"
    await asyncio.sleep(1.2)
    post = Transfer(id=uuid.uuid4(), pending_id=hold.id, flags=TransferFlags.POST_PENDING)
    [late] = await ledger.create_transfers([post])
    assert late.result == "pending_expired"
    assert await ledger.expire_pending() >= 1
    assert await balances(ledger, member) == [(0, 0, 0, 0)]
    # A second sweep finds nothing; a second void is refused.
    assert await ledger.expire_pending() == 0
    [again] = await ledger.create_transfers(
        [Transfer(id=uuid.uuid4(), pending_id=hold.id, flags=TransferFlags.VOID_PENDING)]
    )
    assert again.result == "pending_already_voided"
    assert await check_invariants(ledger.pool, ledger_id) == []


async def test_linked_chain_is_all_or_nothing(ledger: Ledger, new_ledger: NewLedger) -> None:
    ledger_id = await new_ledger()
    issuance, member, partner_a, partner_b = await open_accounts(
        ledger, ledger_id, AccountFlags.NONE, WALLET, AccountFlags.NONE, AccountFlags.NONE
    )
    await ledger.create_transfers([earn(ledger_id, issuance, member, 100)])
    linked = TransferFlags.LINKED
    failing = [
        earn(ledger_id, member, partner_a, 60, flags=linked),
        earn(ledger_id, member, partner_b, 60),
    ]
    outcomes = await ledger.create_transfers(failing)
    assert [o.result for o in outcomes] == ["linked_event_failed", "exceeds_credits"]
    passing = [
        earn(ledger_id, member, partner_a, 60, flags=linked),
        earn(ledger_id, member, partner_b, 40),
        earn(ledger_id, issuance, member, 1, flags=linked),
    ]
    outcomes = await ledger.create_transfers(passing)
    assert [o.result for o in outcomes] == ["ok", "ok", "linked_event_chain_open"]
    assert await balances(ledger, member) == [(0, 100, 0, 100)]


async def test_history_pages_newest_first(ledger: Ledger, new_ledger: NewLedger) -> None:
    ledger_id = await new_ledger()
    issuance, member = await open_accounts(ledger, ledger_id, AccountFlags.NONE, WALLET)
    posted = []
    for amount in range(1, 8):
        [outcome] = await ledger.create_transfers([earn(ledger_id, issuance, member, amount)])
        posted.append(outcome.timestamp)
    seen: list[int] = []
    cursor = None
    while True:
        page = await ledger.history(member, limit=3, cursor=cursor)
        seen.extend(t.amount for t in page.transfers)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [7, 6, 5, 4, 3, 2, 1]
    with pytest.raises(InvalidCursor):
        await ledger.history(member, cursor="yesterday")


async def test_balances_as_of_a_past_time(
    ledger: Ledger, new_ledger: NewLedger, pool: asyncpg.Pool
) -> None:
    ledger_id = await new_ledger()
    issuance, member, shop = await open_accounts(
        ledger, ledger_id, AccountFlags.NONE, WALLET, AccountFlags.NONE
    )
    await ledger.create_transfers([earn(ledger_id, issuance, member, 100)])
    hold = earn(ledger_id, member, shop, 30, flags=TransferFlags.PENDING)
    await ledger.create_transfers([hold])
    between = await pool.fetchval("SELECT clock_timestamp()")
    await asyncio.sleep(0.01)
    await ledger.create_transfers(
        [
            Transfer(id=uuid.uuid4(), pending_id=hold.id, flags=TransferFlags.POST_PENDING),
            earn(ledger_id, issuance, member, 5),
        ]
    )
    [then] = await ledger.balances_as_of([member], between)
    assert (then.debits_pending, then.debits_posted, then.credits_posted) == (30, 0, 100)
    [now] = await ledger.balances_as_of([member], datetime.now(UTC) + timedelta(seconds=1))
    assert (now.debits_pending, now.debits_posted, now.credits_posted) == (0, 30, 105)
    assert await balances(ledger, member) == [(0, 30, 0, 105)]
    backdated = earn(
        ledger_id, issuance, member, 7, effective_at=datetime.now(UTC) - timedelta(days=30)
    )
    await ledger.create_transfers([backdated])
    [business] = await ledger.balances_as_of(
        [member], datetime.now(UTC) - timedelta(days=1), effective=True
    )
    assert business.credits_posted == 7


async def test_totals_per_ledger(ledger: Ledger, new_ledger: NewLedger) -> None:
    ledger_id = await new_ledger()
    issuance, a, b = await open_accounts(ledger, ledger_id, AccountFlags.NONE, WALLET, WALLET)
    await ledger.create_transfers([earn(ledger_id, issuance, a, 10), earn(ledger_id, a, b, 4)])
    [totals] = await ledger.totals(ledger_id)
    assert (totals.accounts, totals.debits_posted, totals.credits_posted) == (3, 14, 14)


async def test_records_are_immutable(
    ledger: Ledger, new_ledger: NewLedger, pool: asyncpg.Pool
) -> None:
    ledger_id = await new_ledger()
    issuance, member = await open_accounts(ledger, ledger_id, AccountFlags.NONE, WALLET)
    transfer = earn(ledger_id, issuance, member, 10)
    await ledger.create_transfers([transfer])
    statements = [
        ("UPDATE transfers SET amount = 1 WHERE id = $1", transfer.id),
        ("DELETE FROM transfers WHERE id = $1", transfer.id),
        ("UPDATE accounts SET flags = 0 WHERE id = $1", member),
        ("UPDATE accounts SET ledger = ledger WHERE id = $1", member),
        ("DELETE FROM accounts WHERE id = $1", member),
    ]
    for sql, arg in statements:
        with pytest.raises(asyncpg.RestrictViolationError, match="immutable"):
            await pool.execute(sql, arg)
    with pytest.raises(asyncpg.RestrictViolationError):
        await pool.execute("TRUNCATE transfers")
    # A balance that breaks its account's flag is refused by the database too.
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE accounts SET debits_posted = 1000 WHERE id = $1", member)
    assert await balances(ledger, member) == [(0, 0, 0, 10)]


async def test_check_reports_a_tampered_balance(
    ledger: Ledger, new_ledger: NewLedger, pool: asyncpg.Pool
) -> None:
    ledger_id = await new_ledger()
    issuance, member = await open_accounts(ledger, ledger_id, AccountFlags.NONE, AccountFlags.NONE)
    await ledger.create_transfers([earn(ledger_id, issuance, member, 10)])
    assert await check_invariants(pool, ledger_id) == []

    class Rollback(Exception):
        pass

    with pytest.raises(Rollback):
        async with pool.acquire() as connection, connection.transaction():
            # Tampering that bypasses the transfers; rolled back afterwards.
            await connection.execute(
                "UPDATE accounts SET credits_posted = credits_posted + 5 WHERE id = $1", member
            )
            violations = await check_invariants(connection, ledger_id)
            raise Rollback
    assert {v.invariant for v in violations} == {"debits_equal_credits", "balance_equals_transfers"}
    assert await check_invariants(pool, ledger_id) == []


async def test_posting_many_pendings_across_ledgers_in_one_batch(
    ledger: Ledger, new_ledger: NewLedger
) -> None:
    """Posts and voids of hundreds of pending transfers of several ledgers in
    one call land on the right accounts (the resolution path is set-based)."""
    books = []
    for _ in range(3):
        ledger_id = await new_ledger()
        issuance, *wallets = await open_accounts(
            ledger, ledger_id, AccountFlags.NONE, *([WALLET] * 40)
        )
        books.append((ledger_id, issuance, wallets))
    holds = [
        earn(ledger_id, issuance, wallet, 10 + n, flags=TransferFlags.PENDING)
        for ledger_id, issuance, wallets in books
        for n, wallet in enumerate(wallets * 3)
    ]
    assert {o.result for o in await ledger.create_transfers(holds)} == {"ok"}
    resolutions = [
        Transfer(
            id=uuid.uuid4(),
            pending_id=hold.id,
            flags=TransferFlags.POST_PENDING if n % 3 else TransferFlags.VOID_PENDING,
            amount=5 if n % 3 == 1 else 0,
        )
        for n, hold in enumerate(reversed(holds))
    ]
    assert {o.result for o in await ledger.create_transfers(resolutions)} == {"ok"}
    posted = {
        hold.id: (0 if n % 3 == 0 else 5 if n % 3 == 1 else hold.amount)
        for n, hold in enumerate(reversed(holds))
    }
    for ledger_id, issuance, wallets in books:
        expected = {w: 0 for w in wallets}
        for hold in holds:
            if hold.ledger == ledger_id:
                assert hold.credit_account_id is not None
                expected[hold.credit_account_id] += posted[hold.id]
        states = await ledger.lookup_accounts([issuance, *wallets])
        assert all(s.debits_pending == 0 and s.credits_pending == 0 for s in states)
        assert {s.id: s.credits_posted for s in states[1:]} == expected
        assert states[0].debits_posted == sum(expected.values())
        assert await check_invariants(ledger.pool, ledger_id) == []


async def test_posts_beside_many_other_accounts_in_one_batch(
    ledger: Ledger, new_ledger: NewLedger
) -> None:
    """A few posts in a batch that touches many more accounts: each post lands
    on its own pending transfer's accounts."""
    ledger_id = await new_ledger()
    issuance, *wallets = await open_accounts(
        ledger, ledger_id, AccountFlags.NONE, *([WALLET] * 240)
    )
    holders, others = wallets[:20], wallets[20:]
    holds = [
        earn(ledger_id, issuance, w, 100 + n, flags=TransferFlags.PENDING)
        for n, w in enumerate(holders)
    ]
    assert {o.result for o in await ledger.create_transfers(holds)} == {"ok"}
    batch = [earn(ledger_id, issuance, w, 1) for w in others] + [
        Transfer(id=uuid.uuid4(), pending_id=h.id, flags=TransferFlags.POST_PENDING)
        for h in reversed(holds)
    ]
    assert {o.result for o in await ledger.create_transfers(batch)} == {"ok"}
    states = {s.id: s for s in await ledger.lookup_accounts(wallets)}
    for n, holder in enumerate(holders):
        assert (states[holder].credits_pending, states[holder].credits_posted) == (0, 100 + n)
    assert all(states[w].credits_posted == 1 for w in others)
    assert await check_invariants(ledger.pool, ledger_id) == []


async def test_transfers_within_a_transaction_commit_or_roll_back_with_it(
    ledger: Ledger, new_ledger: NewLedger
) -> None:
    ledger_id = await new_ledger()
    issuance, member = await open_accounts(ledger, ledger_id, AccountFlags.NONE, WALLET)
    undone, kept = earn(ledger_id, issuance, member, 40), earn(ledger_id, issuance, member, 60)
    async with ledger.pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        [outcome] = await ledger.create_transfers_within(connection, [undone])
        assert outcome.result == "ok"
        await transaction.rollback()
        async with connection.transaction():
            [outcome] = await ledger.create_transfers_within(connection, [kept])
            assert outcome.result == "ok"
    assert await ledger.lookup_transfers([undone.id]) == []
    assert await balances(ledger, member) == [(0, 0, 0, 60)]
    # The rolled-back id was never recorded, so it can still be posted.
    [again] = await ledger.create_transfers([undone])
    assert again.result == "ok"
