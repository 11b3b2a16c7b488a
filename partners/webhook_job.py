"""The ``deliver-webhooks`` job: for a bounded time, hand the partner
events of the outbox (and the program events for the operators' own
endpoints, ``partners.program_webhooks``) to the fan-out and send what is due, so that a
delivery leaves well within a second of its change's commit.

A run is three loops side by side, each on a connection of its own, so
that none waits for another's database work: the fan-out (outbox events
to deliveries, a batch per transaction, at once again while there are
more, else every ``POLL_SECONDS``), the sending (a claim as soon as the
fan-out has made deliveries or a call has freed its slot, and every
``POLL_SECONDS`` for retries and deliveries made elsewhere), and the
recording of outcomes (every ``SendingOptions.record_every``). A drain
ends once it has caught up (``core.outbox.drain``), so a steady stream of
events never holds the fan-out in one drain.

The worker schedules it every second; at most ``SENDERS_MAX`` runs work at
once in the whole installation (a PostgreSQL advisory lock per place), so
the runs the schedule starts while others work end at once, and none queue
up behind a slow endpoint. A run stops claiming after ``RUN_SECONDS``, or
after ``IDLE_SECONDS`` with nothing to do (the schedule starts the next).
While a call of before then still hangs (a slow endpoint, up to the
attempt's timeout) it winds down: it goes on sending to the other
endpoints, not to that one, so that the end of a run never holds them up
behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.modules import JobContext
from core.outbox import Subscriber, drain
from partners.data_sharing.disclosures import drop_out_of_force
from partners.events import TOPICS
from partners.program_webhook_events import OPERATOR_TOPICS
from partners.webhook_sending import Sender, SendingOptions, http_clients
from partners.webhook_targets import current_policy

RUN_SECONDS = 20.0
IDLE_SECONDS = 5.0
POLL_SECONDS = 0.05
GATHER_SECONDS = 0.01
SENDERS_MAX = 2
#: How often a run cancels the waiting deliveries of members' data whose
#: data-sharing agreement is no longer in force (expired meanwhile; a
#: revocation cancels its own at once).
DROP_SECONDS = 1.0
#: Outbox events a run hands to the fan-out at most per drain.
DRAIN_LIMIT = 2000
#: The advisory locks' first key: "WH".
_LOCKS = 0x5748

#: This process's sending options, set at its start from the settings
#: (``configure``): the job's context carries no settings.
_options = SendingOptions()


def configure(options: SendingOptions) -> None:
    global _options
    _options = options


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
    # Every subscriber of the webhooks' topics, not only the fan-out: an
    # event is handled once, by all of them.
    return {topic: s for topic, s in subscribers.items() if topic in TOPICS | OPERATOR_TOPICS}


async def _run(
    context: JobContext,
    subscribers: Mapping[str, Subscriber],
    options: SendingOptions | None = None,
) -> int:
    sessions: async_sessionmaker[AsyncSession] = context.sessions
    sender = Sender(
        sessions,
        http_clients(),
        options=options or _options,
        policy=current_policy(),
        started=context.now,
    )
    run = _Run(sessions, subscribers, sender)
    try:
        async with asyncio.TaskGroup() as loops:
            loops.create_task(run.fan_out())
            loops.create_task(run.record())
            try:
                await run.send()
            finally:
                run.stopped.set()
    finally:
        await sender.finish()
    return sender.sent


class _Run:
    """What a run's three loops share: the sender, when work was last seen,
    and two signals (deliveries made; the run over)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        subscribers: Mapping[str, Subscriber],
        sender: Sender,
    ) -> None:
        self.sessions = sessions
        self.subscribers = subscribers
        self.sender = sender
        self.made = asyncio.Event()
        self.stopped = asyncio.Event()
        self.started = self.busy_at = time.monotonic()
        #: Whether the fan-out is in a drain (work, however long it takes).
        self.draining = False
        #: When the run last dropped data deliveries out of force (never yet).
        self.dropped_at = float("-inf")

    def idle(self) -> bool:
        return not self.draining and time.monotonic() - self.busy_at > IDLE_SECONDS

    async def _rest(self, seconds: float) -> None:
        """``seconds``, or less if the run stops meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopped.wait(), seconds)

    async def fan_out(self) -> None:
        while not self.stopped.is_set():
            self.draining = True
            try:
                handled = await drain(
                    self.sessions, self.subscribers, self.sender.now(), limit=DRAIN_LIMIT
                )
            finally:
                self.draining = False
            if handled:
                self.busy_at = time.monotonic()
                self.made.set()
            else:
                await self._rest(POLL_SECONDS)

    async def record(self) -> None:
        while not self.stopped.is_set():
            await self.sender.record(force=True)
            await self._rest(self.sender.options.record_every)

    async def send(self) -> None:
        sender = self.sender
        while time.monotonic() - self.started < RUN_SECONDS:
            self.made.clear()
            await self._drop_out_of_force()
            claimed = await sender.claim()
            if claimed or sender.in_flight:
                self.busy_at = time.monotonic()
            elif self.idle():
                break
            if claimed < sender.options.in_flight_max:
                await self._pause()
        # Calls started before now may hang for up to their timeout: the
        # other endpoints are served meanwhile, the hanging ones not.
        since = time.monotonic()
        while sender.lingering(since) and time.monotonic() - since < sender.options.timeout:
            self.made.clear()
            await sender.claim(winding_down=since)
            await self._pause()

    async def _drop_out_of_force(self) -> None:
        if time.monotonic() - self.dropped_at < DROP_SECONDS:
            return
        self.dropped_at = time.monotonic()
        async with self.sessions() as session, session.begin():
            await drop_out_of_force(session, self.sender.now())

    async def _pause(self) -> None:
        # A short pause gathers the slots freed meanwhile into one claim;
        # then until a call ends, the fan-out makes deliveries, or the poll.
        await asyncio.sleep(GATHER_SECONDS)
        await self.sender.wait(POLL_SECONDS - GATHER_SECONDS, wake=self.made)
