"""The modules of this installation, in one list. The worker schedules their
jobs and drains the outbox for the topics they declare; the CLI and the
operator API run a job once by its name (``job``, ``run_once``); API keys
carry the scopes they declare (``SCOPES``).

A new module adds its ``Module`` to ``MODULES``; nothing else here changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from api.database import sqlalchemy_url
from api.stripe.module import STRIPE
from core import constraints
from core import models as core_models
from core.modules import Job, JobContext, Module
from core.outbox import BatchSubscriber, OutboxEvent, Subscriber, drain
from finance.module import FINANCE
from ledger import Ledger
from ledger.connection import create_pool
from partners.campaigns.module import CAMPAIGNS
from partners.data_sharing.module import DATA_SHARING
from partners.leads.module import LEADS
from partners.mdf.module import MDF
from partners.module import PARTNERS
from partners.segments.module import SEGMENTS
from rewards import bought_points, lot_models, models, reinstatement, sunset, tasks

#: Events a run of the drain takes at most (one transaction each); the
#: rest wait for the next run, so that one run cannot go on for ever.
DRAIN_LIMIT = 1000


async def _expire_pending_transfers(context: JobContext) -> int:
    total = 0
    while voided := await context.ledger.expire_pending():
        total += voided
    return total


async def _settle_lots(context: JobContext) -> int:
    return await context.ledger.settle_lots()


async def _drain_outbox(context: JobContext) -> int:
    return await drain(context.sessions, SUBSCRIBERS, context.now, limit=DRAIN_LIMIT)


async def _settle_due_earnings(context: JobContext) -> int:
    return await tasks.settle_due_earnings(context.sessions, context.ledger, context.now)


async def _evaluate_tiers(context: JobContext) -> int:
    return await tasks.evaluate_all_tiers(context.sessions, context.now)


async def _expire_points(context: JobContext) -> int:
    return await tasks.expire_all_points(context.sessions, context.ledger, context.now)


async def _sunset_programs(context: JobContext) -> int:
    return await sunset.run_due_sunsets(context.sessions, context.ledger, context.now)


LEDGER = Module(
    name="ledger",
    scopes={
        "ledger:read": "Read ledgers, their totals, accounts, balances and transfers.",
        "ledger:write": "Create ledgers, accounts and transfers.",
    },
    jobs=(
        Job(
            name="expire-pending-transfers",
            summary="Void every pending transfer whose timeout has passed.",
            run=_expire_pending_transfers,
            every=5.0,
        ),
        Job(
            name="settle-lots",
            summary="Write the lots that wallets' plain movements made and consumed.",
            run=_settle_lots,
            every=5.0,
        ),
    ),
)

# The platform's own operations besides the outbox: what the operator API
# offers to run the service.
CORE = Module(
    name="core",
    scopes={
        "jobs:run": "Run any registered job once, now (POST /jobs/{name}/runs).",
        "keys:manage": "Issue, list and revoke API keys, granting at most the caller's own scopes.",
    },
    constraints=core_models.CONSTRAINTS,
    jobs=(
        Job(
            name="drain-outbox",
            summary="Hand committed outbox events to the modules that subscribe to them.",
            run=_drain_outbox,
            every=2.0,
        ),
    ),
)

REWARDS = Module(
    name="rewards",
    scopes={
        "programs:read": "Read programs.",
        "programs:write": "Open programs; define their tiers, thresholds and catalog rewards.",
        "rules:read": "Read earn rule versions and simulate them.",
        "rules:write": "Draft and publish earn rule versions.",
        "members:read": "Read members, their balances and their data exports.",
        "members:write": "Enrol and erase members; adjust their points.",
        "purchases:write": "Record purchases and returns; capture and release holds.",
        "events:write": "Record members' behaviour events.",
    },
    constraints=models.CONSTRAINTS + lot_models.CONSTRAINTS,
    topics=sunset.TOPICS | {reinstatement.REINSTATED, bought_points.PAYMENT_REFUSED},
    jobs=(
        Job(
            name="settle-due-earnings",
            summary="Post every earning whose return window has ended.",
            run=_settle_due_earnings,
            every=60.0,
        ),
        Job(
            name="evaluate-tiers",
            summary="Move members down where a closed window did not keep their tier.",
            run=_evaluate_tiers,
            every=3600.0,
        ),
        Job(
            name="expire-points",
            summary="Expire the points that are due in every program with an expiry policy.",
            run=_expire_points,
            every=3600.0,
        ),
        Job(
            name="sunset-programs",
            summary="Expire every point left in the programs whose sunset has come.",
            run=_sunset_programs,
            every=3600.0,
        ),
    ),
)

MODULES: tuple[Module, ...] = (
    LEDGER,
    CORE,
    REWARDS,
    PARTNERS,
    CAMPAIGNS,
    STRIPE,
    MDF,
    LEADS,
    DATA_SHARING,
    SEGMENTS,
    FINANCE,
)


def jobs_by_name(modules: Iterable[Module]) -> dict[str, Job]:
    found: dict[str, Job] = {}
    for module in modules:
        for each in module.jobs:
            # The name is the job's key in the schedule, the task and the CLI.
            if each.name in found:
                raise ValueError(f"two jobs named {each.name}")
            found[each.name] = each
    return found


def scopes_of(modules: Iterable[Module]) -> dict[str, str]:
    """Every scope the modules declare, with what it grants."""
    found: dict[str, str] = {}
    for module in modules:
        for scope, grants in module.scopes.items():
            # Two modules granting one scope would each widen the other's keys.
            if scope in found:
                raise ValueError(f"two modules declare the scope {scope}")
            found[scope] = grants
    return found


def subscribers(modules: Iterable[Module]) -> dict[str, Subscriber]:
    """What the drain hands each declared topic to: every module's
    subscriber of it, one after the other (a topic nobody subscribes to
    yet gets one that does nothing, so its events do not pile up)."""
    modules = tuple(modules)
    handlers: dict[str, list[Subscriber]] = {}
    for module in modules:
        for topic in module.topics:
            if topic in handlers:
                raise ValueError(f"two modules declare the topic {topic}")
            handlers[topic] = []
    for module in modules:
        for topic, subscriber in module.subscribers.items():
            if topic not in handlers:
                # Most likely a misspelt topic, whose subscriber would never run.
                raise ValueError(f"{module.name} subscribes to {topic}, which no module declares")
            handlers[topic].append(subscriber)
    return {topic: _in_turn(tuple(found)) for topic, found in handlers.items()}


def _in_turn(found: tuple[Subscriber, ...]) -> Subscriber:
    if len(found) == 1:
        return found[0]
    if all(isinstance(s, BatchSubscriber) for s in found):
        batched = tuple(s for s in found if isinstance(s, BatchSubscriber))

        async def many(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
            # A batch for all, still in one transaction.
            for subscriber in batched:
                await subscriber.many(session, events)

        return BatchSubscriber(many)

    async def each(session: AsyncSession, event: OutboxEvent) -> None:
        # One transaction for all: if one fails, all are retried, none of
        # their writes having committed.
        for subscriber in found:
            await subscriber(session, event)

    return each


JOBS = jobs_by_name(MODULES)
#: Scope -> what it grants: every scope an API key may carry.
SCOPES = scopes_of(MODULES)
SUBSCRIBERS = subscribers(MODULES)
CONSTRAINTS = constraints.by_name(c for module in MODULES for c in module.constraints)
#: What the modules keep of a member, for the member's export and erasure.
MEMBER_DATA = tuple(module.member_data for module in MODULES if module.member_data)


class UnknownJob(LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no job named {name!r}; the jobs are {', '.join(sorted(JOBS))}")
        self.name = name


def job(name: str) -> Job:
    try:
        return JOBS[name]
    except KeyError:
        raise UnknownJob(name) from None


@contextlib.asynccontextmanager
async def job_context(
    database_url: str, *, now: datetime | None = None
) -> AsyncIterator[JobContext]:
    """A context of its own for one run (the CLI's, a test's): a ledger and
    a session factory on the database, closed afterwards."""
    pool = await create_pool(database_url, min_size=1, max_size=4)
    ledger = Ledger(pool)
    engine = create_async_engine(sqlalchemy_url(database_url), pool_size=4)
    try:
        yield JobContext(
            sessions=async_sessionmaker(engine, expire_on_commit=False),
            ledger=ledger,
            now=now or datetime.now(UTC),
            subscribers=SUBSCRIBERS,
        )
    finally:
        await ledger.close()
        await pool.close()
        await engine.dispose()


async def run_once(name: str, database_url: str, *, now: datetime | None = None) -> int:
    """Run the job named ``name`` once, now; answers how many things it did.
    Raises ``UnknownJob`` for a name no module registers."""
    found = job(name)
    async with job_context(database_url, now=now) as context:
        return await found.run(context)
