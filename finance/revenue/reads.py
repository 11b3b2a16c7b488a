"""Reads of revenue deferral for the API and the command line: the
allocations (paged, newest first), a period's breakage estimates and a
period's recognition run. ``program`` always comes from a look-up within
the principal's tenant, and every query is keyed by its id."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.models import Program
from core.pagination import decode_cursor, page_of
from finance.exchange_rates import plain_rate
from finance.revenue.models import (
    BreakageEstimate,
    RevenueAllocation,
    RevenuePeriod,
    RevenueRecognition,
)
from finance.revenue.runs import run_view
from finance.revenue.schemas import (
    BreakageEstimateView,
    RevenueAllocationPage,
    RevenueAllocationView,
    RevenueRunView,
    period_label,
)


def allocation_view(row: RevenueAllocation) -> RevenueAllocationView:
    return RevenueAllocationView(
        id=row.id,
        period=period_label(row.period),
        source=row.source,
        purchase_id=row.purchase_id,
        statement_line_id=row.statement_line_id,
        cohort=period_label(row.cohort),
        sold_at=row.sold_at,
        currency=row.currency,
        price_minor=row.price_minor,
        points=row.points,
        point_value_minor=row.point_value_minor,
        breakage_rate=row.breakage_rate,
        breakage_estimate_id=row.breakage_estimate_id,
        goods_ssp=row.goods_ssp,
        points_ssp=row.points_ssp,
        rounding_policy=row.rounding_policy,
        rounding_mode=row.rounding_mode,
        ratio_places=row.ratio_places,
        ratio=row.ratio,
        goods_minor=row.goods_minor,
        points_minor=row.points_minor,
        service_minor=row.service_minor,
        original_currency=row.original_currency,
        original_minor=row.original_minor,
        exchange_rate=plain_rate(row.exchange_rate) if row.exchange_rate is not None else None,
        exchange_rate_date=row.exchange_rate_date,
    )


async def list_allocations(
    session: AsyncSession,
    program: Program,
    *,
    limit: int,
    cursor: str | None,
    period: date | None = None,
) -> RevenueAllocationPage:
    query = select(RevenueAllocation).where(RevenueAllocation.program_id == program.id)
    if period is not None:
        query = query.where(RevenueAllocation.period == period)
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(RevenueAllocation.id < after)
    rows = list(await session.scalars(query.order_by(RevenueAllocation.id.desc()).limit(limit + 1)))
    page = page_of([allocation_view(r) for r in rows], [r.id for r in rows], limit)
    return RevenueAllocationPage(items=page.items, next_cursor=page.next_cursor)


def estimate_view(row: BreakageEstimate) -> BreakageEstimateView:
    return BreakageEstimateView(
        id=row.id,
        period=period_label(row.period),
        cohort=period_label(row.cohort),
        age_months=row.age_months,
        method=row.method,
        issued_points=row.issued_points,
        redeemed_points=row.redeemed_points,
        expired_points=row.expired_points,
        development_factors=list(row.development_factors),
        development_months=row.development_months,
        default_breakage_rate=row.default_breakage_rate,
        expected_redemption_rate=row.expected_redemption_rate,
        breakage_rate=row.breakage_rate,
    )


async def breakage_estimates(
    session: AsyncSession, program: Program, period: date | None
) -> list[BreakageEstimateView]:
    """The estimates of ``period`` (the latest estimated one when None),
    oldest cohort first; none before the first run."""
    if period is None:
        period = await session.scalar(
            select(func.max(BreakageEstimate.period)).where(
                BreakageEstimate.program_id == program.id
            )
        )
        if period is None:
            return []
    rows = await session.scalars(
        select(BreakageEstimate)
        .where(BreakageEstimate.program_id == program.id, BreakageEstimate.period == period)
        .order_by(BreakageEstimate.cohort)
    )
    return [estimate_view(row) for row in rows]


async def recognition_run(session: AsyncSession, program: Program, period: date) -> RevenueRunView:
    run = await session.scalar(
        select(RevenuePeriod).where(
            RevenuePeriod.program_id == program.id, RevenuePeriod.period == period
        )
    )
    if run is None:
        raise NotFound(f"period {period_label(period)} of {program.slug!r} is not recognised yet")
    rows = await session.scalars(
        select(RevenueRecognition)
        .where(RevenueRecognition.program_id == program.id, RevenueRecognition.period == period)
        .order_by(RevenueRecognition.cohort, RevenueRecognition.element)
    )
    return run_view(run, list(rows), replayed=False)
