"""The asyncpg connection under an ORM session, for the set-based statements
that the batch use cases run inside the session's own transaction."""

from __future__ import annotations

from typing import TypeAlias

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

Connection: TypeAlias = "asyncpg.Connection | asyncpg.pool.PoolConnectionProxy"


async def session_connection(session: AsyncSession) -> Connection:
    """The session's asyncpg connection, inside the session's transaction."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    if not driver.is_in_transaction():
        # SQLAlchemy sends BEGIN with its first statement: without one, the
        # statements below would each commit on their own.
        await session.execute(text("SELECT 1"))
    assert driver.is_in_transaction()
    return driver
