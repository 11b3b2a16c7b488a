"""What each domain module brings to the platform: its scopes, its jobs, the
outbox topics it emits and subscribes to, and the meaning of its
constraints. The app, the worker and the CLI iterate the modules
(``api.modules.MODULES``) instead of keeping lists of their own.

Routes are HTTP and stay in ``api``; errors need no registration, since each
carries its kind (``core.errors``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.constraints import Constraint
from core.member_data import MemberData
from core.outbox import Subscriber
from ledger import Ledger


@dataclass(frozen=True, kw_only=True)
class JobContext:
    """What a job runs with: it opens its own sessions (a job commits its
    work in units of its own) and reads the clock only from ``now``."""

    sessions: async_sessionmaker[AsyncSession]
    ledger: Ledger
    now: datetime
    #: The installation's outbox subscribers by topic, for a job that drains
    #: the outbox for some topics itself (the webhooks' sender, which cannot
    #: wait for the next drain).
    subscribers: Mapping[str, Subscriber] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Job:
    """A unit of background work, safe to run twice or from several workers
    at once: every run re-reads what is due. ``run`` answers how many
    things it did."""

    name: str
    summary: str
    run: Callable[[JobContext], Awaitable[int]]
    #: Seconds between scheduled runs.
    every: float


@dataclass(frozen=True, kw_only=True)
class Module:
    name: str
    #: Scope -> what it grants, for the operator's API keys and partner clients.
    scopes: Mapping[str, str] = field(default_factory=dict)
    jobs: tuple[Job, ...] = ()
    #: The outbox topics this module emits: the worker drains only declared
    #: topics (an event of an unknown one waits for a release that knows it).
    topics: frozenset[str] = frozenset()
    #: Topic (of any module) -> what this module does with its events, in
    #: the transaction that marks each one handled (``core.outbox``).
    subscribers: Mapping[str, Subscriber] = field(default_factory=dict)
    #: What a violation of each of this module's unique constraints means
    #: (``core.constraints``).
    constraints: tuple[Constraint, ...] = ()
    #: What the module keeps of a member, for their export and erasure.
    member_data: MemberData | None = None
