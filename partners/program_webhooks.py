"""A program's own webhook endpoints: its operators register them (URL,
program event types, a signing secret and its rotation, enabled or
disabled) and receive the program's events, first of all a reconciliation
run's differences (``partners.program_webhook_events``).

They are rows of ``webhook_endpoints`` with ``partner_id`` NULL: the
partners' machinery (adding, changing, fan-out, signing, retries, dead
letters, replays, the log: ``partners.webhook_*``) serves them unchanged,
with the program as the endpoints' owner (``EndpointOwner``) and the
program's event types. Each read here filters by the program of the path
and ``partner_id`` NULL in SQL: a partner's endpoint, or another program's,
is not found, exactly as a missing one; a partner's reads never see these
(``webhook_endpoints.readable``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from core.outbox import BatchSubscriber, OutboxEvent
from core.pagination import Page
from core.principal import Principal
from partners.program_webhook_events import OPERATOR_TOPICS
from partners.program_webhook_schemas import (
    PROGRAM_ENDPOINTS_MAX,
    CreatedProgramEndpoint,
    ProgramEndpointChange,
    ProgramEndpointSpec,
    ProgramEndpointView,
)
from partners.webhook_deliveries import make_deliveries_to
from partners.webhook_endpoints import (
    EndpointOwner,
    add_endpoint,
    change_endpoint,
    endpoint_page,
    find_endpoint,
    readable,
    remove,
    rotate,
)
from partners.webhook_models import WebhookEndpoint
from partners.webhook_schemas import EndpointSecretRotation, RotatedSecret
from partners.webhook_targets import TargetPolicy


def program_owner(program: Program) -> EndpointOwner:
    """The program as the owner of its own endpoints."""
    return EndpointOwner(program.id, None, OPERATOR_TOPICS, PROGRAM_ENDPOINTS_MAX)


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
    endpoint = await add_endpoint(
        session, program_owner(program), spec, principal=principal, targets=targets
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
    return await endpoint_page(
        session,
        ProgramEndpointView,
        readable(principal, own=program.id),
        cursor=cursor,
        limit=limit,
    )


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


async def make_program_deliveries(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    """One delivery per event and enabled endpoint of its program's own
    that takes its type (a program with none: nothing, the event handled)."""
    await make_deliveries_to(session, events, "program")


#: The subscriber of every program topic an operator's endpoint may take
#: (``partners.module``).
program_fan_out = BatchSubscriber(make_program_deliveries)
