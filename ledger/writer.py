"""The ledger's writer: one per process posts the transfers of all
concurrent callers in one database call and one commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from ledger.batching import MicroBatcher
from ledger.errors import InvalidTransfer, LedgerUnavailable, is_input_fault, refusal
from ledger.schemas import (
    BATCH_MAX,
    END_OF_REQUEST,
    TRANSFER_RESULTS,
    Transfer,
    TransferOutcome,
)

_JSON = msgspec.json.Encoder()

CREATE_TRANSFERS_SQL = (
    "SELECT results, timestamps FROM ledger_create_transfers("
    "$1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::integer[], $6::integer[],"
    " $7::integer[], $8::uuid[], $9::integer[], $10::text[]::jsonb[], $11::timestamptz[])"
)


#: The transfer field each argument of ``CREATE_TRANSFERS_SQL`` carries.
_ARGUMENT_FIELDS = (
    "id",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "ledger",
    "code",
    "flags",
    "pending_id",
    "timeout",
    "metadata",
    "effective_at",
)


def refused_data(error: Exception) -> InvalidTransfer:
    """The permanent error of a request whose data the database refused,
    naming the field where the driver says which."""
    argument, reason = refusal(error)
    if argument is not None and 1 <= argument <= len(_ARGUMENT_FIELDS):
        return InvalidTransfer(f"{_ARGUMENT_FIELDS[argument - 1]}: {reason}")
    return InvalidTransfer(f"the ledger cannot store this request's data: {reason}")


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
        # As JSON text: the connection may be another's (a caller's ORM
        # session) with other codecs than the ledger pool's.
        [None if t.metadata is None else _JSON.encode(t.metadata).decode() for t in flat],
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


class TransferWriter:
    """Posts the transfers of concurrent callers in batches (see
    ``ledger.batching``); a request's transfers stay together, in order."""

    def __init__(
        self, pool: asyncpg.Pool, *, max_batch: int = BATCH_MAX, max_in_flight: int = 2
    ) -> None:
        self._pool = pool
        self._batcher: MicroBatcher[Sequence[Transfer], list[TransferOutcome]] = MicroBatcher(
            self._post,
            name="ledger-writer",
            max_batch=max_batch,
            max_in_flight=max_in_flight,
            size=len,
            on_failure=lambda error: LedgerUnavailable(f"batch not confirmed: {error}"),
            on_closed=lambda: LedgerUnavailable("the ledger writer is closed"),
            # One caller's bad data fails that caller alone.
            is_item_fault=is_input_fault,
            on_item_fault=refused_data,
        )

    async def submit(self, transfers: Sequence[Transfer]) -> list[TransferOutcome]:
        if not transfers:
            return []
        return await self._batcher.submit(transfers)

    async def close(self) -> None:
        await self._batcher.close()

    async def _post(self, requests: list[Sequence[Transfer]]) -> list[list[TransferOutcome]]:
        async with self._pool.acquire() as connection:
            try:
                return await post_batch(connection, requests)
            except asyncpg.UniqueViolationError:
                # An id of this batch was committed meanwhile by a batch of
                # another ledger (each ledger has its own lock): posted again,
                # the batch sees it recorded and answers it as a replay.
                return await post_batch(connection, requests)
