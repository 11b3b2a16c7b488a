"""The ``deliver-webhooks`` job: for a bounded time, hand the partner
events of the outbox to the fan-out and send what is due, polling often,
so that a delivery leaves well within a second of its change's commit.

The worker schedules it every second; at most ``SENDERS_MAX`` runs work at
once in the whole installation (a PostgreSQL advisory lock per place), so
the runs the schedule starts while others work end at once, and none queue
up behind a slow endpoint. A run ends after ``RUN_SECONDS``, or after
``IDLE_SECONDS`` with nothing to do (the schedule starts the next).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.modules import JobContext
from core.outbox import Subscriber, drain
from partners.events import TOPICS
from partners.webhook_sending import Sender, SendingOptions, http_clients
from partners.webhook_targets import current_policy

RUN_SECONDS = 20.0
IDLE_SECONDS = 5.0
POLL_SECONDS = 0.05
GATHER_SECONDS = 0.01
SENDERS_MAX = 2
#: Outbox events a run hands to the fan-out at most per poll.
DRAIN_LIMIT = 2000
OPTIONS = SendingOptions()
#: The advisory locks' first key: "WH".
_LOCKS = 0x5748


async def deliver_webhooks(context: JobContext) -> int:
    """Answers how many attempts were made."""
    async with context.sessions() as holder, holder.begin():
        if not await _take_a_place(holder):
            return 0
        # The place is held until this transaction ends, with the run.
        return await _run(context, _partner_subscribers(context.subscribers))


async def _take_a_place(session: AsyncSession) -> bool:
    for place in range(SENDERS_MAX):
        if await session.scalar(
            text("SELECT pg_try_advisory_xact_lock(:locks, :place)"),
            {"locks": _LOCKS, "place": place},
        ):
            return True
    return False


def _partner_subscribers(subscribers: Mapping[str, Subscriber]) -> dict[str, Subscriber]:
    # Every subscriber of the partner topics, not only the fan-out: an
    # event is handled once, by all of them.
    return {topic: s for topic, s in subscribers.items() if topic in TOPICS}


async def _run(
    context: JobContext,
    subscribers: Mapping[str, Subscriber],
    options: SendingOptions = OPTIONS,
) -> int:
    sessions: async_sessionmaker[AsyncSession] = context.sessions
    sender = Sender(
        sessions, http_clients(), options=options, policy=current_policy(), started=context.now
    )
    start = idle_since = time.monotonic()
    drained_at = start - POLL_SECONDS
    worked = 0
    try:
        while time.monotonic() - start < RUN_SECONDS:
            if time.monotonic() - drained_at >= POLL_SECONDS or worked:
                worked = await drain(sessions, subscribers, sender.now(), limit=DRAIN_LIMIT)
                drained_at = time.monotonic()
            claimed = await sender.claim()
            await sender.record()
            if worked or claimed or sender.in_flight:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > IDLE_SECONDS:
                break
            if claimed < options.in_flight_max:
                # A short pause gathers the slots freed meanwhile into one
                # claim; then until a call ends, or the next poll.
                await asyncio.sleep(GATHER_SECONDS)
                await sender.wait(POLL_SECONDS - GATHER_SECONDS)
    finally:
        await sender.finish()
    return sender.sent
