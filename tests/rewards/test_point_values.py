"""The point value in force at each instant: one value from a program's
start, one per change, read back by ``value_on`` for any instant."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from api.database import fresh_database, migrate
from core.principal import system
from rewards.point_values import value_history, value_on
from rewards.program_settings import SettingsChange, change_settings
from tests.conftest import NewProgram

START = datetime(2025, 1, 1, tzinfo=UTC)


async def test_a_program_opens_with_its_value_from_its_start(
    session: AsyncSession, new_program: NewProgram
) -> None:
    program = await new_program(point_value_minor=Decimal("0.5"), started_at=START)

    assert await value_history(session, program) == [(START, Decimal("0.5"))]
    assert await value_on(session, program, START) == Decimal("0.5")
    assert await value_on(session, program, datetime.now(UTC)) == Decimal("0.5")
    # Before the start there was no other value than the first.
    assert await value_on(session, program, START - timedelta(days=400)) == Decimal("0.5")


async def test_each_change_keeps_the_value_before_it_for_earlier_instants(
    session: AsyncSession, new_program: NewProgram
) -> None:
    program = await new_program(point_value_minor=Decimal(1), started_at=START)
    principal = system("test")
    before_first = datetime.now(UTC)
    await change_settings(
        session, program, SettingsChange(point_value_minor=Decimal("2.5")), principal=principal
    )
    await session.commit()
    between = datetime.now(UTC)
    shown = await change_settings(
        session,
        program,
        # Rounded as stored: 6 decimal places, half up.
        SettingsChange(point_value_minor=Decimal("0.1234565")),
        principal=principal,
    )
    await session.commit()

    assert shown.point_value_minor == Decimal("0.123457")
    history = await value_history(session, program)
    assert [value for _, value in history] == [Decimal(1), Decimal("2.5"), Decimal("0.123457")]
    assert history[1][0] > before_first and history[2][0] > between
    assert await value_on(session, program, before_first) == Decimal(1)
    assert await value_on(session, program, between) == Decimal("2.5")
    assert await value_on(session, program, datetime.now(UTC)) == Decimal("0.123457")
    # The value at an instant is the one that took effect at or before it.
    assert await value_on(session, program, history[1][0]) == Decimal("2.5")
    assert await value_on(session, program, history[1][0] - timedelta(microseconds=1)) == 1


async def test_a_change_to_the_same_value_records_nothing(
    session: AsyncSession, new_program: NewProgram
) -> None:
    program = await new_program(point_value_minor=Decimal(2), started_at=START)
    await change_settings(
        session,
        program,
        SettingsChange(point_value_minor=Decimal("2.0000001")),  # 2.000000 as stored
        principal=system("test"),
    )
    await session.commit()

    assert await value_history(session, program) == [(START, Decimal(2))]


@pytest.mark.parametrize("value", ["0", "-1", "0.0000004", "1000000000000", "NaN"])
def test_a_value_the_column_cannot_keep_is_refused(value: str) -> None:
    with pytest.raises(msgspec.ValidationError, match="point_value_minor"):
        msgspec.convert({"point_value_minor": value}, SettingsChange)


def test_the_migration_gives_existing_programs_their_value_from_their_start(
    server_url: str,
) -> None:
    started = datetime(2024, 3, 1, 12, tzinfo=UTC)
    program_id = uuid.uuid4()

    async def run(url: str, statement: str, *args: object) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetch(statement, *args)
        finally:
            await connection.close()

    with fresh_database(server_url) as url:
        migrate(url, "0039_lot_operations")
        asyncio.run(
            run(
                url,
                """INSERT INTO programs (id, slug, name, ledger_id, currency, minor_per_major,
                    point_value_minor, return_window_days, issuance_account_id,
                    redemption_account_id, breakage_account_id, started_at)
                VALUES ($1, 'older', 'Older', 7, 'ZAR', 100, 0.75, 30, $2, $3, $4, $5)""",
                program_id,
                uuid.uuid4(),
                uuid.uuid4(),
                uuid.uuid4(),
                started,
            )
        )
        migrate(url, "0040_point_values")
        rows = asyncio.run(
            run(url, "SELECT program_id, effective_from, point_value_minor FROM point_values")
        )

    assert [tuple(r) for r in rows] == [(program_id, started, Decimal("0.750000"))]
