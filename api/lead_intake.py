"""Unshared lead registrations of concurrent partner requests, written a
batch at a time (``partners.leads.registration_batch``): each request checks
its registration and reads its parties on its own, then waits for the batch
that writes it. A registration refused for its own data (a constraint the
database holds) is that request's answer alone: the batch is split until
it is alone (``ledger.batching.isolate_faults``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from core.principal import Principal
from core.statement_batch import of_one_request
from ledger.batching import MicroBatcher
from partners.leads.registration_batch import (
    Answer,
    PreparedLead,
    prepare_lead,
    record_leads,
)
from partners.leads.schemas import LeadRegistration, LeadView


class LeadIntake:
    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 200) -> None:
        self._pool = pool
        # One batch in flight, as the purchase intake measured best on two
        # cores: the requests arriving meanwhile form the next one.
        self._batcher: MicroBatcher[PreparedLead, LeadView] = MicroBatcher(
            self._record,
            name="lead-intake",
            max_batch=max_batch,
            max_in_flight=1,
            is_item_fault=of_one_request,
            on_closed=lambda: RuntimeError("the lead intake is closed"),
        )

    async def register(
        self, request: LeadRegistration, now: datetime, *, principal: Principal
    ) -> LeadView:
        """The registration written with the others submitted meanwhile; its
        refusal (or ``NeedsSession``) is raised to this caller alone."""
        prepared = await prepare_lead(self._pool, request, now, principal=principal)
        return await self._batcher.submit(prepared)

    async def close(self) -> None:
        await self._batcher.close()

    async def _record(self, batch: list[PreparedLead]) -> Sequence[Answer]:
        async with self._pool.acquire() as connection, connection.transaction():
            return await record_leads(connection, batch)
