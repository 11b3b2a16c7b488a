"""The transactional outbox: events are written in the same transaction as
the change they describe, and handed to their subscribers by the worker
after commit. An event of a change that rolled back was never written, so
it is never sent.

A subscriber runs in the transaction that marks the event handled: what it
writes (a webhook delivery to make, a projection) commits with the mark, or
not at all, so each event is handled once. Subscribers write to the
database only: one that calls a partner over HTTP would call again on every
retry. They must not commit nor roll back the session they are given.

Order: events are handled in the order they were written, and the events of
one *subject* (``"member:<id>"``, ``"partner:<id>"``) one after the other:
while an event of a subject is unhandled (failing, backing off, or being
handled by another worker), the later events of that subject wait; other
subjects go on. For a subject's events to be written in the order of its
changes, emit them under the subject's lock (as a use case changes a member
under ``lock_member``): positions follow the inserts, not the commits.

A failing subscriber is retried with a growing delay (up to ``MAX_BACKOFF``),
with its error kept on the event; its subject waits for it, so a poison
event shows as one stuck subject with its error, never as a lost event.

A subscriber that can take many events at once (``BatchSubscriber``, as
the webhooks' fan-out) is handed whole batches of its topics' due events,
in one transaction: a subject's events in order, and only a run of them
with no earlier unhandled event outside the batch. Should a batch fail,
its events go the one-by-one way, so that a poison event is still isolated
on its subject.

Only topics the worker knows are taken: an event of a topic missing from
``subscribers`` (emitted by a newer release, or misspelt) waits for a
worker that knows it rather than being dropped. A topic that needs nothing
done is declared with a subscriber that does nothing (``api.modules`` does
this for every topic a module declares).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    Row,
    String,
    Table,
    Text,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy import Sequence as SqlSequence
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ledger import new_id

log = logging.getLogger(__name__)

_PENDING = text("handled_at IS NULL")

outbox_events = Table(
    "outbox_events",
    # The domains' one metadata, so that Alembic sees one schema.
    UUIDv7AuditBase.metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    # BIGSERIAL's sequence rather than an identity column: Alembic 1.20's
    # comparison of server defaults through a function of ours (as
    # tests/test_schema_drift.py does it) fails on identity columns.
    Column("position", BigInteger, SqlSequence("outbox_events_position_seq"), nullable=False),
    Column("topic", String(100), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("handled_at", DateTime(timezone=True)),
    # Tries so far, the successful one included.
    Column("attempts", Integer, nullable=False, server_default="0"),
    # NULL until a try fails: a new event is due at once, whatever the
    # worker's clock says (only the drain's ``now`` is ever compared here).
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_error", Text),
    # The drain walks the unhandled events in order, and looks for an
    # earlier unhandled event of each one's subject; handled events, the
    # bulk of the table, are in neither index.
    Index("ix_outbox_events_pending", "position", postgresql_where=_PENDING),
    Index("ix_outbox_events_subject_pending", "subject", "position", postgresql_where=_PENDING),
)


class OutboxEvent(msgspec.Struct, kw_only=True, frozen=True):
    id: uuid.UUID
    #: Order of writing; increasing, with gaps.
    position: int
    topic: str
    subject: str
    payload: dict[str, Any]
    created_at: datetime


Subscriber = Callable[[AsyncSession, OutboxEvent], Awaitable[None]]
HandleMany = Callable[[AsyncSession, Sequence[OutboxEvent]], Awaitable[None]]


class BatchSubscriber:
    """A subscriber that handles a batch of events in one call (one
    statement for all, say): ``drain`` hands it up to ``BATCH_SIZE`` due
    events of its topics at a time, in order; a single event is a batch of
    one."""

    def __init__(self, many: HandleMany) -> None:
        self.many = many

    async def __call__(self, session: AsyncSession, event: OutboxEvent) -> None:
        await self.many(session, (event,))


#: Events handed to a batch subscriber at once.
BATCH_SIZE = 500

#: Longest wait between two tries of a failing subscriber.
MAX_BACKOFF = timedelta(hours=1)

#: Characters of a failure kept on its event.
_ERROR_LENGTH = 2000


async def emit(
    session: AsyncSession, topic: str, subject: str, payload: msgspec.Struct | Mapping[str, Any]
) -> uuid.UUID:
    """Write an event in the session's transaction (sent only if it
    commits); answers its id, which subscribers see."""
    document = msgspec.to_builtins(payload)
    if not isinstance(document, dict):
        raise TypeError(f"an event's payload is a JSON object, not {type(payload).__name__}")
    event_id = new_id()
    await session.execute(
        insert(outbox_events).values(id=event_id, topic=topic, subject=subject, payload=document)
    )
    return event_id


async def drain(
    sessions: async_sessionmaker[AsyncSession],
    subscribers: Mapping[str, Subscriber],
    now: datetime,
    *,
    limit: int = 100,
) -> int:
    """Hand due events of the given topics to their subscriber, one
    transaction per event (a batch subscriber's: per batch), taking at most
    ``limit`` events; answers how many were handled. Several workers may
    drain at once: each takes events the others have not locked.

    A drain ends once it has caught up (a batch short of full, no due event
    left) rather than follow events still being committed: a caller that
    drains between other work (the webhooks' job) gets its turn back."""
    if not subscribers:
        return 0
    handled, failed = await _drain_batches(sessions, subscribers, now, limit)
    # A batch subscriber's events go one by one only when their batch failed.
    one_by_one = [
        topic
        for topic, subscriber in subscribers.items()
        if not isinstance(subscriber, BatchSubscriber) or topic in failed
    ]
    if not one_by_one:
        return handled
    for _ in range(limit - handled):
        row: Row[Any] | None = None
        try:
            async with sessions() as session, session.begin():
                row = await _next_due(session, one_by_one, now)
                if row is None:
                    return handled
                event = OutboxEvent(
                    id=row.id,
                    position=row.position,
                    topic=row.topic,
                    subject=row.subject,
                    payload=row.payload,
                    created_at=row.created_at,
                )
                try:
                    # The savepoint undoes what a failing subscriber wrote,
                    # while the event stays locked until its failure is noted.
                    async with session.begin_nested():
                        await subscribers[event.topic](session, event)
                except Exception as failure:
                    await _postpone(session, row, now, failure)
                    continue
                await session.execute(
                    update(outbox_events)
                    .where(outbox_events.c.id == event.id)
                    .values(handled_at=now, attempts=outbox_events.c.attempts + 1)
                )
            handled += 1
        except Exception as failure:
            if row is None:
                raise
            # The subscriber's work failed where its savepoint could not
            # catch it (a deferred constraint at commit, a transaction it
            # broke): without a note the event would come first in every
            # drain and fail again, holding up all the others. If the
            # database is gone, this raises too.
            async with sessions() as session, session.begin():
                await _postpone(session, row, now, failure)
    return handled


async def _drain_batches(
    sessions: async_sessionmaker[AsyncSession],
    subscribers: Mapping[str, Subscriber],
    now: datetime,
    limit: int,
) -> tuple[int, set[str]]:
    """Hand the batch subscribers' due events over, a batch per
    transaction, up to ``limit``, until a batch short of full; stops at a
    batch that fails (its events are left to the one-by-one drain).
    Answers how many were handled, and the topics of the failed batches."""
    groups: dict[int, tuple[BatchSubscriber, list[str]]] = {}
    for topic, subscriber in subscribers.items():
        if isinstance(subscriber, BatchSubscriber):
            groups.setdefault(id(subscriber), (subscriber, []))[1].append(topic)
    handled = 0
    failed: set[str] = set()
    for subscriber, topics in groups.values():
        full = True
        while full and handled < limit:
            try:
                async with sessions() as session, session.begin():
                    size = min(BATCH_SIZE, limit - handled)
                    batch = await _next_batch(session, topics, now, size)
                    if not batch:
                        break
                    full = len(batch) == size
                    await subscriber.many(session, batch)
                    await session.execute(
                        update(outbox_events)
                        .where(outbox_events.c.id.in_([e.id for e in batch]))
                        .values(handled_at=now, attempts=outbox_events.c.attempts + 1)
                    )
            except Exception:
                log.warning(
                    "outbox: a batch of %s failed; its events go one by one",
                    ", ".join(sorted(topics)),
                    exc_info=True,
                )
                failed.update(topics)
                break
            handled += len(batch)
    return handled, failed


async def _next_batch(
    session: AsyncSession, topics: list[str], now: datetime, size: int
) -> list[OutboxEvent]:
    """Due events of ``topics``, locked, in order, keeping of each subject
    only those before any unhandled event of it outside the batch (one
    another drain holds, one backing off, one of another topic)."""
    events = outbox_events
    rows = (
        await session.execute(
            select(events)
            .where(
                events.c.handled_at.is_(None),
                events.c.topic.in_(topics),
                or_(events.c.next_attempt_at.is_(None), events.c.next_attempt_at <= now),
            )
            .order_by(events.c.position)
            .limit(size)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        return []
    blocked_from: dict[str, int] = {
        subject: position
        for subject, position in (
            await session.execute(
                select(events.c.subject, func.min(events.c.position))
                .where(
                    events.c.handled_at.is_(None),
                    events.c.subject.in_({row.subject for row in rows}),
                    events.c.id.not_in([row.id for row in rows]),
                )
                .group_by(events.c.subject)
            )
        ).all()
    }
    return [
        OutboxEvent(
            id=row.id,
            position=row.position,
            topic=row.topic,
            subject=row.subject,
            payload=row.payload,
            created_at=row.created_at,
        )
        for row in rows
        if row.position < blocked_from.get(row.subject, row.position + 1)
    ]


async def _next_due(session: AsyncSession, topics: list[str], now: datetime) -> Row[Any] | None:
    """The first due event whose subject has no earlier unhandled event,
    locked; events other drains hold are skipped."""
    events = outbox_events
    earlier = outbox_events.alias("earlier")
    query = (
        select(events)
        .where(
            events.c.handled_at.is_(None),
            events.c.topic.in_(topics),
            or_(events.c.next_attempt_at.is_(None), events.c.next_attempt_at <= now),
            ~exists().where(
                earlier.c.subject == events.c.subject,
                earlier.c.position < events.c.position,
                earlier.c.handled_at.is_(None),
            ),
        )
        .order_by(events.c.position)
        .limit(1)
        .with_for_update(skip_locked=True, of=events)
    )
    return (await session.execute(query)).first()


async def _postpone(
    session: AsyncSession, row: Row[Any], now: datetime, failure: Exception
) -> None:
    log.warning(
        "outbox: the subscriber of %s failed on event %s (try %d)",
        row.topic,
        row.id,
        row.attempts + 1,
        exc_info=failure,
    )
    delay = min(MAX_BACKOFF, timedelta(seconds=2 ** min(row.attempts, 12)))
    # PostgreSQL's text cannot hold NUL, which an error may quote.
    error = f"{type(failure).__name__}: {failure}".replace("\x00", "\\x00")[:_ERROR_LENGTH]
    await session.execute(
        update(outbox_events)
        # Another drain may have taken and handled it since this one let go.
        .where(outbox_events.c.id == row.id, outbox_events.c.handled_at.is_(None))
        .values(
            attempts=outbox_events.c.attempts + 1,
            next_attempt_at=now + delay,
            last_error=error,
        )
    )
