"""`coalition finance recognise` and `coalition finance journal`: a
period recognised once, its journal written to a file (the same bytes as
the API's export), bad input one plain line on stderr, nothing written."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from api.cli import main
from api.settings import ENVIRONMENT
from core.models import Program
from tests.conftest import NewProgram


def run(database_url: str, *args: str) -> Result:
    environment: dict[str, str | None] = dict.fromkeys(ENVIRONMENT)
    environment["DATABASE_URL"] = database_url
    return CliRunner().invoke(main, ["finance", *args], env=environment)


#: The program's first month: closed (``finance close``) before its final recognition.
PERIOD = "2025-12"


@pytest.fixture
async def program(new_program: NewProgram) -> Program:
    return await new_program(started_at=datetime(2025, 12, 1, tzinfo=UTC))


def test_recognise_then_write_the_journal(
    database_url: str, program: Program, tmp_path: Path
) -> None:
    period = PERIOD
    closed = run(database_url, "close", "--program", program.slug, "--month", period)
    assert closed.exit_code == 0, closed.output
    first = run(database_url, "recognise", "--program", program.slug, "--period", period)
    assert first.exit_code == 0, first.output
    assert f"{period} recognised: 0 allocations" in first.output
    again = run(database_url, "recognise", "--program", program.slug, "--period", period)
    assert "was recognised already" in again.output
    files = []
    for name in ("a.parquet", "b.parquet"):
        output = tmp_path / name
        done = run(
            database_url,
            "journal",
            "--program",
            program.slug,
            "--period",
            period,
            "--format",
            "parquet",
            "--output",
            str(output),
        )
        assert done.exit_code == 0, done.output
        files.append(output.read_bytes())
    assert files[0] == files[1] and files[0].startswith(b"PAR1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.parquet", "b.parquet"]


@pytest.mark.parametrize(
    "args",
    [
        ["recognise", "--program", "{slug}", "--period", "2025-13"],
        ["recognise", "--program", "no-such-program", "--period", "2025-01"],
        ["recognise", "--program", "{slug}", "--period", "9998-12"],
        ["journal", "--program", "{slug}", "--period", "2025-1", "--output", "{out}"],
        ["journal", "--program", "no-such-program", "--period", "2025-01", "--output", "{out}"],
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    database_url: str, program: Program, tmp_path: Path, args: list[str]
) -> None:
    out = tmp_path / "journal.csv"
    result = run(database_url, *[a.format(slug=program.slug, out=out) for a in args])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coalition: error: "), result.output
    assert list(tmp_path.iterdir()) == []
    closed = run(database_url, "close", "--program", program.slug, "--month", PERIOD)
    assert closed.exit_code == 0, closed.output
    check = run(database_url, "recognise", "--program", program.slug, "--period", PERIOD)
    # Nothing was recognised by the refused run: a later one is still free to go.
    assert check.exit_code == 0, check.output
