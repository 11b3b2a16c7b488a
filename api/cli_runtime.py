"""What every command of the command line shares: one plain line on stderr
for an error and its exit code, and small pools of its own to work on.
The ``coalition`` group (``api.cli``) and its sub-groups in other modules
(``api.finance_cli``) take them from here, so neither imports the other."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import NoReturn, TypeVar

import asyncpg
import click
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from api.database import sqlalchemy_url
from api.settings import SettingsError
from core.models import Program
from ledger import Ledger
from ledger.connection import create_pool

T = TypeVar("T")

EXIT_FAILURE = 1
EXIT_BAD_SETTINGS = 2


async def with_pool(url: str, use: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run ``use`` on a small pool of its own (the app's tables, no ledger), closed after."""
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        return await use(pool)
    finally:
        await pool.close()


async def with_ledger(url: str, use: Callable[[Ledger], Awaitable[T]]) -> T:
    """Run ``use`` with a ledger on a small pool of its own, closed after."""

    async def on_ledger(pool: asyncpg.Pool) -> T:
        ledger = Ledger(pool)
        try:
            return await use(ledger)
        finally:
            await ledger.close()

    return await with_pool(url, on_ledger)


@contextlib.contextmanager
def plain_errors() -> Iterator[None]:
    """Turn an error into one line on stderr and the matching exit code."""
    try:
        yield
    except SettingsError as error:
        fail(str(error), EXIT_BAD_SETTINGS)
    except (click.exceptions.Exit, click.ClickException, click.Abort):
        raise
    except Exception as error:
        fail(f"{type(error).__name__}: {error}", EXIT_FAILURE)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"coalition: error: {' '.join(message.split())}", err=True)
    raise SystemExit(code)


@contextlib.asynccontextmanager
async def sessions_on(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """ORM sessions on an engine of their own (two connections), disposed after."""
    engine = create_async_engine(sqlalchemy_url(url), pool_size=2, max_overflow=0)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


def in_program(
    slug: str,
    use: Callable[[AsyncSession, Ledger, Program], Awaitable[T]],
    *,
    write: bool,
) -> T:
    """``use(session, ledger, program)`` on the program ``slug`` of the
    configured database, as the console: one transaction, committed at the
    end when ``write``, else rolled back (a report)."""
    # Imported here: api.access and core.programs import more than a
    # command that never needs them should load.
    from api.access import CONSOLE
    from api.database import database_url
    from api.settings import load_settings
    from core.programs import get_program

    async def on(ledger: Ledger, url: str) -> T:
        async with sessions_on(url) as sessions, sessions() as session:
            try:
                result = await use(session, ledger, await get_program(session, CONSOLE, slug))
                if write:
                    await session.commit()
                return result
            finally:
                await session.rollback()

    with database_url(load_settings()) as url:
        return asyncio.run(with_ledger(url, lambda ledger: on(ledger, url)))
