"""Returns after allocation (IFRS 15.B20-B27): a sale returned after its
price was allocated reverses the points' share of the returned part. The
contract liability of the allocation's cohort is reduced (back to sales
revenue, which the sale's own refund then reverses with the goods), and
the cohort's cumulative catch-up, computed on the reduced deferral,
reverses whatever revenue had been recognised for those points.

A return is a ``purchase_returns`` row (the operator's return, recorded by
``rewards.returns`` with the ``RETURN_REVERSAL`` transfer, code 2, that
takes its points back from the wallet), dated when it was recorded. An
allocation nets every return recorded before its run; what a run of period
P reverses is, per allocated sale, cumulatively:

    returned after allocation = allocated price - (amount - returned through P's end)
    reversed to date          = allocated points' share x returned after / allocated price

(rounded once by the program's mode; clamped between nothing and the whole
price, so a return the allocation had already netted reverses nothing),
less what earlier periods reversed. A fully returned sale reverses its
whole points' share, exactly.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from finance.revenue.models import RevenueReturnReversal
from finance.revenue.rounding import CONTEXT, Rounding
from ledger.liability_reads import Fetches

# Allocated sales with returns recorded before the period's end, and what
# earlier periods reversed of each.
_RETURNED = text("""
    SELECT a.id AS allocation_id, a.purchase_id, a.cohort, a.price_minor, a.points_minor,
        p.amount_minor,
        sum(r.amount_minor)::bigint AS returned_minor,
        array_agg(r.return_id ORDER BY r.created_at, r.return_id) AS return_ids,
        coalesce((
            SELECT v.reversed_to_date_minor FROM revenue_return_reversals v
            WHERE v.program_id = a.program_id AND v.purchase_id = a.purchase_id
                AND v.period < :period
            ORDER BY v.period DESC LIMIT 1), 0) AS reversed_before
    FROM revenue_allocations a
    JOIN purchases p ON p.id = a.purchase_id
    JOIN purchase_returns r ON r.purchase_id = a.purchase_id AND r.created_at < :end
    WHERE a.program_id = :program AND a.source = 'sale'
    GROUP BY a.id, p.amount_minor
    ORDER BY a.purchase_id""")


def reversed_to_date(
    *, price_minor: int, points_minor: int, returned_after_minor: int, rounding: Rounding
) -> int:
    """The points' share of ``returned_after_minor`` of an allocated price."""
    if price_minor <= 0 or returned_after_minor <= 0:
        return 0
    returned = min(returned_after_minor, price_minor)
    if returned == price_minor:
        return points_minor
    return rounding.minor(
        CONTEXT.divide(Decimal(points_minor) * Decimal(returned), Decimal(price_minor))
    )


async def reverse_returns(
    session: AsyncSession, program: Program, period: date, end: datetime, rounding: Rounding
) -> list[RevenueReturnReversal]:
    """The period's reversals (added to the session; a sale whose reversal
    did not move gets no row)."""
    made = []
    for row in (
        await session.execute(_RETURNED, {"program": program.id, "period": period, "end": end})
    ).all():
        after = max(
            0, min(row.price_minor, row.price_minor - (row.amount_minor - row.returned_minor))
        )
        to_date = reversed_to_date(
            price_minor=row.price_minor,
            points_minor=row.points_minor,
            returned_after_minor=after,
            rounding=rounding,
        )
        before = int(row.reversed_before)
        if to_date == before:
            continue
        made.append(
            RevenueReturnReversal(
                program_id=program.id,
                period=period,
                purchase_id=row.purchase_id,
                allocation_id=row.allocation_id,
                cohort=row.cohort,
                allocated_price_minor=row.price_minor,
                allocated_points_minor=row.points_minor,
                returned_minor=after,
                reversed_to_date_minor=to_date,
                reversed_before_minor=before,
                points_minor=to_date - before,
                return_ids=list(row.return_ids),
            )
        )
    session.add_all(made)
    return made


async def reversed_by_cohort(
    session: AsyncSession, program_id: uuid.UUID, through: date
) -> dict[date, int]:
    """Contract liability reversed by returns to date, per cohort."""
    sums: dict[date, int] = defaultdict(int)
    for cohort, amount in (
        await session.execute(
            select(RevenueReturnReversal.cohort, func.sum(RevenueReturnReversal.points_minor))
            .where(
                RevenueReturnReversal.program_id == program_id,
                RevenueReturnReversal.period <= through,
            )
            .group_by(RevenueReturnReversal.cohort)
        )
    ).all():
        sums[cohort] = int(amount)
    return sums


_PERIOD_REVERSALS = """
SELECT cohort, sum(points_minor)::bigint AS amount
FROM revenue_return_reversals WHERE program_id = $1 AND period = $2
GROUP BY cohort ORDER BY cohort
"""


async def period_reversals(
    db: Fetches, program_id: uuid.UUID, period: date
) -> list[tuple[date, int]]:
    """The period's reversals per cohort, oldest first: the journal's
    ``revenue`` / ``deferral`` lines debiting the contract liability and
    crediting sales revenue (drill-down ``revenue_return_reversals
    period=<YYYY-MM> cohort=<YYYY-MM>``)."""
    rows = await db.fetch(_PERIOD_REVERSALS, program_id, period)
    return [(row["cohort"], int(row["amount"])) for row in rows]
