"""Partner point issuances of concurrent requests, written a batch at a time.

Each HTTP request resolves its own parties and prices its points
(``partners.issuance.prepare_issuance``: reads only, concurrently with the
other requests and with the batch in flight), then submits the issuance
and waits; one transaction per program writes a whole batch
(``partners.issuance_recording.record_issuances``). Issuances of a program
serialise on the program ledger's lock, held from the ledger call to the
commit: one batch takes that wait once for all its issuances.

An issuance the ledger refuses (funding used up) is that request's answer
alone and writes nothing (``record_issuances`` writes the rest again
without it). A batch that fails for a reason of one issuance's own (data
the database refuses) is split until the failing issuance is alone
(``ledger.batching.isolate_faults``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from core.errors import DomainError
from core.principal import Principal
from ledger import Ledger
from ledger.batching import MicroBatcher, isolate_faults
from ledger.errors import is_unreachable
from partners.coalition_schemas import IssuanceRequest, IssuanceView
from partners.issuance import prepare_issuance
from partners.issuance_recording import PreparedIssuance, record_issuances

Answer = IssuanceView | DomainError


class IssuanceIntake:
    def __init__(
        self, pool: asyncpg.Pool, ledger: Ledger, *, max_batch: int = 500, max_in_flight: int = 1
    ) -> None:
        # One batch at a time per process, as the purchase intake (which
        # measured it): the requests arriving during a batch form the next,
        # larger one, and two batches of one program would only queue on its
        # ledger's lock.
        self._pool = pool
        self._ledger = ledger
        self._batcher: MicroBatcher[PreparedIssuance, IssuanceView] = MicroBatcher(
            self._record,
            name="issuance-intake",
            max_batch=max_batch,
            max_in_flight=max_in_flight,
            on_closed=lambda: RuntimeError("the issuance intake is closed"),
        )

    async def issue(
        self, request: IssuanceRequest, now: datetime, *, principal: Principal
    ) -> IssuanceView:
        prepared = await prepare_issuance(self._pool, request, now, principal=principal)
        if isinstance(prepared, IssuanceView):
            return prepared  # a replay its parties would now refuse
        return await self.submit(prepared)

    async def submit(self, issuance: PreparedIssuance) -> IssuanceView:
        """Write a prepared issuance with the others submitted meanwhile;
        its refusal is raised to this caller alone."""
        return await self._batcher.submit(issuance)

    async def close(self) -> None:
        await self._batcher.close()

    async def _record(self, batch: list[PreparedIssuance]) -> Sequence[Answer | Exception]:
        answers: list[Answer | Exception | None] = [None] * len(batch)
        by_program: dict[uuid.UUID, list[int]] = {}
        for position, issuance in enumerate(batch):
            by_program.setdefault(issuance.acting.program_id, []).append(position)
        # One transaction per program: a transaction that has posted to one
        # ledger must not then wait on locks of another program's writes.
        for positions in by_program.values():
            group = [batch[p] for p in positions]
            for position, answer in zip(positions, await self._record_group(group), strict=True):
                answers[position] = answer
        return [a for a in answers if a is not None]

    async def _record_group(self, group: list[PreparedIssuance]) -> list[Answer | Exception]:
        try:
            return await isolate_faults(self._record_together, group, is_item_fault=_of_one)
        except Exception as error:
            # The database did not answer: trying each issuance again would
            # only make every caller wait longer for the same error.
            return [error] * len(group)

    async def _record_together(self, group: list[PreparedIssuance]) -> list[Answer]:
        return await record_issuances(self._pool, self._ledger, group)


def _of_one(error: Exception) -> bool:
    """Whether a failed batch may owe its failure to one of its issuances
    (and so is worth splitting): anything but an unreachable database."""
    return not is_unreachable(error)
