"""The outbox's batch path (``BatchSubscriber``): many events per call and
transaction, with the guarantees of the one-by-one drain kept: a subject's
events in order, none taken past an unhandled earlier one outside the batch
(held by another drain, or backing off), and a poison event isolated on its
subject when its batch fails."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.outbox import BatchSubscriber, OutboxEvent, drain, emit, outbox_events

Sessions = async_sessionmaker[AsyncSession]
NOW = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


def _sessions(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


async def _emit(sessions: Sessions, topic: str, subject: str, n: int) -> uuid.UUID:
    async with sessions() as session, session.begin():
        return await emit(session, topic, subject, {"n": n})


async def _handled(sessions: Sessions, *ids: uuid.UUID) -> list[bool]:
    async with sessions() as session:
        rows = (
            await session.execute(
                select(outbox_events.c.id, outbox_events.c.handled_at).where(
                    outbox_events.c.id.in_(ids)
                )
            )
        ).all()
    found = {row.id: row.handled_at is not None for row in rows}
    return [found[i] for i in ids]


async def test_a_batch_subscriber_gets_many_events_at_once_in_order(engine: AsyncEngine) -> None:
    sessions = _sessions(engine)
    topic, a, b = f"test.{uuid.uuid4().hex[:8]}", f"member:{uuid.uuid4()}", f"member:{uuid.uuid4()}"
    ids = [await _emit(sessions, topic, subject, n) for n, subject in enumerate([a, b, a, b, a])]
    calls: list[list[int]] = []

    async def many(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        calls.append([e.payload["n"] for e in events])

    assert await drain(sessions, {topic: BatchSubscriber(many)}, NOW) == 5

    assert calls == [[0, 1, 2, 3, 4]]
    assert await _handled(sessions, *ids) == [True] * 5


async def test_a_subject_waits_behind_an_earlier_event_another_drain_holds(
    engine: AsyncEngine,
) -> None:
    sessions = _sessions(engine)
    topic, a, b = f"test.{uuid.uuid4().hex[:8]}", f"member:{uuid.uuid4()}", f"member:{uuid.uuid4()}"
    first = await _emit(sessions, topic, a, 0)
    later_a = await _emit(sessions, topic, a, 1)
    other_b = await _emit(sessions, topic, b, 2)
    seen: list[int] = []

    async def many(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        seen.extend(e.payload["n"] for e in events)

    async with sessions() as holder, holder.begin():
        # Another drain is handling A's first event.
        await holder.execute(
            select(outbox_events.c.id).where(outbox_events.c.id == first).with_for_update()
        )
        await drain(sessions, {topic: BatchSubscriber(many)}, NOW)

    assert seen == [2]
    assert await _handled(sessions, first, later_a, other_b) == [False, False, True]
    await drain(sessions, {topic: BatchSubscriber(many)}, NOW)
    assert seen == [2, 0, 1]


async def test_a_poison_event_fails_its_batch_and_is_isolated_one_by_one(
    engine: AsyncEngine,
) -> None:
    sessions = _sessions(engine)
    topic, a, b = f"test.{uuid.uuid4().hex[:8]}", f"member:{uuid.uuid4()}", f"member:{uuid.uuid4()}"
    poison = await _emit(sessions, topic, a, 0)
    after_poison = await _emit(sessions, topic, a, 1)
    fine = await _emit(sessions, topic, b, 2)
    batches: list[list[int]] = []

    async def many(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        batches.append([e.payload["n"] for e in events])
        if any(e.payload["n"] == 0 for e in events):
            raise RuntimeError("poison")

    handled = await drain(sessions, {topic: BatchSubscriber(many)}, NOW)

    assert handled == 1
    assert await _handled(sessions, poison, after_poison, fine) == [False, False, True]
    async with sessions() as session:
        error = await session.scalar(
            select(outbox_events.c.last_error).where(outbox_events.c.id == poison)
        )
    assert error == "RuntimeError: poison"
    # The batch, then each event alone: the poison, then B's (A's second waits).
    assert batches == [[0, 1, 2], [0], [2]]
