"""A ledger closed through an instant (``ledger.periods``) refuses every
transfer whose business time (``effective_at``, else now) is at or before
it, with ``business_time_in_closed_period``: alone (the scalar path) and in
batches, posts and voids by their own business time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
import pytest

from ledger import Account, AccountFlags, Ledger, Transfer, TransferFlags, check_invariants, periods
from ledger.schemas import CreateTransferResult

NewLedger = Callable[[], Awaitable[int]]
CLOSED = CreateTransferResult.BUSINESS_TIME_IN_CLOSED_PERIOD


class Book(msgspec.Struct):
    ledger: int
    issuance: uuid.UUID
    wallet: uuid.UUID

    def move(self, amount: int, **fields: object) -> Transfer:
        return Transfer(
            id=uuid.uuid4(),
            debit_account_id=self.issuance,
            credit_account_id=self.wallet,
            amount=amount,
            ledger=self.ledger,
            code=1,
            **fields,  # type: ignore[arg-type]
        )


async def _book(ledger: Ledger, new_ledger: NewLedger) -> Book:
    book = Book(await new_ledger(), uuid.uuid4(), uuid.uuid4())
    outcomes = await ledger.create_accounts(
        [
            Account(id=book.issuance, ledger=book.ledger, code=1),
            Account(
                id=book.wallet,
                ledger=book.ledger,
                code=2,
                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            ),
        ]
    )
    assert [o.result.value for o in outcomes] == ["ok", "ok"]
    return book


async def _close(pool: asyncpg.Pool, ledger: int, at: datetime) -> datetime:
    async with pool.acquire() as connection:
        return await periods.close_through(connection, ledger, at)


async def _balances(ledger: Ledger, book: Book) -> list[tuple[int, int, int, int]]:
    states = await ledger.lookup_accounts([book.issuance, book.wallet])
    return [
        (s.debits_pending, s.debits_posted, s.credits_pending, s.credits_posted) for s in states
    ]


@pytest.mark.parametrize("alone", [True, False], ids=["alone", "in a batch"])
async def test_a_backdated_transfer_into_a_closed_period_is_refused(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger, alone: bool
) -> None:
    book = await _book(ledger, new_ledger)
    boundary = datetime.now(UTC) - timedelta(days=1)
    [before] = await ledger.create_transfers([book.move(5, effective_at=boundary)])
    assert before.ok
    assert await _close(pool, book.ledger, boundary) == boundary
    balances = await _balances(ledger, book)

    inside = book.move(7, effective_at=boundary)
    # A batch of two takes the set-based path; its other transfer is dated now.
    batch = [inside] if alone else [inside, book.move(1)]
    outcomes = await ledger.create_transfers(batch)

    assert outcomes[0].result is CLOSED
    assert outcomes[0].timestamp is None
    assert [o.result.value for o in outcomes[1:]] == ["ok"] * (len(batch) - 1)
    assert await ledger.lookup_transfers([inside.id]) == []
    moved = 0 if alone else 1
    [_, wallet] = await _balances(ledger, book)
    assert wallet[3] == balances[1][3] + moved
    # The id answers the same failure from now on, reopened or not.
    [again] = await ledger.create_transfers([inside])
    assert again.result is CLOSED
    async with pool.acquire() as connection:
        await periods.reopen_from(connection, book.ledger, boundary - timedelta(days=1))
    [after_reopen] = await ledger.create_transfers([inside])
    assert after_reopen.result is CLOSED
    assert await check_invariants(ledger.pool, book.ledger) == []


@pytest.mark.parametrize("alone", [True, False], ids=["alone", "in a batch"])
async def test_the_boundary_itself_is_closed_and_the_next_instant_open(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger, alone: bool
) -> None:
    book = await _book(ledger, new_ledger)
    boundary = datetime.now(UTC) - timedelta(hours=2)
    await _close(pool, book.ledger, boundary)
    results = []
    for at in (boundary - timedelta(days=400), boundary, boundary + periods.RESOLUTION, None):
        transfer = book.move(1, effective_at=at)
        batch = [transfer] if alone else [transfer, book.move(1)]
        outcomes = await ledger.create_transfers(batch)
        results.append(outcomes[0].result.value)
    assert results == [CLOSED.value, CLOSED.value, "ok", "ok"]


async def test_only_the_closed_ledger_refuses(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    closed, other = await _book(ledger, new_ledger), await _book(ledger, new_ledger)
    boundary = datetime.now(UTC) - timedelta(days=1)
    await _close(pool, closed.ledger, boundary)
    at = boundary - timedelta(days=3)
    outcomes = await ledger.create_transfers(
        [closed.move(1, effective_at=at), other.move(1, effective_at=at), closed.move(1)]
    )
    assert [o.result.value for o in outcomes] == [CLOSED.value, "ok", "ok"]


async def test_a_linked_chain_with_a_backdated_member_fails_whole(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    book = await _book(ledger, new_ledger)
    boundary = datetime.now(UTC) - timedelta(days=1)
    await _close(pool, book.ledger, boundary)
    balances = await _balances(ledger, book)
    outcomes = await ledger.create_transfers(
        [
            book.move(3, flags=TransferFlags.LINKED),
            book.move(4, effective_at=boundary - timedelta(minutes=1)),
        ]
    )
    assert [o.result.value for o in outcomes] == ["linked_event_failed", CLOSED.value]
    assert await _balances(ledger, book) == balances


async def test_posts_and_voids_of_pending_transfers_by_their_own_business_time(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    book = await _book(ledger, new_ledger)
    boundary = datetime.now(UTC) - timedelta(days=1)
    # Pending before the boundary (backdated), resolved after it is closed.
    early = boundary - timedelta(days=2)
    to_post = book.move(10, flags=TransferFlags.PENDING, effective_at=early)
    to_void = book.move(20, flags=TransferFlags.PENDING, effective_at=early)
    assert all(o.ok for o in await ledger.create_transfers([to_post, to_void]))
    await _close(pool, book.ledger, boundary)

    def resolve(pending: Transfer, flag: TransferFlags, **fields: object) -> Transfer:
        return Transfer(
            id=uuid.uuid4(),
            pending_id=pending.id,
            flags=flag,
            **fields,  # type: ignore[arg-type]
        )

    dated_inside = boundary - timedelta(hours=1)
    refused = await ledger.create_transfers(
        [
            resolve(to_post, TransferFlags.POST_PENDING, effective_at=dated_inside),
            resolve(to_void, TransferFlags.VOID_PENDING, effective_at=dated_inside),
        ]
    )
    assert [o.result for o in refused] == [CLOSED, CLOSED]
    [_, wallet] = await _balances(ledger, book)
    assert wallet == (0, 0, 30, 0)  # both still pending

    # Alone too (a post is never the scalar path, but one of a batch of one).
    [void_alone] = await ledger.create_transfers(
        [resolve(to_void, TransferFlags.VOID_PENDING, effective_at=dated_inside)]
    )
    assert void_alone.result is CLOSED

    # Dated now (after the boundary): both resolve, although their pending
    # transfers are dated in the closed period.
    posted = await ledger.create_transfers(
        [
            resolve(to_post, TransferFlags.POST_PENDING),
            resolve(to_void, TransferFlags.VOID_PENDING),
        ]
    )
    assert [o.result.value for o in posted] == ["ok", "ok"]
    [_, wallet] = await _balances(ledger, book)
    assert wallet == (0, 0, 0, 10)
    assert await check_invariants(ledger.pool, book.ledger) == []


async def test_a_pending_transfer_posted_in_its_own_batch_into_a_closed_period(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    book = await _book(ledger, new_ledger)
    boundary = datetime.now(UTC) - timedelta(days=1)
    await _close(pool, book.ledger, boundary)
    pending = book.move(5, flags=TransferFlags.PENDING)
    post = Transfer(
        id=uuid.uuid4(),
        pending_id=pending.id,
        flags=TransferFlags.POST_PENDING,
        effective_at=boundary - timedelta(seconds=1),
    )
    outcomes = await ledger.create_transfers([pending, post])
    assert [o.result.value for o in outcomes] == ["ok", CLOSED.value]


async def test_the_boundary_moves_only_when_no_batch_of_the_ledger_is_in_flight(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    book = await _book(ledger, new_ledger)
    boundary = datetime.now(UTC) - timedelta(days=1)
    backdated = book.move(1, effective_at=boundary - timedelta(hours=1))
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        await periods.close_through(connection, book.ledger, boundary)
        # The batch waits for the ledger's lock, which the close holds...
        posting = asyncio.ensure_future(ledger.create_transfers([backdated]))
        await asyncio.sleep(0.5)
        assert not posting.done()
        await transaction.commit()
    # ... and then reads the boundary the close committed.
    [outcome] = await posting
    assert outcome.result is CLOSED


async def test_close_and_reopen_move_the_boundary(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    book = await _book(ledger, new_ledger)
    now = datetime.now(UTC)
    first, later = now - timedelta(days=60), now - timedelta(days=30)
    async with pool.acquire() as connection:
        assert await periods.closed_through(connection, book.ledger) is None
        assert await periods.close_through(connection, book.ledger, later) == later
        # Closing never moves the boundary back: reopening does.
        assert await periods.close_through(connection, book.ledger, first) == later
        assert await periods.closed_through(connection, book.ledger) == later
        # Reopening from after the boundary changes nothing.
        assert await periods.reopen_from(connection, book.ledger, now) == later
        reopened = await periods.reopen_from(connection, book.ledger, first)
        assert reopened == first - periods.RESOLUTION
        assert await periods.closed_through(connection, book.ledger) == reopened
        with pytest.raises(periods.BoundaryInFuture):
            await periods.close_through(connection, book.ledger, now + timedelta(hours=1))
        with pytest.raises(periods.UnknownLedger):
            await periods.close_through(connection, 2_000_000_000, first)
        with pytest.raises(RuntimeError):
            await periods.closed_through(connection, book.ledger, hold=True)
    [inside] = await ledger.create_transfers([book.move(1, effective_at=first)])
    [before] = await ledger.create_transfers(
        [book.move(1, effective_at=first - timedelta(seconds=1))]
    )
    assert (inside.result.value, before.result) == ("ok", CLOSED)
