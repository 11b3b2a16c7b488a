"""Background jobs of the rewards domain: plain async functions that the
worker (``api.worker``) schedules. Each commits its own unit of work and is
safe to run twice or from several workers at once."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ledger import Ledger
from rewards.purchases import settle_matured_earnings


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
