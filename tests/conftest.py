"""One PostgreSQL per test session: ``TEST_DATABASE_URL``'s server when set,
else an embedded one. Each session migrates a database of its own, made
fresh, and drops it at the end.

Ledger records are immutable, so tests do not roll back ledger writes: each
test works in ledgers of its own (``new_ledger``) and checks invariants there.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal

import asyncpg
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from api.database import fresh_database, migrate, postgres_server, sqlalchemy_url
from core.models import Program
from core.principal import system
from ledger import Ledger
from ledger.connection import create_pool
from ledger.schemas import Ledger as LedgerDefinition
from rewards.programs import ProgramSpec, open_program


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    with postgres_server("TEST_DATABASE_URL", prefix="coalition-test-") as url:
        yield url


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    with fresh_database(server_url) as url:
        migrate(url)
        yield url


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=2, max_size=20)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def ledger(pool: asyncpg.Pool) -> AsyncIterator[Ledger]:
    ledger = Ledger(pool)
    yield ledger
    await ledger.close()


_ledger_ids = itertools.count(1)


@pytest.fixture
def new_ledger(ledger: Ledger) -> Callable[[], Awaitable[int]]:
    """Makes a ledger no other test touches and returns its id."""

    async def make() -> int:
        ledger_id = next(_ledger_ids)
        await ledger.create_ledger(LedgerDefinition(id=ledger_id, name=f"test-{ledger_id}"))
        return ledger_id

    return make


_slugs = itertools.count(1)


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(sqlalchemy_url(database_url), pool_size=25, max_overflow=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        yield session


NewProgram = Callable[..., Awaitable[Program]]


@pytest.fixture
def new_program(session: AsyncSession, ledger: Ledger) -> NewProgram:
    async def make(**fields: object) -> Program:
        values: dict[str, object] = {
            "slug": f"program-{next(_slugs)}",
            "name": "Test rewards",
            "currency": "ZAR",
            "point_value_minor": Decimal(1),
            **fields,
        }
        program, _ = await open_program(
            session, ledger, msgspec.convert(values, ProgramSpec), principal=system("test")
        )
        await session.commit()
        return program

    return make
