"""Redemption curves per cohort: breakage's own
(``finance.revenue.breakage.redemption_curves`` over
``ledger.lots.cohort_development``), with each cumulative redemption also as
a share of the points issued into the cohort."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.models import Program
from core.principal import Principal
from finance.analytics.schemas import CohortCurveView, RedemptionCurves
from finance.analytics.valuation import RATIO_PLACES
from finance.lot_settling import settle_apart
from finance.report_dates import Period
from finance.revenue import breakage
from ledger import lots
from rewards.connections import session_connection


def _share(points: int, issued: int) -> str:
    return str((Decimal(points) / Decimal(issued)).quantize(RATIO_PLACES, ROUND_HALF_EVEN))


async def redemption_curves(
    session: AsyncSession, program: Program, period: Period, *, principal: Principal
) -> RedemptionCurves:
    """Every cohort's curve as of the end of the month ``period``."""
    if not principal.sees_program(program.id):
        raise NotFound(f"no program {program.slug!r}")
    await settle_apart(session, program.ledger_id)
    movements = await lots.cohort_development(
        await session_connection(session), ledger=program.ledger_id, through=period.last_day
    )
    curves = breakage.redemption_curves(movements, period.first_day)
    return RedemptionCurves(
        period=period.first_day.strftime("%Y-%m"),
        cohorts=[
            CohortCurveView(
                cohort=c.cohort,
                age=c.age,
                issued=c.issued,
                expired=c.expired,
                redeemed=list(c.redeemed),
                redeemed_share=[_share(r, c.issued) for r in c.redeemed] if c.issued else [],
            )
            for c in curves
        ],
    )
