"""The schema comes only from Alembic: up to head, down to base, up again,
one revision at a time.

On the way the ledger's SQL functions (and its view) are watched: each downgrade gives
back the functions its revision started from, and at head the database runs
exactly the current files under ``ledger/sql``.
"""

from __future__ import annotations

import asyncio
import itertools
from importlib.resources import files

import asyncpg
from alembic.script import ScriptDirectory

from api.database import alembic_config, downgrade, fresh_database, migrate

# The ledger's functions and its views (ledger_account_balances), by name.
_FUNCTIONS = """
    SELECT p.oid::regprocedure::text AS signature, pg_get_functiondef(p.oid) AS definition
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'public' AND p.proname LIKE 'ledger\\_%'
    UNION ALL
    SELECT c.relname, pg_get_viewdef(c.oid)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'v' AND c.relname LIKE 'ledger\\_%'
"""


async def _tables(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {r["tablename"] for r in rows}
    finally:
        await connection.close()


async def _functions(url: str) -> dict[str, str]:
    """The ledger's functions as PostgreSQL renders them, by signature."""
    connection = await asyncpg.connect(url)
    try:
        return {r["signature"]: r["definition"] for r in await connection.fetch(_FUNCTIONS)}
    finally:
        await connection.close()


def _current_files() -> dict[str, str]:
    folder = files("ledger").joinpath("sql")
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    }


async def _functions_after_applying(url: str, sources: list[str]) -> dict[str, str]:
    """The ledger's functions once ``sources`` are run over them, rolled back."""
    connection = await asyncpg.connect(url)
    try:
        transaction = connection.transaction()
        await transaction.start()
        try:
            for source in sources:
                await connection.execute(source)
            return {r["signature"]: r["definition"] for r in await connection.fetch(_FUNCTIONS)}
        finally:
            await transaction.rollback()
    finally:
        await connection.close()


def _revisions(url: str) -> list[str]:
    """From the first revision to head."""
    script = ScriptDirectory.from_config(alembic_config(url))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def _assert_head_runs_the_current_files(url: str) -> None:
    at_head = asyncio.run(_functions(url))
    current = _current_files()
    # Re-creating every function from its file changes none, and adds none.
    assert asyncio.run(_functions_after_applying(url, list(current.values()))) == at_head
    assert {s.split("(")[0] for s in at_head} == {n.removesuffix(".sql") for n in current}


def test_upgrade_to_head_and_back_to_base(server_url: str) -> None:
    with fresh_database(server_url) as url:
        revisions = _revisions(url)
        functions_at: dict[str, dict[str, str]] = {}
        for revision in revisions:
            migrate(url, revision)
            functions_at[revision] = asyncio.run(_functions(url))
        assert {
            "ledgers",
            "accounts",
            "transfers",
            "transfer_rejections",
            "alembic_version",
        } <= asyncio.run(_tables(url))
        _assert_head_runs_the_current_files(url)

        for previous, revision in reversed(list(itertools.pairwise(revisions))):
            downgrade(url, previous)
            assert asyncio.run(_functions(url)) == functions_at[previous], (
                f"the downgrade of {revision} left other functions than {previous} made"
            )
        downgrade(url, "base")
        assert asyncio.run(_tables(url)) == {"alembic_version"}
        assert asyncio.run(_functions(url)) == {}

        migrate(url)
        assert "transfers" in asyncio.run(_tables(url))
        _assert_head_runs_the_current_files(url)
