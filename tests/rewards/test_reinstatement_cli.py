"""`coalition rewards reinstate`: every lot expired since a date restored
once (the same command again restores nothing), what it did in one line;
bad input one plain line on stderr, nothing written."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from click.testing import CliRunner, Result
from sqlalchemy.ext.asyncio import AsyncSession

from api.cli import main
from api.settings import ENVIRONMENT
from ledger import Ledger
from tests.conftest import NewProgram
from tests.rewards.test_reinstatement import expired_program


@dataclass(frozen=True)
class Expired:
    slug: str
    program_id: uuid.UUID
    ledger_id: int
    wallet: uuid.UUID
    #: When the lot expired.
    at: datetime


@pytest.fixture
async def expired(session: AsyncSession, ledger: Ledger, new_program: NewProgram) -> Expired:
    program, member, _, _, now = await expired_program(session, ledger, new_program)
    return Expired(program.slug, program.id, program.ledger_id, member.wallet_account_id, now)


def run(database_url: str, *args: str) -> Result:
    environment: dict[str, str | None] = dict.fromkeys(ENVIRONMENT)
    environment["DATABASE_URL"] = database_url
    return CliRunner().invoke(main, ["rewards", *args], env=environment)


def state(database_url: str, found: Expired) -> tuple[int, int, int]:
    """The wallet's balance, the program's reinstatements and its ledger's transfers."""

    async def read() -> tuple[int, int, int]:
        connection = await asyncpg.connect(database_url)
        try:
            balance = await connection.fetchval(
                "SELECT credits_posted - debits_posted FROM ledger_account_balances WHERE id = $1",
                found.wallet,
            )
            rows = await connection.fetchval(
                "SELECT count(*) FROM reinstatements WHERE program_id = $1", found.program_id
            )
            moved = await connection.fetchval(
                "SELECT count(*) FROM transfers WHERE ledger = $1", found.ledger_id
            )
            return int(balance), int(rows), int(moved)
        finally:
            await connection.close()

    return asyncio.run(read())


def test_reinstate_restores_once_and_says_what_it_did(database_url: str, expired: Expired) -> None:
    assert state(database_url, expired)[:2] == (20, 0)
    since = (expired.at - timedelta(days=1)).date().isoformat()
    done = run(database_url, "reinstate", "--program", expired.slug, "--since", since)
    assert done.exit_code == 0, done.output
    [line] = done.output.strip().splitlines()
    assert line.startswith(f"rewards: {expired.slug} reinstatement ")
    assert "done: restored 70 points of 1 expiries" in line and "they expire never" in line
    after = state(database_url, expired)
    assert after[:2] == (90, 1)

    again = run(database_url, "reinstate", "--program", expired.slug, "--since", since)
    assert again.exit_code == 0, again.output
    assert "was done before: restored 70 points" in again.output
    # Under another reference: nothing is left to restore.
    other = run(
        database_url,
        "reinstate",
        "--program",
        expired.slug,
        "--since",
        since,
        "--reference",
        "OTHER-1",
    )
    assert other.exit_code == 0, other.output
    assert "done: restored 0 points of 0 expiries" in other.output
    assert state(database_url, expired) == (90, 2, after[2])


def test_a_new_expiry_for_the_restored_points(database_url: str, expired: Expired) -> None:
    since = (expired.at - timedelta(minutes=5)).isoformat()
    until = (datetime.now(UTC) + timedelta(days=365)).date().isoformat()
    done = run(
        database_url,
        "reinstate",
        "--program",
        expired.slug,
        "--since",
        since,
        "--lot-expires-at",
        until,
    )
    assert done.exit_code == 0, done.output
    assert f"they expire {until}T00:00:00+00:00" in done.output


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "2026-13-01"],
        ["--since", "yesterday"],
        ["--since", "2026-01-01T00:00:00"],  # no offset
        ["--since", "2999-01-01"],  # in the future
        ["--since", "2020-01-01", "--lot-expires-at", "2020-06-01"],  # not in the future
        ["--since", "2020-01-01", "--reference", ""],
        ["--since", "2020-01-01", "--reference", "x" * 201],
        ["--since", "0001-01-01"],
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    database_url: str, expired: Expired, args: list[str]
) -> None:
    before = state(database_url, expired)
    result = run(database_url, "reinstate", "--program", expired.slug, *args)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coalition: error: "), result.output
    assert state(database_url, expired) == before


def test_an_unknown_program_is_one_line(database_url: str) -> None:
    result = run(database_url, "reinstate", "--program", "no-such-program", "--since", "2020-01-01")
    assert result.exit_code == 1, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("coalition: error: ") and "no-such-program" in line
