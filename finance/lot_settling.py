"""Settling a ledger's lots before a finance read, on a connection of its
own: the ledger's lock is held only while the settlement runs, not for
the rest of the caller's transaction (``ledger.lots.settle_lots``; the
reads in the caller's transaction then find nothing waiting, or only what
posted since, and take the lock only then)."""

from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from ledger.lots import SettledLots, settle_lots


def engine_of(session: AsyncSession) -> AsyncEngine:
    """The engine a session's connections come from."""
    bind = session.bind
    if isinstance(bind, AsyncConnection):
        return bind.engine
    assert isinstance(bind, AsyncEngine)
    return bind


async def settle_apart(session: AsyncSession, ledger: int) -> SettledLots:
    """Settle ``ledger``'s lots, committed on a connection of the session's
    engine other than the session's."""
    async with engine_of(session).connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, asyncpg.Connection)
        return await settle_lots(driver, ledger=ledger)
