"""`coalition finance exchange-rates add|list`: a rate recorded once (the
same again found), listed; bad input (another rate for the day, a rate not
above 0, not a number, an unknown currency, a bad date) one plain line on
stderr, exit code 1, nothing written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest
from click.testing import CliRunner, Result

from api.cli import main
from api.settings import ENVIRONMENT
from core.models import Program
from tests.conftest import NewProgram


def run(database_url: str, *args: str) -> Result:
    environment: dict[str, str | None] = dict.fromkeys(ENVIRONMENT)
    environment["DATABASE_URL"] = database_url
    return CliRunner().invoke(main, ["finance", "exchange-rates", *args], env=environment)


@pytest.fixture
async def program(new_program: NewProgram) -> Program:
    return await new_program(started_at=datetime(2025, 1, 1, tzinfo=UTC))


def written(database_url: str, slug: str) -> list[str]:
    async def read() -> list[str]:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch(
                "SELECT to_jsonb(t)::text FROM finance_exchange_rates t JOIN programs p"
                " ON p.id = t.program_id WHERE p.slug = $1 ORDER BY 1",
                slug,
            )
            return [row[0] for row in rows]
        finally:
            await connection.close()

    return asyncio.run(read())


def test_the_command_line_adds_and_lists_rates(database_url: str, program: Program) -> None:
    slug = program.slug
    add = ("add", "--program", slug, "--currency", "EUR", "--effective-on", "2025-01-01")
    done = run(database_url, *add, "--rate", "20.50")
    assert done.exit_code == 0, done.output
    assert "exchange rate recorded: EUR 20.5 ZAR from 2025-01-01" in done.output
    after = written(database_url, slug)
    again = run(database_url, *add, "--rate", "20.5")
    assert again.exit_code == 0 and "was recorded already" in again.output
    for bad, why in (
        (("--rate", "21"), "already"),
        (("--rate", "0"), "above 0"),
        (("--rate", "abc"), "not a decimal"),
    ):
        refused = run(database_url, *add, *bad)
        assert refused.exit_code == 1, refused.output
        assert why in refused.output and len(refused.output.strip().splitlines()) == 1
    refused = run(
        database_url,
        "add",
        "--program",
        slug,
        "--currency",
        "ABC",
        "--rate",
        "1",
        "--effective-on",
        "2025-01-01",
    )
    assert refused.exit_code == 1 and "ISO 4217" in refused.output
    refused = run(
        database_url,
        "add",
        "--program",
        slug,
        "--currency",
        "EUR",
        "--rate",
        "1",
        "--effective-on",
        "2025-13-01",
    )
    assert refused.exit_code == 1 and "not a date" in refused.output
    assert written(database_url, slug) == after
    listed = run(database_url, "list", "--program", slug)
    assert listed.exit_code == 0, listed.output
    assert listed.output.startswith("EUR 20.5 ZAR from 2025-01-01 (recorded by ")
    assert (
        "has no exchange rates"
        in run(database_url, "list", "--program", slug, "--currency", "USD").output
    )
