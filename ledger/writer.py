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
from typing import TYPE_CHECKING

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


def encode_batch(requests: Sequence[Sequence[Transfer]]) -> tuple[list[object], ...]:
    """Column arrays for ``ledger_create_transfers``, one request after another."""
    ids: list[object] = []
    debits: list[object] = []
    credits: list[object] = []
    amounts: list[object] = []
    ledgers: list[object] = []
    codes: list[object] = []
    flags: list[object] = []
    pending_ids: list[object] = []
    timeouts: list[object] = []
    metadata: list[object] = []
    effective: list[object] = []
    for transfers in requests:
        for t in transfers:
            ids.append(t.id)
            debits.append(t.debit_account_id)
            credits.append(t.credit_account_id)
            amounts.append(t.amount)
            ledgers.append(t.ledger)
            codes.append(t.code)
            flags.append(int(t.flags))
            pending_ids.append(t.pending_id)
            timeouts.append(t.timeout)
            metadata.append(t.metadata)
            effective.append(t.effective_at)
        if transfers:
            # A chain never runs on into the next caller's transfers.
            flags[-1] = int(flags[-1]) | END_OF_REQUEST  # type: ignore[call-overload]
    return (ids, debits, credits, amounts, ledgers, codes, flags, pending_ids, timeouts,
            metadata, effective)


async def post_batch(
    connection: asyncpg.Connection, requests: Sequence[Sequence[Transfer]]
) -> list[list[TransferOutcome]]:
    """Post the requests' transfers in one call; one list of outcomes per request."""
    columns = encode_batch(requests)
    row = await connection.fetchrow(CREATE_TRANSFERS_SQL, *columns)
    assert row is not None
    codes: list[int] = row["results"]
    stamps: list[int | None] = row["timestamps"]
    outcomes: list[list[TransferOutcome]] = []
    position = 0
    for transfers in requests:
        request_outcomes = []
        for t in transfers:
            request_outcomes.append(
                TransferOutcome(
                    id=t.id, result=TRANSFER_RESULTS[codes[position]], timestamp=stamps[position]
                )
            )
            position += 1
        outcomes.append(request_outcomes)
    return outcomes


class TransferWriter:
    """Queues callers' transfers and posts them in batches from one task."""

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = BATCH_MAX) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._queue: deque[tuple[Sequence[Transfer], asyncio.Future[list[TransferOutcome]]]] = (
            deque()
        )
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, transfers: Sequence[Transfer]) -> list[TransferOutcome]:
        if not transfers:
            return []
        if self._closed:
            raise LedgerUnavailable("the ledger writer is closed")
        future: asyncio.Future[list[TransferOutcome]] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue.append((transfers, future))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="ledger-writer")
        return await future

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._task is not None:
            # Let the queued callers have their answers before stopping.
            while self._queue and not self._task.done():
                await asyncio.sleep(0.001)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _take_batch(
        self,
    ) -> list[tuple[Sequence[Transfer], asyncio.Future[list[TransferOutcome]]]]:
        batch = []
        size = 0
        while self._queue:
            transfers, future = self._queue[0]
            # A request is never split: its chains and order stay whole.
            if batch and size + len(transfers) > self._max_batch:
                break
            self._queue.popleft()
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
                batch = self._take_batch()
                if not batch:
                    continue
                try:
                    async with self._pool.acquire() as connection:
                        outcomes = await post_batch(connection, [t for t, _ in batch])
                except Exception as error:  # noqa: BLE001 - every caller must hear of it
                    failure = LedgerUnavailable(f"batch not confirmed: {error}")
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(failure)
                    continue
                for (_, future), result in zip(batch, outcomes, strict=True):
                    if not future.done():
                        future.set_result(result)
