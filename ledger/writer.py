"""Micro-batching: one writer per process posts the transfers of all
concurrent callers in one database call and one commit.

Under light load a batch holds one caller's transfers and leaves at once;
under heavy load the callers that arrive while a batch is in flight form the
next one, so throughput grows with load instead of lock contention.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ledger.errors import LedgerUnavailable
from ledger.schemas import (
    BATCH_MAX,
    END_OF_REQUEST,
    TRANSFER_RESULTS,
    Transfer,
    TransferOutcome,
)

if TYPE_CHECKING:
    import asyncpg

CREATE_TRANSFERS_SQL = (
    "SELECT results, timestamps FROM ledger_create_transfers("
    "$1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::integer[], $6::integer[],"
    " $7::integer[], $8::uuid[], $9::integer[], $10::jsonb[], $11::timestamptz[])"
)


def encode_batch(requests: Sequence[Sequence[Transfer]]) -> tuple[list[Any], ...]:
    """Column arrays for ``ledger_create_transfers``, one request after another."""
    flat = [t for transfers in requests for t in transfers]
    flags = [int(t.flags) for t in flat]
    # A chain never runs on into the next caller's transfers.
    end = -1
    for transfers in requests:
        end += len(transfers)
        if transfers:
            flags[end] |= END_OF_REQUEST
    return (
        [t.id for t in flat],
        [t.debit_account_id for t in flat],
        [t.credit_account_id for t in flat],
        [t.amount for t in flat],
        [t.ledger for t in flat],
        [t.code for t in flat],
        flags,
        [t.pending_id for t in flat],
        [t.timeout for t in flat],
        [t.metadata for t in flat],
        [t.effective_at for t in flat],
    )


async def post_batch(
    connection: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    requests: Sequence[Sequence[Transfer]],
) -> list[list[TransferOutcome]]:
    """Post the requests' transfers in one call; one list of outcomes per request."""
    columns = encode_batch(requests)
    row = await connection.fetchrow(CREATE_TRANSFERS_SQL, *columns)
    assert row is not None
    codes: list[int] = row["results"]
    stamps: list[int] = row["timestamps"]
    outcomes: list[list[TransferOutcome]] = []
    position = 0
    for transfers in requests:
        request_outcomes = []
        for t in transfers:
            request_outcomes.append(
                TransferOutcome(
                    id=t.id,
                    result=TRANSFER_RESULTS[codes[position]],
                    timestamp=stamps[position] or None,
                )
            )
            position += 1
        outcomes.append(request_outcomes)
    return outcomes


_Request = tuple[Sequence[Transfer], "asyncio.Future[list[TransferOutcome]]"]


class TransferWriter:
    """Queues callers' transfers and posts them in batches.

    Up to ``max_in_flight`` batches are in the database at once (each on its
    own connection): while one commits, the next is already being checked.
    """

    def __init__(
        self, pool: asyncpg.Pool, *, max_batch: int = BATCH_MAX, max_in_flight: int = 2
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._queue: deque[_Request] = deque()
        self._wake = asyncio.Event()
        self._max_in_flight = max_in_flight
        self._slots = asyncio.Semaphore(max_in_flight)
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Transfers waiting in the queue.
        self._queued = 0

    async def submit(self, transfers: Sequence[Transfer]) -> list[TransferOutcome]:
        if not transfers:
            return []
        if self._closed:
            raise LedgerUnavailable("the ledger writer is closed")
        future: asyncio.Future[list[TransferOutcome]] = asyncio.get_running_loop().create_future()
        self._queue.append((transfers, future))
        self._queued += len(transfers)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="ledger-writer")
        return await future

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        # Let the queued callers have their answers before stopping.
        waiting = [future for _, future in self._queue]
        if waiting and self._task is not None and not self._task.done():
            await asyncio.wait(waiting)
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _take_batch(self, limit: int) -> list[_Request]:
        batch: list[_Request] = []
        size = 0
        while self._queue:
            transfers, future = self._queue[0]
            # A request is never split: its chains and order stay whole.
            if batch and size + len(transfers) > limit:
                break
            self._queue.popleft()
            self._queued -= len(transfers)
            if future.cancelled():
                continue
            batch.append((transfers, future))
            size += len(transfers)
        return batch

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                await self._slots.acquire()
                # Share what is queued between the free slots, so that the
                # database works on one batch while this process answers the
                # callers of the previous one: the two overlap.
                free = max(1, self._max_in_flight - len(self._in_flight))
                limit = min(self._max_batch, max(1, -(-self._queued // free)))
                batch = self._take_batch(limit)
                if not batch:
                    self._slots.release()
                    continue
                task = asyncio.create_task(self._post(batch))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    async def _post(self, batch: list[_Request]) -> None:
        try:
            async with self._pool.acquire() as connection:
                outcomes = await post_batch(connection, [t for t, _ in batch])
        except Exception as error:
            failure = LedgerUnavailable(f"batch not confirmed: {error}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            return
        finally:
            self._slots.release()
        for (_, future), result in zip(batch, outcomes, strict=True):
            if not future.done():
                future.set_result(result)
