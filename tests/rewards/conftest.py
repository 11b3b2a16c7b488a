"""SQLAlchemy sessions on the session's test database, and a program to use."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from api.database import sqlalchemy_url
from ledger import Ledger
from rewards.models import Program
from rewards.programs import ProgramSpec, create_program

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
        spec = ProgramSpec(
            slug=f"program-{next(_slugs)}",
            name="Test rewards",
            currency="ZAR",
            point_value_minor=Decimal(1),
            **fields,  # type: ignore[arg-type]
        )
        program = await create_program(session, ledger, spec)
        await session.commit()
        return program

    return make
