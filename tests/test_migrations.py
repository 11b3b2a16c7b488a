"""The schema comes only from Alembic: up to head, down to base, up again."""

from __future__ import annotations

import asyncio

import asyncpg

from api.database import downgrade, fresh_database, migrate


async def _tables(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await connection.close()


def test_upgrade_to_head_and_back_to_base(server_url: str) -> None:
    with fresh_database(server_url) as url:
        migrate(url)
        assert {
            "ledgers",
            "accounts",
            "transfers",
            "transfer_rejections",
            "alembic_version",
        } <= asyncio.run(_tables(url))
        downgrade(url, "base")
        assert asyncio.run(_tables(url)) == {"alembic_version"}
        migrate(url)
        assert "transfers" in asyncio.run(_tables(url))
