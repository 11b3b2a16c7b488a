"""A period's recognition run: re-estimate breakage, allocate the new
sales and partner fees, recognise, store all of it, once per program and
month (``recognise_period``). The run holds the program's revenue lock
(an advisory lock of the transaction), so two runs at once make one.

A run of a period that was run answers what it stored and writes nothing;
periods run in order (a later one run first refuses an earlier one), and
only a period that has ended can run. The run that is stored is the final
one, so it needs the period closed (``finance.periods``: the ledger
refuses anything dated in it from then on, so what the run read cannot
change under it); before the close, a **preview** computes the same run
and writes nothing.

Months are months of the ledger's accounting days (``ledgers.time_zone``),
the days its lots and aggregates are dated by, whatever the program's zone
became since (``finance.report_dates.accounting_zone``).

What each step reads:

- breakage: the cohorts' lot movements of the program's points ledger
  through the period's last day (``ledger.lots.cohort_development``);
- allocation: purchases whose points were posted (their return window
  ended: the price net of returns, the points that reached the wallet)
  before the period's end, not yet allocated; their cohort is the month
  they were posted, which is when their lot was created. Partner fees:
  the issued and deferred issue-price lines of the partners' statements
  issued before the period's end, in the program's (functional) currency:
  a statement billed in another is converted at the operator's rate in
  force on its issue day (ledger's zone; ``finance.exchange_rates``, half
  to even, as the journal converts), and a currency with no rate in force
  then refuses the run (``ExchangeRateMissing``) before it writes anything;
- returns: allocated sales returned after their allocation, through the
  period's end (``finance.revenue.returns``): the points' share of the
  returned part comes off the cohort's deferral;
- recognition: every cohort's deferral to date (less its reversals), with
  its estimate of this period and what earlier periods recognised of it.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, calendar
from core.models import Program
from core.principal import Principal
from finance.exchange_rates import (
    ExchangeRateMissing,
    RateInForce,
    conversion_factor,
    functional_minor,
    rate_in_force,
)
from finance.lot_settling import settle_apart
from finance.report_dates import accounting_zone
from finance.revenue import breakage
from finance.revenue.allocation import allocate_sale
from finance.revenue.errors import LaterPeriodRecognised, PeriodNotEnded, RevenuePeriodOpen
from finance.revenue.models import (
    AllocationSource,
    BreakageEstimate,
    Element,
    RevenueAllocation,
    RevenuePeriod,
    RevenueRecognition,
)
from finance.revenue.partner_fees import service_recognised_to_date, split_issuance_fee
from finance.revenue.recognition import recognise
from finance.revenue.returns import reverse_returns, reversed_by_cohort
from finance.revenue.rounding import CONTEXT, rate
from finance.revenue.schemas import RevenueRecognitionView, RevenueRunView, period_label
from finance.revenue.settings import Settings, revenue_settings
from ledger import periods as ledger_periods
from ledger.ids import new_id
from partners.statement_models import LineKind, PartnerStatement, PartnerStatementLine
from rewards.connections import Connection, session_connection
from rewards.models import Purchase

#: The first key of the program's revenue lock (the second: its id's hash).
REVENUE_LOCK = 1380273749
#: Sales allocated per statement: memory stays bounded whatever the month.
PAGE = 5000

DevelopmentReader = Callable[[Connection, int, date], Awaitable[Sequence[breakage.CohortMovement]]]


async def ledger_development(
    connection: Connection, ledger: int, through: date
) -> Sequence[breakage.CohortMovement]:
    from ledger import lots

    return await lots.cohort_development(connection, ledger=ledger, through=through)


async def _stored(session: AsyncSession, program: Program, period: date) -> RevenueRunView | None:
    run = await session.scalar(
        select(RevenuePeriod).where(
            RevenuePeriod.program_id == program.id, RevenuePeriod.period == period
        )
    )
    if run is None:
        return None
    rows = list(
        await session.scalars(
            select(RevenueRecognition)
            .where(RevenueRecognition.program_id == program.id, RevenueRecognition.period == period)
            .order_by(RevenueRecognition.cohort, RevenueRecognition.element)
        )
    )
    return run_view(run, rows, replayed=True)


def recognition_view(row: RevenueRecognition) -> RevenueRecognitionView:
    return RevenueRecognitionView(
        period=period_label(row.period),
        cohort=period_label(row.cohort),
        element=row.element,
        deferred_minor=row.deferred_minor,
        issued_points=row.issued_points,
        expected_points=row.expected_points,
        redeemed_points=row.redeemed_points,
        ratio=row.ratio,
        recognised_to_date_minor=row.recognised_to_date_minor,
        recognised_before_minor=row.recognised_before_minor,
        recognised_in_period_minor=row.recognised_in_period_minor,
        breakage_estimate_id=row.breakage_estimate_id,
    )


def run_view(
    run: RevenuePeriod,
    rows: Sequence[RevenueRecognition],
    *,
    replayed: bool,
    preview: bool = False,
) -> RevenueRunView:
    return RevenueRunView(
        preview=preview,
        period=period_label(run.period),
        recognised_at=run.recognised_at,
        currency=run.currency,
        allocations=run.allocations,
        estimates=run.estimates,
        deferred_minor=run.deferred_minor,
        service_deferred_minor=run.service_deferred_minor,
        recognised_minor=run.recognised_minor,
        service_recognised_minor=run.service_recognised_minor,
        reversed_minor=run.reversed_minor,
        recognitions=[recognition_view(row) for row in rows],
        replayed=replayed,
    )


async def recognise_period(
    session: AsyncSession,
    program: Program,
    period: date,
    now: datetime,
    *,
    principal: Principal,
    development: DevelopmentReader = ledger_development,
    preview: bool = False,
) -> RevenueRunView:
    """The period's run (see the module); flushes in the caller's
    transaction, which commits it. ``program`` comes from a look-up within
    the principal's tenant. The period must be closed; with ``preview``,
    an ended period that is still open is run in a savepoint rolled back
    before answering (``preview`` true in the answer, nothing written; a
    period recognised already answers its stored run)."""
    connection = await session_connection(session)
    zone = await accounting_zone(connection, program.ledger_id)
    _start, end = calendar.month_bounds(period, zone)
    if end > now:
        raise PeriodNotEnded(
            f"period: {period_label(period)} has not ended in {zone}"
            " (a period is recognised once it is over)"
        )
    # Before the revenue lock: the ledger's lock only while it runs.
    await settle_apart(session, program.ledger_id)
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:key, hashtext(:program))"),
        {"key": REVENUE_LOCK, "program": str(program.id)},
    )
    stored = await _stored(session, program, period)
    if stored is not None:
        return stored
    boundary = await ledger_periods.closed_through(connection, program.ledger_id)
    if not preview and not ledger_periods.closes(boundary, end):
        raise RevenuePeriodOpen(
            f"period: {period_label(period)} is open; the final recognition runs once it is"
            f" closed (POST /programs/{program.slug}/finance/periods/{period_label(period)}"
            "/close), a preview before"
        )
    later = await session.scalar(
        select(func.max(RevenuePeriod.period)).where(
            RevenuePeriod.program_id == program.id, RevenuePeriod.period > period
        )
    )
    if later is not None:
        raise LaterPeriodRecognised(
            f"period: {period_label(later)} is recognised already; periods are recognised in"
            f" order, so {period_label(period)} can no longer be"
        )
    if not preview:
        return await _run(session, program, period, end, zone, now, principal, development)
    async with session.begin_nested() as savepoint:
        view = await _run(session, program, period, end, zone, now, principal, development)
        await savepoint.rollback()
    return msgspec.structs.replace(view, preview=True)


async def _run(
    session: AsyncSession,
    program: Program,
    period: date,
    end: datetime,
    zone: str,
    now: datetime,
    principal: Principal,
    development: DevelopmentReader,
) -> RevenueRunView:
    # First: a fee with no exchange rate refuses the run before any write.
    fees = await _partner_fees(session, program, end, zone)
    settings = await revenue_settings(session, program)
    last_day = (end.astimezone(ZoneInfo(zone)) - timedelta(days=1)).date()
    movements = await development(await session_connection(session), program.ledger_id, last_day)
    curves = breakage.redemption_curves(movements, period)
    estimates = breakage.estimate_breakage(
        curves,
        development_months=settings.development_months,
        default_breakage_rate=settings.default_breakage_rate,
    )
    stored_estimates = _store_estimates(session, program, period, estimates)
    await session.flush()
    allocated = await _allocate_sales(
        session, program, period, end, zone, settings, stored_estimates
    )
    allocated += _allocate_partner_fees(session, program, period, zone, settings, fees)
    await session.flush()
    reversals = await reverse_returns(session, program, period, end, settings.rounding)
    await session.flush()
    recognitions = await _recognise(session, program, period, settings, stored_estimates)
    new = await session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(RevenueAllocation.points_minor), 0),
            func.coalesce(func.sum(RevenueAllocation.service_minor), 0),
        ).where(RevenueAllocation.program_id == program.id, RevenueAllocation.period == period)
    )
    count, deferred, service_deferred = new.one()
    run = RevenuePeriod(
        program_id=program.id,
        period=period,
        recognised_at=now,
        currency=program.currency,
        allocations=int(count),
        estimates=len(stored_estimates),
        deferred_minor=int(deferred),
        service_deferred_minor=int(service_deferred),
        recognised_minor=sum(
            r.recognised_in_period_minor for r in recognitions if r.element == Element.POINTS
        ),
        service_recognised_minor=sum(
            r.recognised_in_period_minor for r in recognitions if r.element == Element.SERVICE
        ),
        reversed_minor=sum(r.points_minor for r in reversals),
    )
    session.add(run)
    await session.flush()
    assert allocated == run.allocations
    await audit.record(
        session,
        principal,
        "finance.revenue.recognise",
        f"program:{program.slug}:revenue:{period_label(period)}",
        {
            "allocations": run.allocations,
            "estimates": run.estimates,
            "recognised_minor": run.recognised_minor,
            "service_recognised_minor": run.service_recognised_minor,
            "reversed_minor": run.reversed_minor,
        },
    )
    return run_view(run, recognitions, replayed=False)


def _store_estimates(
    session: AsyncSession,
    program: Program,
    period: date,
    estimates: Sequence[breakage.BreakageEstimate],
) -> dict[date, BreakageEstimate]:
    rows = {}
    for estimate in estimates:
        row = BreakageEstimate(
            id=new_id(),
            program_id=program.id,
            period=period,
            cohort=estimate.cohort,
            age_months=estimate.age,
            method=estimate.method.value,
            issued_points=estimate.issued,
            redeemed_points=estimate.redeemed,
            expired_points=estimate.expired,
            development_factors=[str(f) for f in estimate.factors],
            development_months=estimate.development_months,
            default_breakage_rate=estimate.default_breakage_rate,
            expected_redemption_rate=estimate.expected_redemption_rate,
            breakage_rate=estimate.breakage_rate,
        )
        session.add(row)
        rows[estimate.cohort] = row
    return rows


async def _allocate_sales(
    session: AsyncSession,
    program: Program,
    period: date,
    end: datetime,
    zone: str,
    settings: Settings,
    estimates: dict[date, BreakageEstimate],
) -> int:
    rounding = settings.rounding
    count = 0
    after = uuid.UUID(int=0)
    while True:
        purchases = (
            await session.execute(
                select(
                    Purchase.id,
                    Purchase.posted_at,
                    Purchase.amount_minor,
                    Purchase.returned_minor,
                    Purchase.points,
                    Purchase.points_reversed,
                    Purchase.currency,
                )
                .where(
                    Purchase.program_id == program.id,
                    Purchase.points > 0,
                    Purchase.posted_at.is_not(None),
                    Purchase.posted_at < end,
                    Purchase.id > after,
                    ~select(RevenueAllocation.id)
                    .where(RevenueAllocation.purchase_id == Purchase.id)
                    .exists(),
                )
                .order_by(Purchase.id)
                .limit(PAGE)
            )
        ).all()
        if not purchases:
            return count
        made = []
        for purchase in purchases:
            cohort = calendar.month_of(purchase.posted_at, zone)
            estimate = estimates.get(cohort)
            breakage_rate = (
                estimate.breakage_rate if estimate is not None else settings.default_breakage_rate
            )
            price = max(purchase.amount_minor - purchase.returned_minor, 0)
            points = max(purchase.points - purchase.points_reversed, 0)
            split = allocate_sale(
                price_minor=price,
                points=points,
                point_value_minor=program.point_value_minor,
                breakage_rate=breakage_rate,
                rounding=rounding,
            )
            made.append(
                RevenueAllocation(
                    program_id=program.id,
                    period=period,
                    source=AllocationSource.SALE.value,
                    purchase_id=purchase.id,
                    cohort=cohort,
                    sold_at=purchase.posted_at,
                    currency=purchase.currency,
                    price_minor=price,
                    points=points,
                    point_value_minor=program.point_value_minor,
                    breakage_rate=rate(breakage_rate),
                    breakage_estimate_id=estimate.id if estimate is not None else None,
                    goods_ssp=split.goods_ssp,
                    points_ssp=split.points_ssp,
                    rounding_policy=rounding.policy.value,
                    rounding_mode=rounding.mode.value,
                    ratio_places=rounding.ratio_places,
                    ratio=split.ratio,
                    goods_minor=split.goods_minor,
                    points_minor=split.points_minor,
                    service_minor=0,
                )
            )
            count += 1
        after = purchases[-1].id
        session.add_all(made)
        await session.flush()
        # Written and never read again by the run: out of the identity map.
        for allocation in made:
            session.expunge(allocation)


@dataclass(frozen=True)
class _PartnerFee:
    """A statement line to allocate, its fee in the program's currency."""

    line: PartnerStatementLine
    period_start: datetime
    issued_at: datetime
    fee_minor: int
    #: What it was billed in; ``rate`` None: the program's own currency.
    currency: str
    rate: RateInForce | None


async def _partner_fees(
    session: AsyncSession, program: Program, end: datetime, zone: str
) -> list[_PartnerFee]:
    """The fee lines not allocated yet of the statements issued before
    ``end``, converted (see the module); ``ExchangeRateMissing`` when a
    statement's currency has no rate in force on its issue day."""
    rows = (
        await session.execute(
            select(
                PartnerStatementLine,
                PartnerStatement.id,
                PartnerStatement.period_start,
                PartnerStatement.issued_at,
                PartnerStatement.currency,
            )
            .join(PartnerStatement, PartnerStatement.id == PartnerStatementLine.statement_id)
            .where(
                PartnerStatement.program_id == program.id,
                PartnerStatement.issued_at < end,
                PartnerStatementLine.kind.in_([LineKind.ISSUED.value, LineKind.DEFERRED.value]),
                PartnerStatementLine.amount_minor != 0,
                ~select(RevenueAllocation.id)
                .where(RevenueAllocation.statement_line_id == PartnerStatementLine.id)
                .exists(),
            )
            .order_by(PartnerStatementLine.id)
        )
    ).all()
    connection = await session_connection(session)
    tz = ZoneInfo(zone)
    rates: dict[tuple[str, date], RateInForce] = {}
    fees = []
    for line, statement_id, period_start, issued_at, currency in rows:
        if currency == program.currency:
            fees.append(
                _PartnerFee(line, period_start, issued_at, line.amount_minor, currency, None)
            )
            continue
        day = issued_at.astimezone(tz).date()
        rate = rates.get((currency, day))
        if rate is None:
            try:
                rate = await rate_in_force(connection, program.id, currency, day)
            except ExchangeRateMissing as missing:
                raise ExchangeRateMissing(
                    f"{missing}, the issue day of partner statement {statement_id} (billed"
                    f" in {currency}, deferred in {program.currency}): record a rate from that"
                    f" day or earlier (POST /programs/{program.slug}/finance/exchange-rates)"
                ) from missing
            rates[(currency, day)] = rate
        fee = functional_minor(
            line.amount_minor, conversion_factor(rate.rate, currency, program.currency)
        )
        fees.append(_PartnerFee(line, period_start, issued_at, fee, currency, rate))
    return fees


def _allocate_partner_fees(
    session: AsyncSession,
    program: Program,
    period: date,
    zone: str,
    settings: Settings,
    fees: Sequence[_PartnerFee],
) -> int:
    for fee in fees:
        line = fee.line
        split = split_issuance_fee(
            fee_minor=fee.fee_minor,
            points=line.points,
            point_value_minor=program.point_value_minor,
            rounding=settings.rounding,
        )
        rate = fee.rate
        session.add(
            RevenueAllocation(
                program_id=program.id,
                period=period,
                source=AllocationSource.PARTNER_FEE.value,
                statement_line_id=line.id,
                cohort=calendar.month_of(line.business_from or fee.period_start, zone),
                sold_at=fee.issued_at,
                currency=program.currency,
                price_minor=fee.fee_minor,
                points=line.points,
                point_value_minor=program.point_value_minor,
                rounding_policy=settings.rounding.policy.value,
                rounding_mode=settings.rounding.mode.value,
                ratio_places=settings.rounding.ratio_places,
                goods_minor=0,
                points_minor=split.redemption_minor,
                service_minor=split.service_minor,
                original_currency=fee.currency if rate is not None else None,
                original_minor=line.amount_minor if rate is not None else None,
                exchange_rate=rate.rate if rate is not None else None,
                exchange_rate_date=rate.effective_on if rate is not None else None,
            )
        )
    return len(fees)


async def _recognise(
    session: AsyncSession,
    program: Program,
    period: date,
    settings: Settings,
    estimates: dict[date, BreakageEstimate],
) -> list[RevenueRecognition]:
    deferred: dict[tuple[date, Element], int] = defaultdict(int)
    for cohort, points_minor, service_minor in (
        await session.execute(
            select(
                RevenueAllocation.cohort,
                func.sum(RevenueAllocation.points_minor),
                func.sum(RevenueAllocation.service_minor),
            )
            .where(RevenueAllocation.program_id == program.id, RevenueAllocation.period <= period)
            .group_by(RevenueAllocation.cohort)
        )
    ).all():
        deferred[(cohort, Element.POINTS)] = int(points_minor)
        if service_minor:
            deferred[(cohort, Element.SERVICE)] = int(service_minor)
    for cohort, amount in (await reversed_by_cohort(session, program.id, period)).items():
        deferred[(cohort, Element.POINTS)] -= amount
    latest = (
        select(
            RevenueRecognition.cohort,
            RevenueRecognition.element,
            func.max(RevenueRecognition.period).label("period"),
        )
        .where(RevenueRecognition.program_id == program.id, RevenueRecognition.period < period)
        .group_by(RevenueRecognition.cohort, RevenueRecognition.element)
        .subquery()
    )
    before: dict[tuple[date, Element], int] = {}
    for cohort, element, to_date in (
        await session.execute(
            select(
                RevenueRecognition.cohort,
                RevenueRecognition.element,
                RevenueRecognition.recognised_to_date_minor,
            )
            .join(
                latest,
                (latest.c.cohort == RevenueRecognition.cohort)
                & (latest.c.element == RevenueRecognition.element)
                & (latest.c.period == RevenueRecognition.period),
            )
            .where(RevenueRecognition.program_id == program.id)
        )
    ).all():
        before[(cohort, Element(element))] = int(to_date)
    rows = []
    for cohort, element in sorted(set(deferred) | set(before)):
        amount = deferred.get((cohort, element), 0)
        previously = before.get((cohort, element), 0)
        estimate = estimates.get(cohort)
        if element is Element.POINTS:
            issued = estimate.issued_points if estimate is not None else 0
            redeemed = estimate.redeemed_points if estimate is not None else 0
            outcome = recognise(
                deferred_minor=amount,
                issued_points=issued,
                redeemed_points=redeemed,
                expected_redemption_rate=(
                    estimate.expected_redemption_rate if estimate is not None else Decimal(0)
                ),
                recognised_before_minor=previously,
                rounding=settings.rounding,
            )
            expected, ratio, to_date = (
                outcome.expected_points,
                outcome.ratio,
                outcome.recognised_to_date_minor,
            )
        else:
            elapsed = breakage.months_between(cohort, period) + 1
            issued = redeemed = 0
            expected = Decimal(0)
            ratio = rate(
                min(
                    Decimal(1),
                    CONTEXT.divide(Decimal(elapsed), Decimal(settings.service_life_months)),
                )
            )
            to_date = service_recognised_to_date(
                service_minor=amount,
                months_elapsed=elapsed,
                life_months=settings.service_life_months,
                rounding=settings.rounding,
            )
        row = RevenueRecognition(
            program_id=program.id,
            period=period,
            cohort=cohort,
            element=element.value,
            deferred_minor=amount,
            issued_points=issued,
            expected_points=expected,
            redeemed_points=redeemed,
            ratio=ratio,
            recognised_to_date_minor=to_date,
            recognised_before_minor=previously,
            recognised_in_period_minor=to_date - previously,
            breakage_estimate_id=(
                estimate.id if estimate is not None and element is Element.POINTS else None
            ),
        )
        session.add(row)
        rows.append(row)
    await session.flush()
    return rows
