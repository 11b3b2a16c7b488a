"""A partner's webhook endpoints: where its events are sent, which event
types, the signing secret and its rotation, enabled or disabled.

A partner client manages the endpoints of its own firm and reads those of
its reach; an operator reads a firm's endpoints and disables or enables
them. Every read filters by the principal's program and reach in SQL: an
endpoint of another partner is not found, exactly as a missing one.

A program's own endpoints (``partner_id`` NULL, its operators':
``partners.program_webhooks``) are never among a partner's. One
implementation serves both: an ``EndpointOwner`` (a firm, or a program's
own) says whose endpoints are added (``add_endpoint``) and counted, and
``readable`` whose are seen; the use cases on a row (``change_endpoint``,
``change_status``, ``rotate``, ``remove``) take one found either way.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeAlias, TypeVar

from msgspec import UNSET, UnsetType
from sqlalchemy import ColumnElement, delete, false, func, select, text, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

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
    EndpointFields,
    EndpointSecretRotation,
    EndpointSpec,
    EndpointView,
    RotatedSecret,
)
from partners.webhook_targets import TargetPolicy, check_url

#: Random bytes of a signing secret (Standard Webhooks asks for 24 to 64).
SECRET_BYTES = 32
#: An advisory lock's first key: a program's own endpoints being added ("OW").
_ADDING_OWN = 0x4F57

View = TypeVar("View", bound=EndpointFields)
#: A table's column, as a model's attribute or a Core table's.
_Column: TypeAlias = InstrumentedAttribute[Any] | ColumnElement[Any]


class UnknownEventType(DomainError):
    type_slug = "unknown-event-type"


class TooManyEndpoints(DomainError):
    type_slug = "too-many-webhook-endpoints"
    kind = ErrorKind.CONFLICT


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def seen_by(
    principal: Principal,
    program_id: _Column,
    partner_id: _Column,
    *,
    firm: uuid.UUID | None = None,
    own: uuid.UUID | None = None,
) -> list[ColumnElement[bool]]:
    """The conditions on a table's ``program_id`` and ``partner_id`` (the
    endpoints', their deliveries') for the partners' rows ``principal`` may
    see, of the firm ``firm`` only when given (an operator's path names
    one); never a program's own. With ``own``, the rows of that program's
    own endpoints instead (never a partner's to see)."""
    if own is not None:
        return [
            program_id == own,
            partner_id.is_(None),
            program_id == (principal.program_id or own),
            false() if principal.kind is PrincipalKind.PARTNER else true(),
        ]
    conditions: list[ColumnElement[bool]] = [partner_id.is_not(None)]
    if principal.program_id is not None:
        conditions.append(program_id == principal.program_id)
    if principal.kind is PrincipalKind.PARTNER:
        conditions.append(partner_id.in_(principal.partner_ids))
    if firm is not None:
        conditions.append(partner_id == firm)
    return conditions


def readable(
    principal: Principal, partner_id: uuid.UUID | None = None, *, own: uuid.UUID | None = None
) -> list[ColumnElement[bool]]:
    """``seen_by`` on ``WebhookEndpoint``."""
    return seen_by(
        principal,
        WebhookEndpoint.program_id,
        WebhookEndpoint.partner_id,
        firm=partner_id,
        own=own,
    )


@dataclass(frozen=True, slots=True)
class EndpointOwner:
    """Whose endpoints: a partner firm's, or (``partner_id`` None) a
    program's own; the event types they may take and how many they may have."""

    program_id: uuid.UUID
    partner_id: uuid.UUID | None
    topics: frozenset[str]
    most: int

    @classmethod
    def firm(cls, principal: Principal) -> EndpointOwner:
        """The firm of a partner's client: only a client adds its firm's endpoints."""
        if principal.kind is not PrincipalKind.PARTNER or principal.partner_id is None:
            raise Forbidden("only a partner's client adds its webhook endpoints")
        if principal.program_id is None:
            raise NotFound("no such partner")
        return cls(principal.program_id, principal.partner_id, TOPICS, ENDPOINTS_MAX)

    def endpoints(self) -> list[ColumnElement[bool]]:
        """The conditions on ``WebhookEndpoint`` for its endpoints, every one."""
        if self.partner_id is None:
            return [
                WebhookEndpoint.program_id == self.program_id,
                WebhookEndpoint.partner_id.is_(None),
            ]
        return [WebhookEndpoint.partner_id == self.partner_id]

    async def lock(self, session: AsyncSession) -> None:
        """Two creations at once count each other: the firm's row, locked
        (missing: ``NotFound``); for a program, an advisory lock, so that
        the program's row stays free for everything else that locks it."""
        if self.partner_id is None:
            await session.execute(
                text("SELECT pg_advisory_xact_lock(:key, hashtext(:program))"),
                {"key": _ADDING_OWN, "program": str(self.program_id)},
            )
            return
        firm = await session.scalar(
            select(Partner.id)
            .where(Partner.id == self.partner_id, Partner.program_id == self.program_id)
            .with_for_update()
        )
        if firm is None:
            raise NotFound("no such partner")

    def too_many(self) -> TooManyEndpoints:
        if self.partner_id is None:
            return TooManyEndpoints(
                f"a program has at most {self.most} webhook endpoints of its own"
            )
        return TooManyEndpoints(f"a partner has at most {self.most} webhook endpoints")


def endpoint_subject(endpoint: WebhookEndpoint) -> str:
    """How the audit trail names an endpoint: its partner's, or its program's."""
    if endpoint.partner_id is None:
        return f"program:{endpoint.program_id}:webhook-endpoint:{endpoint.id}"
    return f"partner:{endpoint.partner_id}:webhook-endpoint:{endpoint.id}"


def event_types(types: list[str] | None, topics: frozenset[str] = TOPICS) -> list[str] | None:
    """The event types as stored, or ``UnknownEventType`` naming the known ones."""
    if types is None:
        return None
    if unknown := sorted(set(types) - topics):
        raise UnknownEventType(
            f"event_types: unknown {', '.join(unknown)}; the types are {', '.join(sorted(topics))}"
        )
    return sorted(set(types))


class _Spec(Protocol):
    @property
    def url(self) -> str: ...
    @property
    def event_types(self) -> list[str] | None: ...
    @property
    def description(self) -> str: ...


async def add_endpoint(
    session: AsyncSession,
    owner: EndpointOwner,
    spec: _Spec,
    *,
    principal: Principal,
    targets: TargetPolicy,
) -> WebhookEndpoint:
    """An endpoint of ``owner``'s, enabled, with a new secret, audited."""
    url = check_url(spec.url, targets)
    types = event_types(spec.event_types, owner.topics)
    await owner.lock(session)
    count = await session.scalar(select(func.count()).where(*owner.endpoints()))
    if (count or 0) >= owner.most:
        raise owner.too_many()
    endpoint = WebhookEndpoint(
        program_id=owner.program_id,
        partner_id=owner.partner_id,
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
    return endpoint


async def create_endpoint(
    session: AsyncSession, spec: EndpointSpec, *, principal: Principal, targets: TargetPolicy
) -> CreatedEndpoint:
    """An endpoint of the principal's own firm, enabled, with a new secret
    (answered this once), audited."""
    owner = EndpointOwner.firm(principal)
    return CreatedEndpoint.of(
        await add_endpoint(session, owner, spec, principal=principal, targets=targets)
    )


async def endpoint_page(
    session: AsyncSession,
    view: type[View],
    conditions: list[ColumnElement[bool]],
    *,
    cursor: str | None,
    limit: int,
) -> Page[View]:
    """The endpoints that meet ``conditions``, newest first, a page at a time."""
    query = select(WebhookEndpoint).where(*conditions)
    if (after := decode_cursor(cursor)) is not None:
        query = query.where(WebhookEndpoint.id < after)
    found = list(await session.scalars(query.order_by(WebhookEndpoint.id.desc()).limit(limit + 1)))
    return page_of([view.of(e) for e in found], [e.id for e in found], limit)


async def list_endpoints(
    session: AsyncSession,
    *,
    principal: Principal,
    partner_id: uuid.UUID | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[EndpointView]:
    """Newest first, a page at a time."""
    return await endpoint_page(
        session, EndpointView, readable(principal, partner_id), cursor=cursor, limit=limit
    )


async def find_endpoint(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    principal: Principal,
    partner_id: uuid.UUID | None = None,
    own: uuid.UUID | None = None,
    lock: bool = False,
) -> WebhookEndpoint:
    """A partner's endpoint the principal may see; with ``own``, one of that
    program's own."""
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.id == endpoint_id, *readable(principal, partner_id, own=own)
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
    await change_endpoint(session, endpoint, change, principal=principal, targets=targets)
    return EndpointView.of(endpoint)


class _Change(Protocol):
    @property
    def url(self) -> str | UnsetType: ...
    @property
    def event_types(self) -> list[str] | UnsetType | None: ...
    @property
    def description(self) -> str | UnsetType: ...
    @property
    def status(self) -> str | UnsetType: ...


async def change_endpoint(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    change: _Change,
    *,
    principal: Principal,
    targets: TargetPolicy,
    topics: frozenset[str] = TOPICS,
) -> None:
    """``update_endpoint`` on an endpoint found and locked by the caller,
    whose event types are among ``topics``."""
    wanted: dict[str, Any] = {}
    if change.url is not UNSET:
        wanted["url"] = check_url(change.url, targets)
    if change.event_types is not UNSET:
        wanted["event_types"] = event_types(change.event_types, topics)
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
            session, principal, "webhook-endpoint.update", endpoint_subject(endpoint), changed
        )


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
    await change_status(session, endpoint, status, principal=principal, reason=reason)
    return EndpointView.of(endpoint)


async def change_status(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    status: EndpointStatus,
    *,
    principal: Principal,
    reason: str | None = None,
) -> None:
    """``set_endpoint_status`` on an endpoint found and locked by the caller."""
    if endpoint.status != status:
        await _move(session, endpoint, status, reason or f"disabled by {principal.actor}")
        await session.flush()
        await audit.record(
            session,
            principal,
            f"webhook-endpoint.{'enable' if status is EndpointStatus.ENABLED else 'disable'}",
            endpoint_subject(endpoint),
            {"reason": reason},
        )


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
    return await rotate(session, endpoint, rotation, principal=principal)


async def rotate(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    rotation: EndpointSecretRotation,
    *,
    principal: Principal,
) -> RotatedSecret:
    """``rotate_secret`` of an endpoint found and locked by the caller."""
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
        endpoint_subject(endpoint),
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
    await remove(session, endpoint, principal=principal)


async def remove(session: AsyncSession, endpoint: WebhookEndpoint, *, principal: Principal) -> None:
    """``delete_endpoint`` of an endpoint found and locked by the caller."""
    subject = endpoint_subject(endpoint)
    await session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint.id))
    session.expunge(endpoint)
    await audit.record(
        session, principal, "webhook-endpoint.delete", subject, {"url": endpoint.url}
    )
