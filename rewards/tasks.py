"""Background jobs of the rewards domain: plain async functions that the
worker (``api.worker``) schedules. Each commits its own unit of work and is
safe to run twice or from several workers at once."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.models import Program
from ledger import Ledger
from rewards.expiry import expire_points
from rewards.settlement import settle_matured_earnings
from rewards.tiers import evaluate_tiers


async def settle_due_earnings(
    sessions: async_sessionmaker[AsyncSession],
    ledger: Ledger,
    now: datetime | None = None,
    batch: int = 1000,
) -> int:
    """Post every earning whose return window has ended, a batch per commit."""
    now = now or datetime.now(UTC)
    total = 0
    while True:
        async with sessions() as session, session.begin():
            settled = await settle_matured_earnings(session, ledger, now, limit=batch)
        total += settled
        if settled < batch:
            return total


async def evaluate_all_tiers(
    sessions: async_sessionmaker[AsyncSession], now: datetime | None = None
) -> int:
    """Downgrade where a closed window (past its grace) did not keep a tier."""
    now = now or datetime.now(UTC)
    async with sessions() as session:
        programs = list(await session.scalars(select(Program)))
    moved = 0
    for program in programs:
        async with sessions() as session, session.begin():
            moved += await evaluate_tiers(session, await session.merge(program), now)
    return moved


async def expire_all_points(
    sessions: async_sessionmaker[AsyncSession], ledger: Ledger, now: datetime | None = None
) -> int:
    """Expire what is due in every program with an expiry policy."""
    now = now or datetime.now(UTC)
    async with sessions() as session:
        programs = list(
            await session.scalars(select(Program).where(Program.expiry_policy != "none"))
        )
    expired = 0
    for program in programs:
        async with sessions() as session:  # expire_points commits page by page
            expired += await expire_points(session, ledger, await session.merge(program), now)
    return expired
