"""A program's own webhook endpoints: its operators register them (URL,
program event types, a signing secret and its rotation, enabled or
disabled) and receive the program's events, first of all a reconciliation
run's differences (``partners.program_webhook_events``).

They are rows of ``webhook_endpoints`` with ``partner_id`` NULL: the
partners' delivery machinery (fan-out, signing, retries, dead letters,
replays, the log: ``partners.webhook_*``) serves them unchanged. Each read
here filters by the program of the path and ``partner_id`` NULL in SQL: a
partner's endpoint, or another program's, is not found, exactly as a
missing one; a partner's reads never see these (``webhook_endpoints.
readable``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.models import Program
from core.outbox import BatchSubscriber, OutboxEvent
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal
from ledger import new_id
from partners.program_webhook_events import OPERATOR_TOPICS
from partners.program_webhook_schemas import (
    PROGRAM_ENDPOINTS_MAX,
    CreatedProgramEndpoint,
    ProgramEndpointChange,
    ProgramEndpointSpec,
    ProgramEndpointView,
)
from partners.webhook_deliveries import insert_deliveries
from partners.webhook_endpoints import (
    TooManyEndpoints,
    change_endpoint,
    endpoint_subject,
    event_types,
    find_endpoint,
    new_secret,
    readable,
    remove,
    rotate,
)
from partners.webhook_models import EndpointStatus, WebhookEndpoint
from partners.webhook_schemas import EndpointSecretRotation, RotatedSecret
from partners.webhook_targets import TargetPolicy, check_url

#: An advisory lock's first key: a program's own endpoints being added ("OW").
_ADDING = 0x4F57


async def create_program_endpoint(
    session: AsyncSession,
    program: Program,
    spec: ProgramEndpointSpec,
    *,
    principal: Principal,
    targets: TargetPolicy,
) -> CreatedProgramEndpoint:
    """An endpoint of the program's own, enabled, with a new secret
    (answered this once), audited."""
    url = check_url(spec.url, targets)
    types = event_types(spec.event_types, OPERATOR_TOPICS)
    # Two creations at once count each other (the program's row stays free
    # for everything else that locks it).
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:key, hashtext(:program))"),
        {"key": _ADDING, "program": str(program.id)},
    )
    count = await session.scalar(select(func.count()).where(*readable(principal, own=program.id)))
    if (count or 0) >= PROGRAM_ENDPOINTS_MAX:
        raise TooManyEndpoints(
            f"a program has at most {PROGRAM_ENDPOINTS_MAX} webhook endpoints of its own"
        )
    endpoint = WebhookEndpoint(
        program_id=program.id,
        partner_id=None,
        url=url,
        description=spec.description,
        event_types=types,
        status=EndpointStatus.ENABLED,
        secret=new_secret(),
    )
    session.add(endpoint)
    await session.flush()
    await audit.record(
        session,
        principal,
        "webhook-endpoint.create",
        endpoint_subject(endpoint),
        {"url": url, "event_types": types, "description": spec.description},
    )
    return CreatedProgramEndpoint.of(endpoint)


async def list_program_endpoints(
    session: AsyncSession,
    program: Program,
    *,
    principal: Principal,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[ProgramEndpointView]:
    """The program's own endpoints, newest first, a page at a time."""
    query = select(WebhookEndpoint).where(*readable(principal, own=program.id))
    if (after := decode_cursor(cursor)) is not None:
        query = query.where(WebhookEndpoint.id < after)
    found = list(await session.scalars(query.order_by(WebhookEndpoint.id.desc()).limit(limit + 1)))
    return page_of([ProgramEndpointView.of(e) for e in found], [e.id for e in found], limit)


async def find_program_endpoint(
    session: AsyncSession,
    program: Program,
    endpoint_id: uuid.UUID,
    *,
    principal: Principal,
    lock: bool = False,
) -> WebhookEndpoint:
    return await find_endpoint(session, endpoint_id, principal=principal, own=program.id, lock=lock)


async def get_program_endpoint(
    session: AsyncSession, program: Program, endpoint_id: uuid.UUID, *, principal: Principal
) -> ProgramEndpointView:
    return ProgramEndpointView.of(
        await find_program_endpoint(session, program, endpoint_id, principal=principal)
    )


async def update_program_endpoint(
    session: AsyncSession,
    program: Program,
    endpoint_id: uuid.UUID,
    change: ProgramEndpointChange,
    *,
    principal: Principal,
    targets: TargetPolicy,
) -> ProgramEndpointView:
    """Set the fields ``change`` gives, as a partner changes its own
    (``webhook_endpoints.update_endpoint``), with the program's event types."""
    endpoint = await find_program_endpoint(
        session, program, endpoint_id, principal=principal, lock=True
    )
    await change_endpoint(
        session, endpoint, change, principal=principal, targets=targets, topics=OPERATOR_TOPICS
    )
    return ProgramEndpointView.of(endpoint)


async def rotate_program_secret(
    session: AsyncSession,
    program: Program,
    endpoint_id: uuid.UUID,
    rotation: EndpointSecretRotation,
    *,
    principal: Principal,
) -> RotatedSecret:
    """A new secret, answered this once, as a partner rotates its own
    (``webhook_endpoints.rotate_secret``)."""
    endpoint = await find_program_endpoint(
        session, program, endpoint_id, principal=principal, lock=True
    )
    return await rotate(session, endpoint, rotation, principal=principal)


async def delete_program_endpoint(
    session: AsyncSession, program: Program, endpoint_id: uuid.UUID, *, principal: Principal
) -> None:
    """The endpoint and its delivery log go; the audit trail keeps the deletion."""
    endpoint = await find_program_endpoint(
        session, program, endpoint_id, principal=principal, lock=True
    )
    await remove(session, endpoint, principal=principal)


def _program_of(event: OutboxEvent) -> uuid.UUID:
    kind, _, program = event.subject.partition(":")
    if kind != "program":
        raise ValueError(f"a program event's subject is program:<id>, not {event.subject!r}")
    return uuid.UUID(program)


_OWN_ENDPOINTS_OF = text(
    "SELECT id, program_id, partner_id, event_types FROM webhook_endpoints"
    " WHERE program_id = ANY(:programs) AND partner_id IS NULL AND status = 'enabled'"
).bindparams(bindparam("programs", type_=ARRAY(UUID(as_uuid=True))))


async def make_program_deliveries(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    """One delivery per event and enabled endpoint of its program's own
    that takes its type, due at the event's time: two statements for any
    number of events (a program with none: nothing, the event handled)."""
    by_program = {event.id: _program_of(event) for event in events}
    endpoints: dict[uuid.UUID, list[Any]] = {}
    for row in await session.execute(
        _OWN_ENDPOINTS_OF, {"programs": list(set(by_program.values()))}
    ):
        endpoints.setdefault(row.program_id, []).append(row)
    await insert_deliveries(
        session,
        [
            (new_id(), endpoint, event)
            for event in events
            for endpoint in endpoints.get(by_program[event.id], ())
            if endpoint.event_types is None or event.topic in endpoint.event_types
        ],
    )


#: The subscriber of every program topic an operator's endpoint may take
#: (``partners.module``).
program_fan_out = BatchSubscriber(make_program_deliveries)
