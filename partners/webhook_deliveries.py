"""Deliveries: each partner event becomes one delivery per enabled endpoint
of its partner that takes its type, made by the outbox's subscriber in the
transaction that marks the event handled (``core.outbox``): an event of a
change that rolled back was never written, so nothing is sent for it; an
event handled twice makes its deliveries once (one per endpoint and event).

A delivery's id is its ``webhook-id`` (``msg_<hex>``), the same on every
attempt and replay. Its body, rendered once, is the Standard Webhooks
payload: ``{"type", "timestamp", "data"}``.

The log (deliveries of an endpoint, a delivery's attempts) and replays are
read and made within the principal's program and reach, in SQL; with
``own`` (a program's id), within that program's own endpoints instead (its
operators': ``partners.program_webhooks``, whose fan-out is this one:
``make_deliveries_to`` a program's own endpoints).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from sqlalchemy import (
    ColumnElement,
    DateTime,
    String,
    Text,
    TextClause,
    bindparam,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import DomainError, ErrorKind, NotFound
from core.outbox import BatchSubscriber, OutboxEvent
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal
from ledger import new_id
from partners.data_sharing.disclosures import blocked_replays
from partners.webhook_endpoints import endpoint_subject, find_endpoint, seen_by
from partners.webhook_models import (
    RETRY_DELAYS,
    DeliveryStatus,
    EndpointStatus,
    WebhookEndpoint,
    webhook_attempts,
    webhook_deliveries,
)
from partners.webhook_schemas import (
    AttemptView,
    DeliveryDetail,
    DeliveryView,
    ReplaySince,
    message_id,
)

#: The event type of a test event (``send_test_event``), sent to one
#: endpoint whatever types it takes.
TEST_EVENT = "webhook.test"

deliveries = webhook_deliveries.c


class DeliveryNotReplayable(DomainError):
    """A delivery still pending is sent anyway; its endpoint disabled sends nothing."""

    type_slug = "delivery-not-replayable"
    kind = ErrorKind.CONFLICT


def body_of(topic: str, at: datetime, data: dict[str, Any]) -> str:
    """The Standard Webhooks payload, as sent."""
    stamp = at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return msgspec.json.encode({"type": topic, "timestamp": stamp, "data": data}).decode()


#: Whose endpoints an event goes to: the kind its subject names
#: (``partner:<id>``, ``program:<id>``).
OwnerKind = Literal["partner", "program"]


def _enabled_endpoints(owner: str, of_owners: str) -> TextClause:
    return text(
        f"SELECT id, program_id, partner_id, event_types, {owner} AS owner"
        f" FROM webhook_endpoints WHERE {of_owners} AND status = 'enabled'"
    ).bindparams(bindparam("owners", type_=ARRAY(UUID(as_uuid=True))))


#: The enabled endpoints of the owners named, by kind of owner: a
#: program's own are never a partner's of the program.
_ENABLED_ENDPOINTS: dict[OwnerKind, TextClause] = {
    "partner": _enabled_endpoints("partner_id", "partner_id = ANY(:owners)"),
    "program": _enabled_endpoints("program_id", "program_id = ANY(:owners) AND partner_id IS NULL"),
}


def _owner_of(event: OutboxEvent, kind: OwnerKind) -> uuid.UUID:
    found, _, owner = event.subject.partition(":")
    if found != kind:
        raise ValueError(f"a {kind} event's subject is {kind}:<id>, not {event.subject!r}")
    return uuid.UUID(owner)


async def make_deliveries_to(
    session: AsyncSession, events: Sequence[OutboxEvent], kind: OwnerKind
) -> None:
    """One delivery per event and enabled endpoint of the ``kind`` of owner
    its subject names (a partner; a program, its own endpoints) that takes
    its type, due at the event's time: two statements for any number of
    events."""
    by_owner = {event.id: _owner_of(event, kind) for event in events}
    endpoints: dict[uuid.UUID, list[Any]] = {}
    for row in await session.execute(
        _ENABLED_ENDPOINTS[kind], {"owners": list(set(by_owner.values()))}
    ):
        endpoints.setdefault(row.owner, []).append(row)
    await _insert_deliveries(
        session,
        [
            (new_id(), endpoint, event)
            for event in events
            for endpoint in endpoints.get(by_owner[event.id], ())
            if endpoint.event_types is None or event.topic in endpoint.event_types
        ],
    )


async def make_deliveries(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    """One delivery per event and enabled endpoint of its partner that takes
    its type (``make_deliveries_to``)."""
    await make_deliveries_to(session, events, "partner")


async def _insert_deliveries(
    session: AsyncSession, rows: Sequence[tuple[uuid.UUID, Any, OutboxEvent]]
) -> None:
    """A delivery per (id, endpoint, event), the endpoint a row with its
    ``id``, ``program_id`` and ``partner_id``: due at the event's time, its
    body the event's payload; one already made for the endpoint and event
    is kept as it is."""
    if rows:
        await session.execute(
            _INSERT_DELIVERIES,
            {
                "ids": [delivery for delivery, _, _ in rows],
                "programs": [endpoint.program_id for _, endpoint, _ in rows],
                "partners": [endpoint.partner_id for _, endpoint, _ in rows],
                "endpoints": [endpoint.id for _, endpoint, _ in rows],
                "events": [event.id for _, _, event in rows],
                "types": [event.topic for _, _, event in rows],
                "bodies": [
                    body_of(event.topic, event.created_at, event.payload) for _, _, event in rows
                ],
                "dues": [event.created_at for _, _, event in rows],
                "retries": len(RETRY_DELAYS),
            },
        )


_UUIDS = ARRAY(UUID(as_uuid=True))
# Arrays, not a row of parameters per delivery: a batch of events may make
# more deliveries than a statement takes parameters.
_INSERT_DELIVERIES = text(
    "INSERT INTO webhook_deliveries (id, program_id, partner_id, endpoint_id, event_id,"
    " event_type, body, status, retries_left, next_attempt_at)"
    " SELECT v.id, v.program_id, v.partner_id, v.endpoint_id, v.event_id, v.event_type,"
    " v.body, 'pending', :retries, v.due"
    " FROM unnest(:ids, :programs, :partners, :endpoints, :events, :types, :bodies, :dues)"
    " AS v(id, program_id, partner_id, endpoint_id, event_id, event_type, body, due)"
    " ON CONFLICT ON CONSTRAINT uq_webhook_deliveries_endpoint_id DO NOTHING"
).bindparams(
    bindparam("ids", type_=_UUIDS),
    bindparam("programs", type_=_UUIDS),
    bindparam("partners", type_=_UUIDS),
    bindparam("endpoints", type_=_UUIDS),
    bindparam("events", type_=_UUIDS),
    bindparam("types", type_=ARRAY(String())),
    bindparam("bodies", type_=ARRAY(Text())),
    bindparam("dues", type_=ARRAY(DateTime(timezone=True))),
)


#: The subscriber of every partner topic (``partners.module``).
fan_out = BatchSubscriber(make_deliveries)


def _readable(principal: Principal, own: uuid.UUID | None = None) -> list[ColumnElement[bool]]:
    return seen_by(principal, deliveries.program_id, deliveries.partner_id, own=own)


def _view(row: Any) -> DeliveryView:
    return DeliveryView(
        id=message_id(row.id),
        endpoint_id=row.endpoint_id,
        event_type=row.event_type,
        event_id=row.event_id,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        dead_at=row.dead_at,
    )


_VIEW_COLUMNS = (
    deliveries.id,
    deliveries.endpoint_id,
    deliveries.event_type,
    deliveries.event_id,
    deliveries.status,
    deliveries.attempts,
    deliveries.next_attempt_at,
    deliveries.created_at,
    deliveries.delivered_at,
    deliveries.dead_at,
)


async def list_deliveries(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    principal: Principal,
    status: DeliveryStatus | None = None,
    cursor: str | None = None,
    limit: int = 50,
    own: uuid.UUID | None = None,
) -> Page[DeliveryView]:
    """An endpoint's deliveries, newest first, a page at a time."""
    endpoint = await find_endpoint(session, endpoint_id, principal=principal, own=own)
    query = select(*_VIEW_COLUMNS).where(
        deliveries.endpoint_id == endpoint.id, *_readable(principal, own)
    )
    if status is not None:
        query = query.where(deliveries.status == status)
    if (after := decode_cursor(cursor)) is not None:
        query = query.where(deliveries.id < after)
    rows = (await session.execute(query.order_by(deliveries.id.desc()).limit(limit + 1))).all()
    return page_of([_view(row) for row in rows], [row.id for row in rows], limit)


async def get_delivery(
    session: AsyncSession,
    delivery_id: uuid.UUID,
    *,
    principal: Principal,
    own: uuid.UUID | None = None,
) -> DeliveryDetail:
    """A delivery with its body and every attempt, oldest first."""
    row = (
        await session.execute(
            select(*_VIEW_COLUMNS, deliveries.body).where(
                deliveries.id == delivery_id, *_readable(principal, own)
            )
        )
    ).first()
    if row is None:
        raise NotFound(f"no webhook delivery {message_id(delivery_id)}")
    attempts = webhook_attempts.c
    log = (
        await session.execute(
            select(
                attempts.number,
                attempts.attempted_at,
                attempts.status_code,
                attempts.latency_ms,
                attempts.succeeded,
                attempts.error,
                attempts.response_head,
            )
            .where(attempts.delivery_id == delivery_id)
            .order_by(attempts.number, attempts.attempted_at)
        )
    ).all()
    view = _view(row)
    return DeliveryDetail(
        **msgspec.structs.asdict(view),
        payload=msgspec.json.decode(row.body),
        attempt_log=[AttemptView(**row._asdict()) for row in log],
    )


async def replay_delivery(
    session: AsyncSession,
    delivery_id: uuid.UUID,
    *,
    principal: Principal,
    own: uuid.UUID | None = None,
) -> DeliveryView:
    """Send a succeeded or dead-lettered delivery once more, at once, with
    the same ``webhook-id`` (one attempt: if it fails, the delivery is dead
    again). Audited."""
    now = datetime.now(UTC)
    row = (
        await session.execute(
            select(deliveries.id, deliveries.status, deliveries.endpoint_id, WebhookEndpoint.status)
            .join(WebhookEndpoint, WebhookEndpoint.id == deliveries.endpoint_id)
            .where(deliveries.id == delivery_id, *_readable(principal, own))
            .with_for_update(of=webhook_deliveries)
        )
    ).first()
    if row is None:
        raise NotFound(f"no webhook delivery {message_id(delivery_id)}")
    if row[1] == DeliveryStatus.PENDING:
        raise DeliveryNotReplayable("the delivery is pending: it is sent anyway")
    if row[3] != EndpointStatus.ENABLED:
        raise DeliveryNotReplayable("the endpoint is disabled: enable it first")
    if await blocked_replays(session, [delivery_id], now):
        raise DeliveryNotReplayable(
            "the delivery carries members' data under a data-sharing agreement no longer in force"
        )
    await _replay(session, [delivery_id], now)
    await audit.record(
        session,
        principal,
        "webhook-delivery.replay",
        f"{'partner' if own is None else 'program'}-webhook-delivery:{message_id(delivery_id)}",
    )
    found = (
        await session.execute(select(*_VIEW_COLUMNS).where(deliveries.id == delivery_id))
    ).one()
    return _view(found)


async def replay_dead_since(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    replay: ReplaySince,
    *,
    principal: Principal,
    own: uuid.UUID | None = None,
) -> int:
    """Send again, at once, every dead-lettered delivery of an enabled
    endpoint made since ``replay.since``; answers how many. Audited."""
    endpoint = await find_endpoint(session, endpoint_id, principal=principal, own=own, lock=True)
    if endpoint.status != EndpointStatus.ENABLED:
        raise DeliveryNotReplayable("the endpoint is disabled: enable it first")
    ids = list(
        await session.scalars(
            select(deliveries.id).where(
                deliveries.endpoint_id == endpoint.id,
                deliveries.status == DeliveryStatus.DEAD,
                deliveries.created_at >= replay.since,
                *_readable(principal, own),
            )
        )
    )
    if ids:
        # Members' data under an agreement no longer in force never goes again.
        blocked = await blocked_replays(session, ids, datetime.now(UTC))
        ids = [each for each in ids if each not in blocked]
    if ids:
        await _replay(session, ids, datetime.now(UTC))
    await audit.record(
        session,
        principal,
        "webhook-endpoint.replay-dead",
        endpoint_subject(endpoint),
        {"since": replay.since.isoformat(), "replayed": len(ids)},
    )
    return len(ids)


async def _replay(session: AsyncSession, ids: list[uuid.UUID], now: datetime) -> None:
    await session.execute(
        update(webhook_deliveries)
        .where(deliveries.id.in_(ids))
        .values(
            status=DeliveryStatus.PENDING,
            next_attempt_at=now,
            retries_left=0,
            dead_at=None,
            lease=None,
        )
    )


async def send_test_event(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    principal: Principal,
    own: uuid.UUID | None = None,
) -> DeliveryView:
    """A ``webhook.test`` delivery to this endpoint only, due at once, sent
    like any other (retries included)."""
    endpoint = await find_endpoint(session, endpoint_id, principal=principal, own=own, lock=True)
    if endpoint.status != EndpointStatus.ENABLED:
        raise DeliveryNotReplayable("the endpoint is disabled: enable it first")
    now = datetime.now(UTC)
    delivery = new_id()
    event = new_id()
    await session.execute(
        insert(webhook_deliveries).values(
            id=delivery,
            program_id=endpoint.program_id,
            partner_id=endpoint.partner_id,
            endpoint_id=endpoint.id,
            event_id=event,
            event_type=TEST_EVENT,
            body=body_of(TEST_EVENT, now, {"endpoint_id": str(endpoint.id)}),
            status=DeliveryStatus.PENDING,
            retries_left=len(RETRY_DELAYS),
            next_attempt_at=now,
        )
    )
    await audit.record(
        session,
        principal,
        "webhook-endpoint.test-event",
        endpoint_subject(endpoint),
        {"delivery": message_id(delivery)},
    )
    found = (await session.execute(select(*_VIEW_COLUMNS).where(deliveries.id == delivery))).one()
    return _view(found)
