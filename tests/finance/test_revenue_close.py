"""The stored recognition of a period is its final one: it needs the
period closed (nothing can be posted in it any more), and refuses an open
one with ``revenue-period-open``, writing nothing; a preview computes the
same run before the close and writes nothing. The job runs each closed
month in order and waits for the close of an open one."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from click.testing import CliRunner
from msgspec.structs import replace
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.cli import main
from api.settings import ENVIRONMENT
from core.models import Program
from core.modules import JobContext
from core.principal import system
from finance.periods import PeriodRecognised, close_period, reopen_period
from finance.revenue.errors import RevenuePeriodOpen
from finance.revenue.runs import recognise_period
from finance.revenue.schemas import RevenueSettingsBody
from finance.revenue.settings import store_revenue_settings
from finance.revenue.tasks import JOB_NAME, recognise_revenue
from ledger import Ledger
from ledger import periods as ledger_periods
from rewards.connections import session_connection
from tests.conftest import NewProgram
from tests.finance.revenue_helpers import Cohorts, add_member, add_sale, at, month

NOW = datetime(2026, 1, 1, tzinfo=UTC)
WHO = system("test")
TABLES = (
    "revenue_periods",
    "breakage_estimates",
    "revenue_allocations",
    "revenue_recognitions",
    "revenue_return_reversals",
    "audit_events",
)


@pytest.fixture
async def program(session: AsyncSession, new_program: NewProgram) -> Program:
    program = await new_program(started_at=datetime(2025, 1, 1, tzinfo=UTC))
    await store_revenue_settings(
        session,
        program,
        RevenueSettingsBody(default_breakage_rate=Decimal("0.5"), development_months=2),
        principal=WHO,
    )
    member = await add_member(session, program)
    await add_sale(session, program, member, price=10_000, points=1_000, posted_at=at(1))
    await session.commit()
    return program


async def _counts(session: AsyncSession, program: tuple[object, str]) -> dict[str, int]:
    program_id, slug = program
    found = {}
    for table in TABLES:
        column = "subject" if table == "audit_events" else "program_id"
        value = f"program:{slug}:revenue:%" if table == "audit_events" else program_id
        operator = "LIKE" if table == "audit_events" else "="
        found[table] = int(
            await session.scalar(
                text(f"SELECT count(*) FROM {table} WHERE {column} {operator} :v"), {"v": value}
            )
            or 0
        )
    return found


async def test_an_open_period_is_refused_and_previewed_then_recognised_once_closed(
    session: AsyncSession, program: Program
) -> None:
    cohorts = Cohorts().earn(1, 1_000).redeem(1, 1, 100)
    ids = (program.id, program.slug)
    before = await _counts(session, ids)
    with pytest.raises(RevenuePeriodOpen, match="2025-01 is open"):
        await recognise_period(
            session, program, month(1), NOW, principal=WHO, development=cohorts.read
        )
    await session.rollback()
    assert await _counts(session, ids) == before
    await session.refresh(program)

    preview = await recognise_period(
        session, program, month(1), NOW, principal=WHO, development=cohorts.read, preview=True
    )
    await session.commit()
    assert preview.preview and not preview.replayed
    # 10,000 x 500 / 10,500 = 476.19 -> 476 deferred; 476 x 100 / 500 = 95.2 -> 95.
    assert (preview.deferred_minor, preview.recognised_minor) == (476, 95)
    assert await _counts(session, ids) == before

    await close_period(session, program, "2025-01", NOW, principal=WHO)
    await session.commit()
    final = await recognise_period(
        session, program, month(1), NOW, principal=WHO, development=cohorts.read
    )
    await session.commit()
    assert not final.preview
    assert (final.deferred_minor, final.recognised_minor) == (476, 95)
    # The same figures (the preview's estimate ids were never stored).
    assert [replace(r, breakage_estimate_id=None) for r in final.recognitions] == [
        replace(r, breakage_estimate_id=None) for r in preview.recognitions
    ]
    after = await _counts(session, ids)
    assert after["revenue_periods"] == before["revenue_periods"] + 1
    # A preview of a recognised period answers the stored run.
    again = await recognise_period(
        session, program, month(1), NOW, principal=WHO, development=cohorts.read, preview=True
    )
    assert again.replayed and not again.preview
    assert await _counts(session, ids) == after
    # A recognised month stays closed: reopening it is refused, nothing written.
    ledger_id = program.ledger_id
    connection = await session_connection(session)
    boundary = await ledger_periods.closed_through(connection, ledger_id)
    with pytest.raises(PeriodRecognised, match="2025-01's revenue was recognised"):
        await reopen_period(session, program, "2025-01", "a late invoice", NOW, principal=WHO)
    await session.rollback()
    connection = await session_connection(session)
    assert await ledger_periods.closed_through(connection, ledger_id) == boundary


async def test_the_job_runs_closed_months_in_order_and_waits_for_an_open_one(
    engine: AsyncEngine, ledger: Ledger, session: AsyncSession, program: Program
) -> None:
    for label in ("2025-01", "2025-02"):
        await close_period(session, program, label, NOW, principal=WHO)
    await session.commit()
    context = JobContext(
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        ledger=ledger,
        now=datetime(2025, 4, 2, tzinfo=UTC),
    )
    await recognise_revenue(context)
    periods = await session.execute(
        text("SELECT period FROM revenue_periods WHERE program_id = :p ORDER BY period"),
        {"p": program.id},
    )
    # March has ended (by the job's clock) but is open: it waits.
    assert [row.period for row in periods] == [month(1), month(2)]
    actors = await session.scalars(
        text("SELECT DISTINCT actor FROM audit_events WHERE subject LIKE :s"),
        {"s": f"program:{program.slug}:revenue:%"},
    )
    assert list(actors) == [f"system:{JOB_NAME}"]
    # Again: nothing more until March closes.
    await recognise_revenue(context)
    assert (
        await session.scalar(
            text("SELECT count(*) FROM revenue_periods WHERE program_id = :p"), {"p": program.id}
        )
        == 2
    )


def test_the_command_line_refuses_an_open_period_in_one_line(
    database_url: str, program: Program
) -> None:
    environment: dict[str, str | None] = dict.fromkeys(ENVIRONMENT)
    environment["DATABASE_URL"] = database_url
    result = CliRunner().invoke(
        main,
        ["finance", "recognise", "--program", program.slug, "--period", "2025-01"],
        env=environment,
    )
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coalition: error: "), result.output
    assert "2025-01 is open" in lines[0]


def test_the_command_line_previews_an_open_period_and_writes_nothing(
    database_url: str, program: Program
) -> None:
    environment: dict[str, str | None] = dict.fromkeys(ENVIRONMENT)
    environment["DATABASE_URL"] = database_url
    result = CliRunner().invoke(
        main,
        ["finance", "recognise", "--program", program.slug, "--period", "2025-01", "--preview"],
        env=environment,
    )
    assert result.exit_code == 0, result.output
    assert "2025-01 previewed (nothing written)" in result.output
    again = CliRunner().invoke(
        main,
        ["finance", "recognise", "--program", program.slug, "--period", "2025-01"],
        env=environment,
    )
    assert again.exit_code == 1 and "2025-01 is open" in again.output, again.output
