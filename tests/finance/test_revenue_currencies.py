"""Partners' issuance fees billed in another currency than the program's:
each fee line is deferred in the program's (functional) currency at the
operator's rate in force on its statement's issue day, in the ledger's
zone, rounded half to even; a rate recorded later, for a later day, changes
nothing made; no rate in force refuses the run (final or preview) with
``exchange-rate-missing`` and writes nothing, and the job waits for it.
Every figure is computed by hand in comments."""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.models import Program
from core.modules import JobContext
from core.principal import system
from finance.exchange_rate_schemas import ExchangeRateBody
from finance.exchange_rates import ExchangeRateMissing, add_exchange_rate
from finance.journal import JournalProgram, journal_lines
from finance.periods import close_period
from finance.revenue.models import RevenueAllocation
from finance.revenue.runs import recognise_period
from finance.revenue.schemas import RevenueSettingsBody
from finance.revenue.settings import store_revenue_settings
from finance.revenue.tasks import recognise_revenue
from ledger import Ledger
from partners.models import Partner
from partners.statement_models import LineKind, PartnerStatement, PartnerStatementLine

# The HTTP app's fixtures (tests/api), for the route's refusal.
from tests.api.conftest import (  # noqa: F401
    Client,
    app,
    assert_problem,
    client,
    open_program,
)
from tests.conftest import NewProgram
from tests.finance.revenue_helpers import Cohorts, at, month
from tests.finance.test_revenue_runs import close_ledger
from tests.partners.settlement_helpers import label as month_label
from tests.partners.settlement_helpers import months_back

NOW = datetime(2026, 1, 1, tzinfo=UTC)
WHO = system("test")
#: UTC+2 all year: 23:00 UTC on the 20th is the 21st in the ledger's zone.
ZONE = "Africa/Johannesburg"

_numbers = itertools.count(1)


async def add_partner(session: AsyncSession, program: Program, currency: str) -> Partner:
    partner = Partner(
        id=uuid.uuid4(),
        program_id=program.id,
        slug=f"partner-{uuid.uuid4().hex[:8]}",
        name="Fuel",
        legal_name="Fuel Ltd",
        country="ZA",
        currency=currency,
        contacts=[],
        status="active",
        status_changed_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    session.add(partner)
    await session.flush()
    return partner


async def add_statement(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    *,
    issued_at: datetime,
    lines: Sequence[tuple[LineKind, int, int]],
) -> PartnerStatement:
    """An issued monthly statement of ``partner`` (in its currency) with
    ``lines`` of (kind, points, amount in minor units), the month before its
    issue day's first day."""
    start = issued_at.replace(day=1, hour=0, minute=0)
    total = sum(amount for _, _, amount in lines)
    statement = PartnerStatement(
        program_id=program.id,
        partner_id=partner.id,
        number=next(_numbers),
        kind="regular",
        period_label=f"{start:%Y-%m}",
        period_unit="month",
        period_start=start,
        period_end=start + timedelta(days=28),
        currency=partner.currency,
        contract_version=1,
        scan_from=0,
        settled_up_to=0,
        cutoff=0,
        deferred_open_points=0,
        prepaid_drawn_minor=0,
        billed_minor=total,
        reimbursed_minor=0,
        total_minor=total,
        direction="partner_owes",
        payment_status="due",
        paid_minor=0,
        money_ledger_id=0,
        issued_at=issued_at,
    )
    session.add(statement)
    await session.flush()
    session.add_all(
        PartnerStatementLine(
            statement_id=statement.id,
            line=number,
            kind=kind.value,
            points=points,
            amount_minor=amount,
            business_from=start,
            business_until=start + timedelta(days=28),
        )
        for number, (kind, points, amount) in enumerate(lines, 1)
    )
    await session.commit()
    return statement


async def add_rate(
    session: AsyncSession, program: Program, currency: str, rate: str, day: date
) -> None:
    await add_exchange_rate(
        session,
        program,
        ExchangeRateBody(currency=currency, rate=Decimal(rate), effective_on=day),
        principal=WHO,
    )
    await session.commit()


async def fee_rows(session: AsyncSession, program: Program) -> list[dict[str, Any]]:
    rows = await session.scalars(
        select(RevenueAllocation)
        .where(RevenueAllocation.program_id == program.id)
        .order_by(RevenueAllocation.sold_at, RevenueAllocation.price_minor)
        .execution_options(populate_existing=True)
    )
    return [
        {
            "period": r.period,
            "cohort": r.cohort,
            "currency": r.currency,
            "price": r.price_minor,
            "redemption": r.points_minor,
            "service": r.service_minor,
            "original": (r.original_currency, r.original_minor),
            "rate": (r.exchange_rate, r.exchange_rate_date),
        }
        for r in rows
    ]


@pytest.fixture
async def program(session: AsyncSession, new_program: NewProgram) -> Program:
    # A point is worth one ZAR cent.
    program = await new_program(time_zone=ZONE)
    await store_revenue_settings(
        session,
        program,
        RevenueSettingsBody(default_breakage_rate=Decimal("0.5"), development_months=2),
        principal=WHO,
    )
    await session.commit()
    return program


def figures(view: Any) -> tuple[int, int, int, int, int]:
    return (
        view.allocations,
        view.deferred_minor,
        view.service_deferred_minor,
        view.recognised_minor,
        view.service_recognised_minor,
    )


async def test_a_fee_in_another_currency_is_deferred_at_the_rate_of_its_issue_day(
    session: AsyncSession, pool: asyncpg.Pool, program: Program
) -> None:
    euro = await add_partner(session, program, "EUR")
    rand = await add_partner(session, program, "ZAR")
    # Issued 2025-01-20 23:00 UTC: the 21st in the ledger's zone, so the rate
    # from the 21st (20.125), not the one before it (19) nor the one from the
    # 25th, in force at the period's end (22).
    for rate, day in (("19", date(2024, 12, 1)), ("20.125", date(2025, 1, 21))):
        await add_rate(session, program, "EUR", rate, day)
    await add_rate(session, program, "EUR", "22", date(2025, 1, 25))
    await add_statement(
        session,
        program,
        euro,
        issued_at=datetime(2025, 1, 20, 23, tzinfo=UTC),
        lines=[
            (LineKind.ISSUED, 5_000, 1_012),
            (LineKind.DEFERRED, 100_000, 3_000),
            (LineKind.REDEEMED, -200, -500),  # not a fee: never deferred
        ],
    )
    await add_statement(
        session, program, rand, issued_at=at(1, 20), lines=[(LineKind.ISSUED, 1_000, 4_000)]
    )
    cohorts = Cohorts().earn(1, 106_000).redeem(1, 1, 10_600)

    # EUR and ZAR have two decimals: factor 20.125.
    # Issued: 1,012 x 20.125 = 20,366.5 -> 20,366 (half to even); 5,000 points
    # at 1 cent: redemption 5,000, service 15,366.
    # Deferred price: 3,000 x 20.125 = 60,375; 100,000 points are worth more
    # than the fee: redemption 60,375 (the whole fee), service 0.
    # The ZAR fee as it is: redemption 1,000, service 3,000.
    # Deferred: 5,000 + 60,375 + 1,000 = 66,375; service 15,366 + 3,000 = 18,366.
    # Recognised: the default 0.5 expects 53,000 points redeemed, 10,600 were:
    # 66,375 x 0.2 = 13,275; service: month 1 of 24, 18,366 / 24 = 765.25 -> 765.
    expected = (3, 66_375, 18_366, 13_275, 765)
    preview = await recognise_period(
        session, program, month(1), NOW, principal=WHO, development=cohorts.read, preview=True
    )
    await session.commit()
    assert preview.preview and figures(preview) == expected
    assert await fee_rows(session, program) == []

    await close_ledger(session, program, 1)
    january = await recognise_period(
        session, program, month(1), NOW, principal=WHO, development=cohorts.read
    )
    await session.commit()
    assert figures(january) == expected  # same inputs, same cents
    assert {(r.cohort, r.element): r.deferred_minor for r in january.recognitions} == {
        ("2025-01", "points"): 66_375,
        ("2025-01", "service"): 18_366,
    }
    rate_used = (Decimal("20.125"), date(2025, 1, 21))
    # By issue time (then price): the ZAR statement came out at noon.
    made = [
        {
            "period": month(1),
            "cohort": month(1),
            "currency": "ZAR",
            "price": 4_000,
            "redemption": 1_000,
            "service": 3_000,
            "original": (None, None),
            "rate": (None, None),
        },
        {
            "period": month(1),
            "cohort": month(1),
            "currency": "ZAR",
            "price": 20_366,
            "redemption": 5_000,
            "service": 15_366,
            "original": ("EUR", 1_012),
            "rate": rate_used,
        },
        {
            "period": month(1),
            "cohort": month(1),
            "currency": "ZAR",
            "price": 60_375,
            "redemption": 60_375,
            "service": 0,
            "original": ("EUR", 3_000),
            "rate": rate_used,
        },
    ]
    assert await fee_rows(session, program) == made

    # The journal defers the converted amounts, in the program's currency.
    facts = JournalProgram(program.id, program.slug, program.currency, program.time_zone)
    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
        lines = [row async for row in journal_lines(connection, facts, month(1))]
    deferral = {
        (row[6], row[8], row[9], row[11])
        for row in lines
        if row[4] == "deferral" and row[7] == "credit"
    }
    assert deferral == {
        ("2400 Contract liability: loyalty points", "ZAR", 66_375, 66_375),
        ("2450 Deferred service revenue", "ZAR", 18_366, 18_366),
    }

    # A rate recorded later, from a later day: January's fees keep theirs;
    # a fee issued in February takes it (1,000 x 21 = 21,000; 2,000 points).
    await add_rate(session, program, "EUR", "21", date(2025, 2, 1))
    await add_statement(
        session, program, euro, issued_at=at(2, 10), lines=[(LineKind.ISSUED, 2_000, 1_000)]
    )
    await close_ledger(session, program, 2)
    february = await recognise_period(
        session, program, month(2), NOW, principal=WHO, development=cohorts.read
    )
    await session.commit()
    assert (february.allocations, february.deferred_minor, february.service_deferred_minor) == (
        1,
        2_000,
        19_000,
    )
    assert await fee_rows(session, program) == [
        *made,
        {
            "period": month(2),
            "cohort": month(2),
            "currency": "ZAR",
            "price": 21_000,
            "redemption": 2_000,
            "service": 19_000,
            "original": ("EUR", 1_000),
            "rate": (Decimal(21), date(2025, 2, 1)),
        },
    ]


async def _writes(session: AsyncSession, program_id: uuid.UUID, slug: str) -> dict[str, int]:
    found = {}
    for table in (
        "revenue_periods",
        "breakage_estimates",
        "revenue_allocations",
        "revenue_recognitions",
    ):
        found[table] = int(
            await session.scalar(
                text(f"SELECT count(*) FROM {table} WHERE program_id = :p"), {"p": program_id}
            )
            or 0
        )
    found["audit"] = int(
        await session.scalar(
            text("SELECT count(*) FROM audit_events WHERE subject LIKE :s"),
            {"s": f"program:{slug}:revenue:%"},
        )
        or 0
    )
    return found


async def test_a_fee_without_a_rate_refuses_the_run_through_the_api(
    client: Client,  # noqa: F811 (the fixture)
    session: AsyncSession,
) -> None:
    slug = await open_program(client)
    program = await session.scalar(select(Program).where(Program.slug == slug))
    assert program is not None
    start, _ = months_back(2)
    await session.execute(
        text("UPDATE programs SET started_at = :at WHERE id = :p"),
        {"at": start + timedelta(hours=1), "p": program.id},
    )
    period = month_label(1)
    issued = months_back(1)[0] + timedelta(days=9, hours=12)
    euro = await add_partner(session, program, "EUR")
    await add_statement(
        session, program, euro, issued_at=issued, lines=[(LineKind.ISSUED, 10_000, 1_012)]
    )
    base = f"/programs/{slug}/finance/revenue"
    before = await _writes(session, program.id, slug)
    assert before["revenue_allocations"] == 0

    previewed = assert_problem(
        await client.post(f"{base}/recognitions", json={"period": period, "preview": True}),
        409,
        "exchange-rate-missing",
    )
    assert previewed["detail"].startswith(f"no exchange rate for EUR on {issued.date()}")
    assert await _writes(session, program.id, slug) == before
    for closing in (month_label(2), period):
        closed = await client.post(f"/programs/{slug}/finance/periods/{closing}/close")
        assert closed.status_code in (200, 201), closed.text
    before = await _writes(session, program.id, slug)
    refused = assert_problem(
        await client.post(f"{base}/recognitions", json={"period": period}),
        409,
        "exchange-rate-missing",
    )
    assert "partner statement" in refused["detail"]
    assert await _writes(session, program.id, slug) == before

    # The currency's first rate may reach back into the closed month.
    recorded = await client.post(
        f"/programs/{slug}/finance/exchange-rates",
        json={"currency": "EUR", "rate": "20.125", "effective_on": f"{period}-01"},
    )
    assert recorded.status_code == 201, recorded.text
    made = await client.post(f"{base}/recognitions", json={"period": period})
    assert made.status_code == 201, made.text
    # 1,012 x 20.125 = 20,366.5 -> 20,366; 10,000 points at 0.5: 5,000.
    assert (made.json()["deferred_minor"], made.json()["service_deferred_minor"]) == (
        5_000,
        15_366,
    )
    [shown] = (await client.get(f"{base}/allocations")).json()["items"]
    assert {
        key: shown[key]
        for key in (
            "currency",
            "price_minor",
            "points_minor",
            "service_minor",
            "original_currency",
            "original_minor",
            "exchange_rate",
            "exchange_rate_date",
        )
    } == {
        "currency": "ZAR",
        "price_minor": 20_366,
        "points_minor": 5_000,
        "service_minor": 15_366,
        "original_currency": "EUR",
        "original_minor": 1_012,
        "exchange_rate": "20.125",
        "exchange_rate_date": f"{period}-01",
    }


async def test_the_job_waits_for_the_rate_of_a_fee(
    engine: AsyncEngine,
    ledger: Ledger,
    session: AsyncSession,
    new_program: NewProgram,
    caplog: pytest.LogCaptureFixture,
) -> None:
    program = await new_program(started_at=datetime(2025, 1, 1, tzinfo=UTC))
    euro = await add_partner(session, program, "EUR")
    await add_statement(
        session, program, euro, issued_at=at(2, 10), lines=[(LineKind.ISSUED, 100, 1_000)]
    )
    for label in ("2025-01", "2025-02"):
        await close_period(session, program, label, NOW, principal=WHO)
    await session.commit()
    context = JobContext(
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        ledger=ledger,
        now=datetime(2025, 3, 2, tzinfo=UTC),
    )

    async def periods() -> list[date]:
        rows = await session.execute(
            text("SELECT period FROM revenue_periods WHERE program_id = :p ORDER BY period"),
            {"p": program.id},
        )
        return [row.period for row in rows]

    with caplog.at_level(logging.WARNING, logger="finance.revenue.tasks"):
        await recognise_revenue(context)
    # January (no fee) is recognised; February waits for its rate.
    assert await periods() == [month(1)]
    assert any(
        program.slug in r.getMessage() and "2025-02 waits for an exchange rate" in r.getMessage()
        for r in caplog.records
    )
    with pytest.raises(ExchangeRateMissing):
        await recognise_period(session, program, month(2), NOW, principal=WHO)
    await session.rollback()
    await session.refresh(program)
    await add_rate(session, program, "EUR", "20", date(2025, 2, 1))
    await recognise_revenue(context)
    assert await periods() == [month(1), month(2)]
