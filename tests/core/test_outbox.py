"""The outbox against PostgreSQL: what commits is handed over once, in order
per subject; what rolls back never is; a failing subscriber leaves nothing
behind and is tried again after its delay.

Each test drains topics of its own (``_topic``): the database is shared by
the whole run, and the drain takes only the topics it is given.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from sqlalchemy import Row, event, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session

from core.outbox import OutboxEvent, emit, outbox_events
from core.outbox import drain as drain_outbox

T = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture(scope="module")
async def effects(engine: AsyncEngine) -> AsyncIterator[None]:
    """A table for what subscribers write. Its deferred unique key lets a
    subscriber's write fail only at COMMIT, after the drain's mark."""
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "CREATE TABLE outbox_test_effects (event_id UUID NOT NULL, note TEXT NOT NULL,"
                " UNIQUE (note) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    yield
    async with engine.begin() as connection:
        await connection.execute(text("DROP TABLE outbox_test_effects"))


@pytest.fixture
def sessions(engine: AsyncEngine, effects: None) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


def _topic() -> str:
    return f"test.{uuid.uuid4().hex[:12]}"


def _subject() -> str:
    return f"member:{uuid.uuid4()}"


async def _emit_committed(
    sessions: Sessions, topic: str, subject: str, **payload: Any
) -> uuid.UUID:
    async with sessions() as session, session.begin():
        return await emit(session, topic, subject, payload)


async def _write_effect(session: AsyncSession, event: OutboxEvent, note: str | None = None) -> None:
    await session.execute(
        text("INSERT INTO outbox_test_effects (event_id, note) VALUES (:event, :note)"),
        {"event": event.id, "note": note or str(event.id)},
    )


async def _effects(sessions: Sessions, *events: uuid.UUID) -> list[uuid.UUID]:
    async with sessions() as session:
        found = await session.execute(
            text("SELECT event_id FROM outbox_test_effects WHERE event_id = ANY(:events)"),
            {"events": list(events)},
        )
        return [r.event_id for r in found]


async def _row(sessions: Sessions, event: uuid.UUID) -> Row[Any]:
    async with sessions() as session:
        return (
            await session.execute(select(outbox_events).where(outbox_events.c.id == event))
        ).one()


async def test_an_event_of_a_change_that_rolled_back_is_never_drained(sessions: Sessions) -> None:
    topic, subject = _topic(), _subject()
    async with sessions() as session:
        await emit(session, topic, subject, {"n": 1})
        await session.rollback()
    kept = await _emit_committed(sessions, topic, subject, n=2)
    seen: list[OutboxEvent] = []

    async def record(session: AsyncSession, event: OutboxEvent) -> None:
        seen.append(event)

    assert await drain_outbox(sessions, {topic: record}, T) == 1
    assert [(e.id, e.payload) for e in seen] == [(kept, {"n": 2})]
    assert await drain_outbox(sessions, {topic: record}, T) == 0
    assert len(seen) == 1


async def test_concurrent_drains_hand_each_event_over_once_one_subject_at_a_time(
    sessions: Sessions,
) -> None:
    topic = _topic()
    subjects = [_subject() for _ in range(4)]
    # A subject's events side by side: the next event free is often the
    # same subject's as the one another drain holds.
    emitted = [await _emit_committed(sessions, topic, subjects[i // 6], n=i) for i in range(24)]
    seen: list[OutboxEvent] = []
    in_hand: set[str] = set()
    overlaps: list[str] = []

    async def slow(session: AsyncSession, event: OutboxEvent) -> None:
        if event.subject in in_hand:
            overlaps.append(event.subject)
        in_hand.add(event.subject)
        seen.append(event)
        await _write_effect(session, event)
        await asyncio.sleep(0.005)  # so that the drains interleave
        in_hand.discard(event.subject)

    subscribers = {topic: slow}
    counts = await asyncio.gather(*(drain_outbox(sessions, subscribers, T) for _ in range(2)))
    assert sum(counts) == 24
    assert all(counts), "both drains took part"
    assert sorted(e.id for e in seen) == sorted(emitted)
    assert sorted(await _effects(sessions, *emitted)) == sorted(emitted)
    assert overlaps == []
    for subject in subjects:
        positions = [e.position for e in seen if e.subject == subject]
        assert positions == sorted(positions)
    assert await drain_outbox(sessions, subscribers, T) == 0


async def test_a_failing_subscriber_is_undone_and_retried_after_its_delay(
    sessions: Sessions,
) -> None:
    topic = _topic()
    event = await _emit_committed(sessions, topic, _subject(), n=1)
    calls: list[datetime] = []
    failing = True

    async def flaky(session: AsyncSession, outboxed: OutboxEvent) -> None:
        calls.append(T)
        await _write_effect(session, outboxed)
        if failing:
            raise RuntimeError("partner store unavailable")

    subscribers = {topic: flaky}
    assert await drain_outbox(sessions, subscribers, T) == 0
    row = await _row(sessions, event)
    assert (row.handled_at, row.attempts, row.next_attempt_at) == (
        None,
        1,
        T + timedelta(seconds=1),
    )
    assert row.last_error == "RuntimeError: partner store unavailable"
    assert await _effects(sessions, event) == []

    # Not due yet; then due, failing again, and waiting twice as long.
    assert await drain_outbox(sessions, subscribers, T + timedelta(milliseconds=999)) == 0
    assert len(calls) == 1
    assert await drain_outbox(sessions, subscribers, T + timedelta(seconds=1)) == 0
    row = await _row(sessions, event)
    assert (row.attempts, row.next_attempt_at) == (2, T + timedelta(seconds=3))
    assert await drain_outbox(sessions, subscribers, T + timedelta(seconds=2)) == 0
    assert len(calls) == 2

    failing = False
    assert await drain_outbox(sessions, subscribers, T + timedelta(seconds=3)) == 1
    row = await _row(sessions, event)
    assert (row.handled_at, row.attempts) == (T + timedelta(seconds=3), 3)
    assert await _effects(sessions, event) == [event]
    assert await drain_outbox(sessions, subscribers, T + timedelta(days=1)) == 0
    assert len(calls) == 3


class _MarksFail(Session):
    """Sessions in which marking an event handled fails, as when the
    database goes away between the subscriber and the mark."""


@event.listens_for(_MarksFail, "do_orm_execute")
def _refuse_marks(state: ORMExecuteState) -> None:
    if str(state.statement).startswith("UPDATE outbox_events SET handled_at"):
        raise RuntimeError("lost the database at the mark")


async def test_a_subscribers_writes_commit_with_the_mark_or_not_at_all(
    sessions: Sessions, engine: AsyncEngine
) -> None:
    topic = _topic()
    event = await _emit_committed(sessions, topic, _subject(), n=1)

    async def write(session: AsyncSession, outboxed: OutboxEvent) -> None:
        await _write_effect(session, outboxed)

    assert await drain_outbox(sessions, {topic: write}, T) == 1
    assert await _effects(sessions, event) == [event]
    assert (await _row(sessions, event)).handled_at == T

    # The mark fails: what the subscriber wrote goes with it.
    unmarked = await _emit_committed(sessions, topic, _subject(), n=2)
    marks_fail = async_sessionmaker(engine, expire_on_commit=False, sync_session_class=_MarksFail)
    assert await drain_outbox(marks_fail, {topic: write}, T) == 0
    row = await _row(sessions, unmarked)
    assert (row.handled_at, row.attempts) == (None, 1)
    assert row.last_error == "RuntimeError: lost the database at the mark"
    assert await _effects(sessions, unmarked) == []

    # A write that fails only at COMMIT (a deferred key): the mark goes with
    # it, the failure is noted, and the drain goes on to the next event.
    doomed = await _emit_committed(sessions, topic, _subject(), n=2)
    after = await _emit_committed(sessions, topic, _subject(), n=3)

    async def doomed_writes_twice(session: AsyncSession, outboxed: OutboxEvent) -> None:
        await _write_effect(session, outboxed)
        if outboxed.id == doomed:
            await _write_effect(session, outboxed)

    # ``unmarked`` is due again, and handled this time.
    later = T + timedelta(seconds=1)
    assert await drain_outbox(sessions, {topic: doomed_writes_twice}, later) == 2
    row = await _row(sessions, doomed)
    assert (row.handled_at, row.attempts) == (None, 1)
    assert row.next_attempt_at == later + timedelta(seconds=1)
    assert "outbox_test_effects_note_key" in row.last_error
    assert sorted(await _effects(sessions, unmarked, doomed, after)) == sorted([unmarked, after])


async def test_events_are_handled_in_the_order_they_were_written_per_subject(
    sessions: Sessions,
) -> None:
    topic, a, b = _topic(), _subject(), _subject()
    written = [await _emit_committed(sessions, topic, s, n=i) for i, s in enumerate([a, b, a, b])]
    handled: list[uuid.UUID] = []

    async def record(session: AsyncSession, event: OutboxEvent) -> None:
        handled.append(event.id)

    assert await drain_outbox(sessions, {topic: record}, T) == 4
    assert handled == written

    # While a's first event fails, a's next one waits; b goes on.
    a1 = await _emit_committed(sessions, topic, a, n=10)
    a2 = await _emit_committed(sessions, topic, a, n=11)
    b1 = await _emit_committed(sessions, topic, b, n=12)
    handled.clear()
    failing = {a1}

    async def fails_once(session: AsyncSession, event: OutboxEvent) -> None:
        if event.id in failing:
            failing.discard(event.id)
            raise RuntimeError("not yet")
        handled.append(event.id)

    assert await drain_outbox(sessions, {topic: fails_once}, T) == 1
    assert handled == [b1]
    assert await drain_outbox(sessions, {topic: fails_once}, T + timedelta(seconds=1)) == 2
    assert handled == [b1, a1, a2]


async def test_a_new_event_is_due_whatever_the_workers_clock_says(sessions: Sessions) -> None:
    """Only the drain's ``now`` is compared: a worker whose clock is behind
    the database's still hands new events over."""
    topic = _topic()
    event = await _emit_committed(sessions, topic, _subject(), n=1)
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)

    async def nothing(session: AsyncSession, outboxed: OutboxEvent) -> None:
        pass

    assert await drain_outbox(sessions, {topic: nothing}, an_hour_ago) == 1
    assert (await _row(sessions, event)).handled_at == an_hour_ago


async def test_an_event_of_a_topic_the_worker_does_not_know_waits_for_one_that_does(
    sessions: Sessions,
) -> None:
    known, unknown = _topic(), _topic()
    waiting = await _emit_committed(sessions, unknown, _subject(), n=1)
    await _emit_committed(sessions, known, _subject(), n=2)
    handled: list[str] = []

    async def record(session: AsyncSession, event: OutboxEvent) -> None:
        handled.append(event.topic)

    assert await drain_outbox(sessions, {known: record}, T) == 1
    row = await _row(sessions, waiting)
    assert (row.handled_at, row.attempts) == (None, 0)
    assert await drain_outbox(sessions, {known: record, unknown: record}, T) == 1
    assert handled == [known, unknown]


async def test_a_failure_whose_message_quotes_nul_is_noted_and_the_drain_goes_on(
    sessions: Sessions,
) -> None:
    topic = _topic()
    poison = await _emit_committed(sessions, topic, _subject(), n=1)
    await _emit_committed(sessions, topic, _subject(), n=2)

    async def choke(session: AsyncSession, event: OutboxEvent) -> None:
        if event.id == poison:
            raise ValueError("bad byte \x00 in the partner's name")

    assert await drain_outbox(sessions, {topic: choke}, T) == 1
    row = await _row(sessions, poison)
    assert (row.handled_at, row.attempts) == (None, 1)
    assert row.last_error == "ValueError: bad byte \\x00 in the partner's name"


class _Earned(msgspec.Struct):
    points: int
    at: datetime


async def test_a_payload_is_a_json_object(session: AsyncSession, sessions: Sessions) -> None:
    topic = _topic()
    event = await emit(session, topic, _subject(), _Earned(points=5, at=T))
    await session.commit()
    assert (await _row(sessions, event)).payload == {"points": 5, "at": "2031-03-01T12:00:00Z"}
    with pytest.raises(TypeError, match="JSON object"):
        await emit(session, topic, _subject(), [1, 2])  # type: ignore[arg-type]
    await session.rollback()
