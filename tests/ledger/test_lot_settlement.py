"""The settlement of plain wallet movements against real PostgreSQL: a
plain credit (its own lot) and a plain FIFO debit write no lot row when they
post; ``ledger_settle_lots`` writes what they made and what their place in
the wallet's queue fixed, and every read settles first, so that reads answer
as if they had been recorded at posting (docs/ledger.md "Lots and daily
aggregates")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import asyncpg

from finance.reconciliation_lots import check_lots
from ledger import Ledger
from ledger import lots as ledger_lots
from ledger.periods import close_through
from tests.ledger.test_lots import (
    NewLedger,
    assert_as_the_model,
    assert_lots_hold_the_balances,
    move,
    open_accounts,
    post,
)


async def _movements(pool: asyncpg.Pool, transfer_id: object) -> int:
    """Lot movements of a transfer as stored (no settlement)."""
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM lot_movements WHERE transfer_id = $1", transfer_id
        )
    )


async def _marks(pool: asyncpg.Pool, account: object) -> tuple[int, int]:
    row = await pool.fetchrow(
        "SELECT debits_posted, lots_debited FROM accounts WHERE id = $1", account
    )
    assert row is not None
    return int(row["debits_posted"]), int(row["lots_debited"])


async def test_a_plain_debit_is_written_when_settled_and_read_as_if_at_posting(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    wallet = a.wallets[0]
    earns = [move(a.ledger, a.issuance, wallet, amount) for amount in (30, 20)]
    assert await post(ledger, earns) == ["ok", "ok"]
    spend = move(a.ledger, wallet, a.redemption, 35, 2)
    assert await post(ledger, [spend]) == ["ok"]

    # Posted, not written: the wallet's marks say 35 points wait, and its lots.
    assert await _movements(pool, spend.id) == 0
    assert await _movements(pool, earns[0].id) == 0
    assert await _marks(pool, wallet) == (35, 0)

    # A read settles first and answers as if recorded at posting: the lot of
    # an earn not written yet is found by its id.
    first = await ledger_lots.lot(pool, earns[0].id)
    assert first is not None and (first.amount, first.remaining) == (30, 0)
    moved = [(m.lot_id, m.points) for m in await ledger_lots.movements_of_transfer(pool, spend.id)]
    assert moved == [(earns[0].id, -30), (earns[1].id, -5)]
    assert await _marks(pool, wallet) == (35, 35)
    again = await ledger_lots.settle_lots(pool, ledger=a.ledger)
    assert (again.accounts, again.movements) == (0, 0)
    await assert_as_the_model(pool, a.ledger, set(a.wallets))
    await assert_lots_hold_the_balances(pool, ledger, a.ledger, a.wallets)


async def test_a_credit_backdated_after_an_unsettled_debit_is_not_taken_by_it(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    wallet = a.wallets[0]
    now = datetime.now(UTC)
    recent = move(a.ledger, a.issuance, wallet, 40, effective_at=now - timedelta(days=1))
    assert await post(ledger, [recent]) == ["ok"]
    early = move(a.ledger, wallet, a.redemption, 10, 2)
    assert await post(ledger, [early]) == ["ok"]
    assert await _movements(pool, early.id) == 0
    # Sorts before the open lot: had the earlier debit waited, it would take it.
    backdated = move(a.ledger, a.issuance, wallet, 15, effective_at=now - timedelta(days=30))
    late = move(a.ledger, wallet, a.redemption, 20, 2)
    assert await post(ledger, [backdated]) == ["ok"]
    # The backdated credit settled the wallet first.
    assert await _movements(pool, early.id) == 1
    assert await post(ledger, [late]) == ["ok"]

    early_moves = await ledger_lots.movements_of_transfer(pool, early.id)
    late_moves = await ledger_lots.movements_of_transfer(pool, late.id)
    assert [(m.lot_id, m.points) for m in early_moves] == [(recent.id, -10)]
    assert [(m.lot_id, m.points) for m in late_moves] == [(backdated.id, -15), (recent.id, -5)]
    await assert_as_the_model(pool, a.ledger, set(a.wallets))


async def test_a_directed_debit_settles_the_waiting_ones_before_it(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    wallet = a.wallets[0]
    first, second = (move(a.ledger, a.issuance, wallet, n) for n in (10, 10))
    assert await post(ledger, [first, second]) == ["ok", "ok"]
    plain = move(a.ledger, wallet, a.redemption, 4, 2)
    directed = move(a.ledger, wallet, a.redemption, 8, 2, metadata={"lots": [str(second.id)]})
    assert await post(ledger, [plain]) == ["ok"]
    assert await post(ledger, [directed]) == ["ok"]
    # Both written by the directed debit's posting, the plain one first.
    assert await _movements(pool, plain.id) == 1
    assert await _marks(pool, wallet) == (12, 12)
    lots = {lot.id: lot.remaining for lot in await ledger_lots.lots_of(pool, wallet)}
    assert lots == {first.id: 6, second.id: 2}


async def test_the_job_settles_every_ledger_and_the_close_settles_its_own(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    b = await open_accounts(ledger, await new_ledger())
    for books in (a, b):
        assert await post(ledger, [move(books.ledger, books.issuance, books.wallets[0], 50)]) == [
            "ok"
        ]
    spend_a = move(a.ledger, a.wallets[0], a.redemption, 5, 2)
    spend_b = move(b.ledger, b.wallets[0], b.redemption, 7, 2)
    assert await post(ledger, [spend_a]) == ["ok"]
    assert await post(ledger, [spend_b]) == ["ok"]

    assert await ledger.settle_lots() >= 2
    assert await _movements(pool, spend_a.id) == 1
    assert await _movements(pool, spend_b.id) == 1
    assert await ledger.settle_lots() == 0

    spend = move(a.ledger, a.wallets[0], a.redemption, 3, 2)
    assert await post(ledger, [spend]) == ["ok"]
    async with pool.acquire() as conn:
        await close_through(conn, a.ledger, datetime.now(UTC) - timedelta(microseconds=1))
    # Closing wrote it: the closed days' lot aggregates are final.
    assert await _movements(pool, spend.id) == 1


async def test_a_read_only_snapshot_ties_the_lots_with_what_waits_to_settle(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    wallet = a.wallets[0]
    assert await post(ledger, [move(a.ledger, a.issuance, wallet, 50)]) == ["ok"]
    assert await post(ledger, [move(a.ledger, wallet, a.redemption, 20, 2)]) == ["ok"]
    async with pool.acquire() as conn, conn.transaction(readonly=True):
        # Nothing is written in a read-only transaction; the check still ties.
        result = await check_lots(cast(asyncpg.Connection, conn), [a.ledger])
        assert (
            await conn.fetchval(
                "SELECT debits_posted - lots_debited FROM accounts WHERE id = $1", wallet
            )
            == 20
        )
    assert (result.checked, result.differences) == (len(a.wallets), [])
    assert await _marks(pool, wallet) == (20, 0)


async def test_a_credit_sorting_before_a_gifts_lots_waits_for_no_debit(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    giver, wallet = a.wallets[0], a.wallets[1]
    now = datetime.now(UTC)
    earn = move(a.ledger, a.issuance, giver, 100, effective_at=now - timedelta(days=5))
    assert await post(ledger, [earn]) == ["ok"]
    # Backdated before the lot it copies: the receiver's lot keeps day -5.
    gift = move(a.ledger, giver, wallet, 100, 5, effective_at=now - timedelta(days=9))
    assert await post(ledger, [gift]) == ["ok"]
    first = move(a.ledger, wallet, a.redemption, 50, 2)
    assert await post(ledger, [first]) == ["ok"]
    # After a debit still waiting, and before the gift's lot: no queue's.
    earlier = move(a.ledger, a.issuance, wallet, 50, effective_at=now - timedelta(days=8))
    assert await post(ledger, [earlier]) == ["ok"]
    assert await _movements(pool, first.id) == 1
    second = move(a.ledger, wallet, a.redemption, 10, 2)
    assert await post(ledger, [second]) == ["ok"]

    [copied] = [m.lot_id for m in await ledger_lots.movements_of_transfer(pool, first.id)]
    moved = [(m.lot_id, m.points) for m in await ledger_lots.movements_of_transfer(pool, second.id)]
    assert moved == [(earlier.id, -10)]
    remaining = {lot.id: lot.remaining for lot in await ledger_lots.lots_of(pool, wallet)}
    assert remaining == {copied: 50, earlier.id: 40}
    await assert_as_the_model(pool, a.ledger, set(a.wallets))


async def test_a_backdated_credit_in_a_batch_after_a_waiting_debit_is_not_taken_by_it(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    # The batch path's own test (the lone path has another): a debit waiting
    # from an earlier batch, and one earlier in the same batch.
    a = await open_accounts(ledger, await new_ledger())
    first, second = a.wallets[0], a.wallets[1]
    now = datetime.now(UTC)
    recent = [
        move(a.ledger, a.issuance, w, 40, effective_at=now - timedelta(days=1))
        for w in (first, second)
    ]
    assert await post(ledger, recent) == ["ok", "ok"]
    waiting = move(a.ledger, first, a.redemption, 10, 2)
    assert await post(ledger, [waiting]) == ["ok"]
    # Each backdated credit sorts before the wallet's lot, and a debit after
    # it would take the two in order: the debit before it must not take it.
    backdated = [
        move(a.ledger, a.issuance, first, 15, effective_at=now - timedelta(days=30)),
        move(a.ledger, first, a.redemption, 20, 2),
        move(a.ledger, second, a.redemption, 5, 2),
        move(a.ledger, a.issuance, second, 25, effective_at=now - timedelta(days=30)),
        move(a.ledger, second, a.redemption, 30, 2),
    ]
    assert await post(ledger, backdated) == ["ok"] * 5

    taken = {
        t.id: [(m.lot_id, m.points) for m in await ledger_lots.movements_of_transfer(pool, t.id)]
        for t in (waiting, *backdated[1:3], backdated[4])
    }
    assert taken == {
        waiting.id: [(recent[0].id, -10)],
        backdated[1].id: [(backdated[0].id, -15), (recent[0].id, -5)],
        backdated[2].id: [(recent[1].id, -5)],
        backdated[4].id: [(backdated[3].id, -25), (recent[1].id, -5)],
    }
    await assert_as_the_model(pool, a.ledger, set(a.wallets))
