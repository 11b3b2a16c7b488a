"""`coalition finance segment-count`, `segment-export` and
`partner-profitability`: a saved segment counted and written to a file (CSV
and Parquet read back), a partner's month printed; bad input one plain line
on stderr, nothing written."""

from __future__ import annotations

import csv
import uuid
from pathlib import Path

import msgspec
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from sqlalchemy.ext.asyncio import AsyncSession

from api.cli import main
from api.settings import ENVIRONMENT
from core.models import Program
from core.principal import system
from ledger import Ledger
from partners.segments.definition import SegmentSpec
from partners.segments.saved import save_segment
from rewards.programs import Enrolment, enrol_member
from tests.conftest import NewProgram
from tests.partners.settlement_helpers import label as month_label


def run(database_url: str, *args: str) -> Result:
    environment: dict[str, str | None] = dict.fromkeys(ENVIRONMENT)
    environment["DATABASE_URL"] = database_url
    return CliRunner().invoke(main, ["finance", *args], env=environment)


@pytest.fixture
async def program(session: AsyncSession, ledger: Ledger, new_program: NewProgram) -> Program:
    made = await new_program()
    for n in range(3):
        await enrol_member(
            session, ledger, made, Enrolment(external_id=f"m-{n}"), principal=system("t")
        )
    spec = msgspec.convert({"name": "everyone", "definition": {}}, SegmentSpec)
    await save_segment(session, made, spec, principal=system("t"))
    await session.commit()
    return made


def test_count_and_export_a_saved_segment(
    database_url: str, program: Program, tmp_path: Path
) -> None:
    counted = run(database_url, "segment-count", "--program", program.slug, "--segment", "everyone")
    assert counted.exit_code == 0, counted.output
    assert "everyone: 3 members" in counted.output
    for export_format in ("csv", "parquet"):
        output = tmp_path / f"everyone.{export_format}"
        done = run(
            database_url,
            "segment-export",
            "--program",
            program.slug,
            "--segment",
            "everyone",
            "--format",
            export_format,
            "--output",
            str(output),
        )
        assert done.exit_code == 0, done.output
        if export_format == "csv":
            with output.open() as file:
                members = [row["member"] for row in csv.DictReader(file)]
        else:
            members = pq.read_table(output).column("member").to_pylist()
        assert sorted(members) == ["m-0", "m-1", "m-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["everyone.csv", "everyone.parquet"]


def test_partner_profitability_prints_a_line_per_partner(
    database_url: str, program: Program
) -> None:
    done = run(
        database_url, "partner-profitability", "--program", program.slug, "--period", month_label(1)
    )
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[0].startswith("partner\tcurrency\tpoints_issued")


@pytest.mark.parametrize(
    "args",
    [
        ["segment-count", "--program", "{slug}", "--segment", "missing"],
        ["segment-count", "--program", "no-such-program", "--segment", "everyone"],
        ["segment-export", "--program", "{slug}", "--segment", "missing", "--output", "{out}"],
        ["segment-export", "--program", "nope", "--segment", "everyone", "--output", "{out}"],
        ["partner-profitability", "--program", "{slug}", "--period", "2025-13"],
        ["partner-profitability", "--program", "no-such-program", "--period", "2025-01"],
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    database_url: str, program: Program, tmp_path: Path, args: list[str]
) -> None:
    out = tmp_path / f"{uuid.uuid4().hex}.csv"
    result = run(database_url, *[a.format(slug=program.slug, out=out) for a in args])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coalition: error: "), result.output
    assert list(tmp_path.iterdir()) == []
