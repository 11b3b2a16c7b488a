"""A program's recognition runs against the database: allocations made
once and never changed by a re-estimate, breakage re-estimated each
period, revenue caught up cumulatively (a negative period after an
estimate revised up, a large one after an estimate revised down), each
period once and in order. Every figure is computed by hand in comments."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from core import calendar
from core.models import Program
from core.principal import system
from finance.report_dates import accounting_zone
from finance.revenue.errors import LaterPeriodRecognised, PeriodNotEnded
from finance.revenue.models import BreakageEstimate, RevenueAllocation, RevenuePeriod
from finance.revenue.reads import breakage_estimates
from finance.revenue.runs import recognise_period
from finance.revenue.schemas import RevenueRunView, RevenueSettingsBody
from finance.revenue.settings import store_revenue_settings
from ledger import periods as ledger_periods
from rewards.connections import session_connection
from tests.conftest import NewProgram
from tests.finance.revenue_helpers import Cohorts, add_member, add_sale, at, month

NOW = datetime(2026, 1, 1, tzinfo=UTC)
WHO = system("test")


async def close_ledger(session: AsyncSession, program: Program, n: int) -> None:
    """The program's ledger closed through month ``n``: what a period close
    does to the ledger (``finance.periods``), which a final run requires."""
    connection = await session_connection(session)
    zone = await accounting_zone(connection, program.ledger_id)
    _, end = calendar.month_bounds(month(n), zone)
    await ledger_periods.close_through(
        connection, program.ledger_id, end - ledger_periods.RESOLUTION
    )
    await session.commit()


async def run(session: AsyncSession, program: Program, n: int, cohorts: Cohorts) -> RevenueRunView:
    await close_ledger(session, program, n)
    view = await recognise_period(
        session, program, month(n), NOW, principal=WHO, development=cohorts.read
    )
    await session.commit()
    return view


def by_cohort(view: RevenueRunView) -> dict[tuple[str, str], tuple[int, int]]:
    return {
        (r.cohort, r.element): (r.recognised_to_date_minor, r.recognised_in_period_minor)
        for r in view.recognitions
    }


@pytest.fixture
async def program(session: AsyncSession, new_program: NewProgram) -> Program:
    program = await new_program()
    await store_revenue_settings(
        session,
        program,
        RevenueSettingsBody(default_breakage_rate=Decimal("0.5"), development_months=2),
        principal=WHO,
    )
    await session.commit()
    return program


async def allocations(session: AsyncSession, program: Program) -> list[dict[str, Any]]:
    rows = await session.scalars(
        select(RevenueAllocation)
        .where(RevenueAllocation.program_id == program.id)
        .order_by(RevenueAllocation.sold_at)
        .execution_options(populate_existing=True)
    )
    return [
        {
            "cohort": r.cohort,
            "rate": r.breakage_rate,
            "points_minor": r.points_minor,
            "goods_minor": r.goods_minor,
        }
        for r in rows
    ]


async def test_four_periods_of_two_cohorts(session: AsyncSession, program: Program) -> None:
    member = await add_member(session, program)
    await add_sale(session, program, member, price=10_000, points=1_000, posted_at=at(1))
    # Not posted yet (in its return window): allocated later, not now.
    late = await add_sale(session, program, member, price=5_000, points=500, posted_at=None)
    await session.commit()
    cohorts = Cohorts().earn(1, 1_000).redeem(1, 1, 100)

    # January: one cohort aged 0, no older history: the default, 0.5 expected.
    # Allocation: SSP(points) = 1,000 x 1 x 0.5 = 500; 10,000 x 500 / 10,500 = 476.19 -> 476.
    # Recognised: 476 x 100 / 500 = 95.2 -> 95.
    january = await run(session, program, 1, cohorts)
    assert (january.allocations, january.deferred_minor, january.recognised_minor) == (1, 476, 95)
    assert by_cohort(january) == {("2025-01", "points"): (95, 95)}

    # February: the late sale posted (net of a return: 4,000 and 400 points).
    late.posted_at, late.returned_minor, late.points_reversed = at(2), 1_000, 100
    await session.commit()
    cohorts.redeem(1, 2, 100).earn(2, 400).redeem(2, 2, 80)
    # f0 = 200 / 100 = 2 (January), f1 unknown: both cohorts take the default 0.5.
    # The new sale: SSP 400 x 0.5 = 200; 4,000 x 200 / 4,200 = 190.48 -> 190.
    # January: 476 x 200 / 500 = 190.4 -> 190 (95 this period); February: 190 x 80 / 200 = 76.
    february = await run(session, program, 2, cohorts)
    assert (february.allocations, february.deferred_minor) == (1, 190)
    assert by_cohort(february) == {
        ("2025-01", "points"): (190, 95),
        ("2025-02", "points"): (76, 76),
    }
    assert february.recognised_minor == 95 + 76

    # March: January mature at 600 of 1,000 (0.6, revised up); f1 = 600 / 200 = 3,
    # February developed: 88 x 3 / 400 = 0.66 (revised up from 0.5): 264 expected.
    # January: 476 x 600 / 600 = 476 (286 this period); February: 190 x 88 / 264 = 63.33 -> 63,
    # 13 less than before: a negative period.
    cohorts.redeem(1, 3, 400).redeem(2, 3, 8)
    march = await run(session, program, 3, cohorts)
    assert by_cohort(march) == {("2025-01", "points"): (476, 286), ("2025-02", "points"): (63, -13)}
    assert march.allocations == 0

    # April: February mature at 88 of 400 (0.22, revised down): all of it, 190 (127 now).
    april = await run(session, program, 4, cohorts)
    assert by_cohort(april) == {("2025-01", "points"): (476, 0), ("2025-02", "points"): (190, 127)}

    estimates = {
        (e.period, e.cohort): (e.method, e.expected_redemption_rate)
        for n in (1, 2, 3, 4)
        for e in await breakage_estimates(session, program, month(n))
    }
    assert estimates == {
        ("2025-01", "2025-01"): ("default", Decimal("0.5")),
        ("2025-02", "2025-01"): ("default", Decimal("0.5")),
        ("2025-02", "2025-02"): ("default", Decimal("0.5")),
        ("2025-03", "2025-01"): ("mature", Decimal("0.6")),
        ("2025-03", "2025-02"): ("chain_ladder", Decimal("0.66")),
        ("2025-04", "2025-01"): ("mature", Decimal("0.6")),
        ("2025-04", "2025-02"): ("mature", Decimal("0.22")),
    }
    # Re-estimates changed no allocation: each keeps the rate it was made with.
    assert await allocations(session, program) == [
        {"cohort": month(1), "rate": Decimal("0.5"), "points_minor": 476, "goods_minor": 9_524},
        {"cohort": month(2), "rate": Decimal("0.5"), "points_minor": 190, "goods_minor": 3_810},
    ]


async def test_a_period_runs_once_and_in_order(session: AsyncSession, program: Program) -> None:
    member = await add_member(session, program)
    await add_sale(session, program, member, price=1_000, points=100, posted_at=at(1))
    await session.commit()
    cohorts = Cohorts().earn(1, 100).redeem(1, 1, 10)
    first = await run(session, program, 1, cohorts)
    counts = await _counts(session, program)

    again = await run(session, program, 1, cohorts.redeem(1, 1, 50))

    assert again.replayed and not first.replayed
    assert again.recognitions == first.recognitions
    assert await _counts(session, program) == counts
    await run(session, program, 3, cohorts)
    with pytest.raises(LaterPeriodRecognised):
        await run(session, program, 2, cohorts)
    await session.rollback()
    await session.refresh(program)
    with pytest.raises(PeriodNotEnded):
        await recognise_period(
            session, program, month(13), NOW, principal=WHO, development=cohorts.read
        )
    await session.rollback()
    await session.refresh(program)
    assert await _counts(session, program) == {
        **counts,
        "revenue_periods": 2,
        "breakage_estimates": 2,
        "revenue_recognitions": 2,
    }


async def _counts(session: AsyncSession, program: Program) -> dict[str, int]:
    found = {}
    for table in (
        "revenue_periods",
        "breakage_estimates",
        "revenue_allocations",
        "revenue_recognitions",
    ):
        found[table] = int(
            await session.scalar(
                text(f"SELECT count(*) FROM {table} WHERE program_id = :p"), {"p": program.id}
            )
            or 0
        )
    return found


async def test_allocations_are_immutable_in_the_database(
    session: AsyncSession, program: Program
) -> None:
    member = await add_member(session, program)
    await add_sale(session, program, member, price=1_000, points=100, posted_at=at(1))
    await session.commit()
    await run(session, program, 1, Cohorts().earn(1, 100))
    for statement in (
        "UPDATE revenue_allocations SET points_minor = 0, goods_minor = price_minor"
        " WHERE program_id = :p",
        "DELETE FROM revenue_allocations WHERE program_id = :p",
    ):
        with pytest.raises(DBAPIError, match="immutable"):
            await session.execute(text(statement), {"p": program.id})
        await session.rollback()
        await session.refresh(program)
    assert len(await allocations(session, program)) == 1


async def test_the_ratio_policy_is_stored_with_each_allocation(
    session: AsyncSession, program: Program
) -> None:
    await store_revenue_settings(
        session,
        program,
        RevenueSettingsBody(
            rounding_policy="ratio", ratio_places=2, default_breakage_rate=Decimal("0.2")
        ),
        principal=WHO,
    )
    member = await add_member(session, program)
    await add_sale(session, program, member, price=10_000, points=1_000, posted_at=at(1))
    await session.commit()
    # Default 0.2: SSP 800; ratio 800 / 10,800 = 0.0740... -> 0.07: 700 cents.
    view = await run(session, program, 1, Cohorts())
    assert view.deferred_minor == 700
    row = await session.scalar(
        select(RevenueAllocation).where(RevenueAllocation.program_id == program.id)
    )
    assert row is not None
    assert (row.rounding_policy, row.ratio_places, row.ratio) == ("ratio", 2, Decimal("0.07"))
    assert row.breakage_estimate_id is None  # no lots of its cohort: the default rate
    period = await session.scalar(
        select(RevenuePeriod).where(RevenuePeriod.program_id == program.id)
    )
    assert period is not None and period.estimates == 0
    assert (
        await session.scalar(
            select(BreakageEstimate.id).where(BreakageEstimate.program_id == program.id)
        )
        is None
    )
