"""What the webhook tests share: a partner's principal, endpoints made by the
use case, partner events committed to the outbox and fanned out, and the
sender run once at a given time.

The database is shared by the whole run: each test's receiver paths are
its own, and the fixture ``no_stray_deliveries`` dead-letters what earlier
tests left due, so that a claim takes this test's deliveries only.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.outbox import drain, emit
from core.principal import Principal, PrincipalKind
from partners import events
from partners.models import Partner
from partners.webhook_deliveries import fan_out
from partners.webhook_endpoints import create_endpoint
from partners.webhook_models import webhook_attempts, webhook_deliveries
from partners.webhook_schemas import CreatedEndpoint, EndpointSpec
from partners.webhook_sending import HttpClients, SendingOptions, deliver_due
from partners.webhook_targets import TargetPolicy

Sessions = async_sessionmaker[AsyncSession]
LOCAL = TargetPolicy(private=True)
#: Short enough for a test that waits out a timeout.
QUICK = SendingOptions(timeout=0.5)


@pytest.fixture
def sessions(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


async def _dead_letter_everything(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.status == "pending")
            .values(status="dead", next_attempt_at=None, dead_at=datetime.now(UTC))
        )


@pytest.fixture
async def no_stray_deliveries(sessions: Sessions) -> AsyncIterator[None]:
    # Events other tests left in the outbox would become deliveries at this
    # test's fan-out: made now, and put aside with the rest.
    await fan_out_events(sessions)
    await _dead_letter_everything(sessions)
    yield
    await _dead_letter_everything(sessions)


@pytest.fixture
async def http() -> AsyncIterator[HttpClients]:
    clients = HttpClients()
    yield clients
    await clients.aclose()


def acting_for(partner: Partner, *also: Partner) -> Principal:
    return Principal(
        kind=PrincipalKind.PARTNER,
        actor=f"partner:client-of-{partner.slug}",
        scopes=frozenset({"webhooks:manage"}),
        program_id=partner.program_id,
        partner_id=partner.id,
        partner_ids=frozenset({partner.id, *(p.id for p in also)}),
    )


async def new_endpoint(
    sessions: Sessions, partner: Partner, url: str, **fields: Any
) -> CreatedEndpoint:
    async with sessions() as session, session.begin():
        return await create_endpoint(
            session,
            EndpointSpec(url=url, **fields),
            principal=acting_for(partner),
            targets=LOCAL,
        )


async def emit_event(
    sessions: Sessions, partner: Partner, topic: str = events.POINTS_ISSUED, **data: Any
) -> uuid.UUID:
    async with sessions() as session, session.begin():
        return await emit(session, topic, events.subject(partner.id), {"points": 100, **data})


async def fan_out_events(sessions: Sessions) -> int:
    return await drain(
        sessions, dict.fromkeys(events.TOPICS, fan_out), datetime.now(UTC) + timedelta(seconds=1)
    )


async def send_due(
    sessions: Sessions,
    http: HttpClients,
    at: datetime | None = None,
    options: SendingOptions = QUICK,
) -> int:
    return await deliver_due(sessions, http, at or datetime.now(UTC), policy=LOCAL, options=options)


async def deliveries_of(sessions: Sessions, endpoint_id: uuid.UUID) -> list[Any]:
    async with sessions() as session:
        return list(
            (
                await session.execute(
                    select(webhook_deliveries)
                    .where(webhook_deliveries.c.endpoint_id == endpoint_id)
                    .order_by(webhook_deliveries.c.id)
                )
            ).all()
        )


async def attempts_of(sessions: Sessions, delivery_id: uuid.UUID) -> list[Any]:
    async with sessions() as session:
        return list(
            (
                await session.execute(
                    select(webhook_attempts)
                    .where(webhook_attempts.c.delivery_id == delivery_id)
                    .order_by(webhook_attempts.c.number)
                )
            ).all()
        )


async def set_failing_since(sessions: Sessions, endpoint_id: uuid.UUID, at: datetime) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE webhook_endpoints SET failing_since = :at WHERE id = :id"),
            {"at": at, "id": endpoint_id},
        )
