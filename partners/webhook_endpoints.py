"""A partner's webhook endpoints: where its events are sent, which event
types, the signing secret and its rotation, enabled or disabled.

A partner client manages the endpoints of its own firm and reads those of
its reach; an operator reads a firm's endpoints and disables or enables
them. Every read filters by the principal's program and reach in SQL: an
endpoint of another partner is not found, exactly as a missing one.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from msgspec import UNSET
from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import DomainError, ErrorKind, Forbidden, NotFound
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal, PrincipalKind
from partners.events import TOPICS
from partners.models import Partner
from partners.webhook_models import (
    DeliveryStatus,
    EndpointStatus,
    WebhookEndpoint,
    webhook_deliveries,
)
from partners.webhook_schemas import (
    ENDPOINTS_MAX,
    CreatedEndpoint,
    EndpointChange,
    EndpointSecretRotation,
    EndpointSpec,
    EndpointView,
    RotatedSecret,
)
from partners.webhook_targets import TargetPolicy, check_url

#: Random bytes of a signing secret (Standard Webhooks asks for 24 to 64).
SECRET_BYTES = 32


class UnknownEventType(DomainError):
    type_slug = "unknown-event-type"


class TooManyEndpoints(DomainError):
    type_slug = "too-many-webhook-endpoints"
    kind = ErrorKind.CONFLICT


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def readable(
    principal: Principal, partner_id: uuid.UUID | None = None
) -> list[ColumnElement[bool]]:
    """The conditions on ``WebhookEndpoint`` for the endpoints ``principal``
    may see, of the firm ``partner_id`` only when given (an operator's
    path names one)."""
    conditions: list[ColumnElement[bool]] = []
    if principal.program_id is not None:
        conditions.append(WebhookEndpoint.program_id == principal.program_id)
    if principal.kind is PrincipalKind.PARTNER:
        conditions.append(WebhookEndpoint.partner_id.in_(principal.partner_ids))
    if partner_id is not None:
        conditions.append(WebhookEndpoint.partner_id == partner_id)
    return conditions


def _subject(endpoint: WebhookEndpoint) -> str:
    return f"partner:{endpoint.partner_id}:webhook-endpoint:{endpoint.id}"


def _event_types(types: list[str] | None) -> list[str] | None:
    if types is None:
        return None
    if unknown := sorted(set(types) - TOPICS):
        raise UnknownEventType(
            f"event_types: unknown {', '.join(unknown)}; the types are {', '.join(sorted(TOPICS))}"
        )
    return sorted(set(types))


async def create_endpoint(
    session: AsyncSession, spec: EndpointSpec, *, principal: Principal, targets: TargetPolicy
) -> CreatedEndpoint:
    """An endpoint of the principal's own firm, enabled, with a new secret
    (answered this once), audited."""
    if principal.kind is not PrincipalKind.PARTNER or principal.partner_id is None:
        raise Forbidden("only a partner's client adds its webhook endpoints")
    url = check_url(spec.url, targets)
    types = _event_types(spec.event_types)
    # The firm's row, locked: two creations at once count each other.
    firm = await session.scalar(
        select(Partner)
        .where(Partner.id == principal.partner_id, Partner.program_id == principal.program_id)
        .with_for_update()
    )
    if firm is None:
        raise NotFound("no such partner")
    count = await session.scalar(select(func.count()).where(WebhookEndpoint.partner_id == firm.id))
    if (count or 0) >= ENDPOINTS_MAX:
        raise TooManyEndpoints(f"a partner has at most {ENDPOINTS_MAX} webhook endpoints")
    endpoint = WebhookEndpoint(
        program_id=firm.program_id,
        partner_id=firm.id,
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
        _subject(endpoint),
        {"url": url, "event_types": types, "description": spec.description},
    )
    return CreatedEndpoint.of_new(endpoint)


async def list_endpoints(
    session: AsyncSession,
    *,
    principal: Principal,
    partner_id: uuid.UUID | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[EndpointView]:
    """Newest first, a page at a time."""
    query = select(WebhookEndpoint).where(*readable(principal, partner_id))
    if (after := decode_cursor(cursor)) is not None:
        query = query.where(WebhookEndpoint.id < after)
    found = list(await session.scalars(query.order_by(WebhookEndpoint.id.desc()).limit(limit + 1)))
    return page_of([EndpointView.of(e) for e in found], [e.id for e in found], limit)


async def find_endpoint(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    principal: Principal,
    partner_id: uuid.UUID | None = None,
    lock: bool = False,
) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, *readable(principal, partner_id)
    )
    endpoint = await session.scalar(query.with_for_update() if lock else query)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


async def get_endpoint(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    principal: Principal,
    partner_id: uuid.UUID | None = None,
) -> EndpointView:
    return EndpointView.of(
        await find_endpoint(session, endpoint_id, principal=principal, partner_id=partner_id)
    )


async def update_endpoint(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    change: EndpointChange,
    *,
    principal: Principal,
    targets: TargetPolicy,
) -> EndpointView:
    """Set the fields ``change`` gives; audited with each changed field
    before and after (a change that changes nothing writes no line)."""
    endpoint = await find_endpoint(session, endpoint_id, principal=principal, lock=True)
    wanted: dict[str, Any] = {}
    if change.url is not UNSET:
        wanted["url"] = check_url(change.url, targets)
    if change.event_types is not UNSET:
        wanted["event_types"] = _event_types(change.event_types)
    if change.description is not UNSET:
        wanted["description"] = change.description
    changed = {
        name: {"from": getattr(endpoint, name), "to": value}
        for name, value in wanted.items()
        if getattr(endpoint, name) != value
    }
    for name, values in changed.items():
        setattr(endpoint, name, values["to"])
    if change.status is not UNSET and change.status != endpoint.status:
        changed["status"] = {"from": endpoint.status, "to": change.status}
        await _move(
            session, endpoint, EndpointStatus(change.status), f"disabled by {principal.actor}"
        )
    if changed:
        await session.flush()
        await audit.record(
            session, principal, "webhook-endpoint.update", _subject(endpoint), changed
        )
    return EndpointView.of(endpoint)


async def set_endpoint_status(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    status: EndpointStatus,
    *,
    principal: Principal,
    partner_id: uuid.UUID | None = None,
    reason: str | None = None,
) -> EndpointView:
    """Disable or enable an endpoint (an operator's, or the partner's own
    through ``update_endpoint``), audited; already so: nothing written."""
    endpoint = await find_endpoint(
        session, endpoint_id, principal=principal, partner_id=partner_id, lock=True
    )
    if endpoint.status != status:
        await _move(session, endpoint, status, reason or f"disabled by {principal.actor}")
        await session.flush()
        await audit.record(
            session,
            principal,
            f"webhook-endpoint.{'enable' if status is EndpointStatus.ENABLED else 'disable'}",
            _subject(endpoint),
            {"reason": reason},
        )
    return EndpointView.of(endpoint)


async def _move(
    session: AsyncSession, endpoint: WebhookEndpoint, status: EndpointStatus, reason: str
) -> None:
    now = datetime.now(UTC)
    endpoint.status = status
    if status is EndpointStatus.ENABLED:
        # A fresh start: its earlier failures do not count towards disabling it.
        endpoint.disabled_at = None
        endpoint.disabled_reason = None
        endpoint.failing_since = None
        return
    endpoint.disabled_at = now
    endpoint.disabled_reason = reason[:500]
    await dead_letter_pending(session, [endpoint.id], now)


async def dead_letter_pending(
    session: AsyncSession, endpoint_ids: list[uuid.UUID], now: datetime
) -> None:
    """The due deliveries of disabled endpoints: not sent, kept to replay.
    One being sent keeps its lease, so that its attempt is still logged."""
    await session.execute(
        update(webhook_deliveries)
        .where(
            webhook_deliveries.c.endpoint_id.in_(endpoint_ids),
            webhook_deliveries.c.status == DeliveryStatus.PENDING,
        )
        .values(status=DeliveryStatus.DEAD, dead_at=now, next_attempt_at=None)
    )


async def rotate_secret(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    rotation: EndpointSecretRotation,
    *,
    principal: Principal,
) -> RotatedSecret:
    """A new secret, answered this once; the one before keeps signing for
    ``overlap_seconds`` (a rotation during an overlap ends the older one)."""
    endpoint = await find_endpoint(session, endpoint_id, principal=principal, lock=True)
    overlap = timedelta(seconds=rotation.overlap_seconds)
    if overlap:
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = datetime.now(UTC) + overlap
    else:
        endpoint.previous_secret = None
        endpoint.previous_secret_expires_at = None
    endpoint.secret = new_secret()
    await session.flush()
    await audit.record(
        session,
        principal,
        "webhook-endpoint.rotate-secret",
        _subject(endpoint),
        {"overlap_seconds": rotation.overlap_seconds},
    )
    return RotatedSecret(
        secret=endpoint.secret, previous_secret_expires_at=endpoint.previous_secret_expires_at
    )


async def delete_endpoint(
    session: AsyncSession, endpoint_id: uuid.UUID, *, principal: Principal
) -> None:
    """The endpoint and its delivery log go; the audit trail keeps the deletion."""
    endpoint = await find_endpoint(session, endpoint_id, principal=principal, lock=True)
    subject = _subject(endpoint)
    await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id))
    session.expunge(endpoint)
    await audit.record(
        session, principal, "webhook-endpoint.delete", subject, {"url": endpoint.url}
    )
