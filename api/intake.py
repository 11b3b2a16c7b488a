"""Purchase events of concurrent requests, recorded a batch at a time.

Each HTTP request submits its event and waits; one transaction records a
whole batch (``rewards.purchase_recording.record_purchases``, which writes
each purchase's audit line, naming its own request's principal), so the
cost of a purchase falls with load instead of rising. If a batch fails
for a reason of its own (a race on an order id, data the database refuses),
it is split until the failing event is alone (``ledger.batching``), so that
the failure is that event's answer alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import msgspec

from core.errors import DomainError
from core.models import Program
from core.principal import Principal
from ledger import Ledger
from ledger.batching import MicroBatcher, isolate_faults
from ledger.errors import is_unreachable
from rewards.purchase_recording import record_purchases
from rewards.purchases import PurchaseEvent, PurchaseOutcome


class _Submission(msgspec.Struct, frozen=True):
    program: Program
    event: PurchaseEvent
    principal: Principal


Answer = PurchaseOutcome | DomainError


class PurchaseIntake:
    def __init__(
        self, pool: asyncpg.Pool, ledger: Ledger, *, max_batch: int = 500, max_in_flight: int = 1
    ) -> None:
        # One batch at a time per process: the requests that arrive during
        # it form the next, larger one. Measured on 2 cores with 64 clients,
        # 1 in flight took ~1,550 purchases/s, 2 ~1,100/s, 4 ~950/s: a
        # purchase's fixed cost per batch outweighs the overlap. At 8 clients
        # too (measured: up to 4 in flight while 8 or fewer callers wait, 96/s
        # against 162/s for 1): overlapping batches of one program queue on
        # the ledger's lock, held from the ledger call to the commit.
        self._pool = pool
        self._ledger = ledger
        self._batcher: MicroBatcher[_Submission, PurchaseOutcome] = MicroBatcher(
            self._record,
            name="purchase-intake",
            max_batch=max_batch,
            max_in_flight=max_in_flight,
            on_closed=lambda: RuntimeError("the purchase intake is closed"),
        )

    async def record(
        self, program: Program, event: PurchaseEvent, principal: Principal
    ) -> PurchaseOutcome:
        return await self._batcher.submit(_Submission(program, event, principal))

    async def close(self) -> None:
        await self._batcher.close()

    async def _record(self, batch: list[_Submission]) -> Sequence[Answer | Exception]:
        answers: list[Answer | Exception | None] = [None] * len(batch)
        by_program: dict[str, list[int]] = {}
        for position, submission in enumerate(batch):
            by_program.setdefault(submission.program.slug, []).append(position)
        # One transaction per program: a transaction that has posted to one
        # ledger must not then wait on row locks of another program, which a
        # caller waiting on the ledger's writer may hold.
        for positions in by_program.values():
            group = [batch[p] for p in positions]
            for position, answer in zip(positions, await self._record_group(group), strict=True):
                answers[position] = answer
        return [a for a in answers if a is not None]

    async def _record_group(self, group: list[_Submission]) -> list[Answer | Exception]:
        try:
            return await isolate_faults(self._record_together, group, is_item_fault=_of_an_event)
        except Exception as error:
            # The database did not answer: trying each event again would
            # only make every caller wait longer for the same error.
            return [error] * len(group)

    async def _record_together(self, group: list[_Submission]) -> list[Answer]:
        """The events of one program in one transaction: purchases, ledger
        transfers and audit lines commit together."""
        now = datetime.now(UTC)
        program = group[0].program
        async with self._pool.acquire() as connection, connection.transaction():
            # Atomic: after the ledger call nothing here waits on a lock
            # another caller could hold while waiting on the ledger's writer.
            outcomes = await record_purchases(
                connection,
                self._ledger,
                program,
                [s.event for s in group],
                now,
                principals=[s.principal for s in group],
                atomic=True,
            )
        return outcomes


def _of_an_event(error: Exception) -> bool:
    """Whether a failed batch may owe its failure to one of its events (and
    so is worth splitting): anything but an unreachable database, races on
    an order id included."""
    return not is_unreachable(error)
