"""Returns after allocation (IFRS 15): a sale returned after its price was
allocated reverses the points' share of the returned part, off the
contract liability of its cohort, and the cohort's catch-up on the reduced
deferral reverses the revenue recognised for those points. A return the
allocation had netted reverses nothing; a return after a period's end
counts in the next. Every figure is computed by hand in the comments.

The program: a point is worth 1 cent, default breakage 0.5, development
over 2 months, rounding exact half-even. Three January sales:

- A: 10,000 for 1,000 points. SSP(points) = 1,000 x 1 x 0.5 = 500;
  share = 10,000 x 500 / 10,500 = 476.19 -> 476.
- B: 2,000 for 300 points. SSP = 150; share = 2,000 x 150 / 2,150 =
  139.53 -> 140.
- C: 4,000 for 400 points, 1,000 returned before its allocation (300
  points left): price 3,000, SSP = 150; share = 3,000 x 150 / 3,150 =
  142.86 -> 143.

January deferred 476 + 140 + 143 = 759. Cohort January: 1,600 points
issued (1,000 + 300 + 300), 100 redeemed in January.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from core.models import Program
from finance.revenue.models import RevenueReturnReversal
from finance.revenue.returns import period_reversals, reversed_to_date
from finance.revenue.rounding import Rounding, RoundingMode
from finance.revenue.schemas import RevenueRunView
from ledger.lots import CohortMonth
from rewards.connections import session_connection
from rewards.models import Purchase, PurchaseReturn
from tests.finance.revenue_helpers import Cohorts, add_member, add_sale, at, month
from tests.finance.test_revenue_runs import program as program
from tests.finance.test_revenue_runs import run


async def _return(
    session: AsyncSession,
    purchase: Purchase,
    return_id: str,
    amount: int,
    points: int,
    when: datetime,
) -> None:
    """A return as ``rewards.returns`` records it, dated ``when``."""
    purchase.returned_minor += amount
    purchase.points_reversed += points
    session.add(
        PurchaseReturn(
            purchase_id=purchase.id,
            return_id=return_id,
            amount_minor=amount,
            points_reversed=points,
            created_at=when,
            updated_at=when,
        )
    )
    await session.commit()


def _returned(cohorts: Cohorts, in_month: int, points: int) -> None:
    """Points a return took back from the cohort's lots (code 2)."""
    cohorts.moves.append(
        CohortMonth(month(1), month(in_month), TransferCode.RETURN_REVERSAL, -points)
    )


def _points(view: RevenueRunView) -> tuple[int, int, int]:
    (row,) = [r for r in view.recognitions if r.element == "points"]
    return row.deferred_minor, row.recognised_to_date_minor, row.recognised_in_period_minor


async def _reversals(
    session: AsyncSession, program: Program
) -> dict[tuple[str, str], tuple[int, int, int]]:
    found = {}
    for row in (
        await session.execute(
            select(RevenueReturnReversal, Purchase.order_id)
            .join(Purchase, Purchase.id == RevenueReturnReversal.purchase_id)
            .where(RevenueReturnReversal.program_id == program.id)
        )
    ).all():
        reversal, order = row
        found[(f"{reversal.period:%Y-%m}", order)] = (
            reversal.returned_minor,
            reversal.reversed_to_date_minor,
            reversal.points_minor,
        )
    return found


async def test_a_return_after_allocation_reverses_its_points_share(
    session: AsyncSession, program: Program
) -> None:
    member = await add_member(session, program)
    a = await add_sale(session, program, member, price=10_000, points=1_000, posted_at=at(1))
    b = await add_sale(session, program, member, price=2_000, points=300, posted_at=at(1))
    c = await add_sale(
        session, program, member, price=4_000, points=400, posted_at=at(1),
        returned=1_000, reversed_points=100,
    )  # fmt: skip
    session.add(
        PurchaseReturn(
            purchase_id=c.id, return_id="C-R1", amount_minor=1_000, points_reversed=100,
            created_at=at(1, 20), updated_at=at(1, 20),
        )
    )  # fmt: skip
    await session.commit()
    orders = {a.order_id: "A", b.order_id: "B", c.order_id: "C"}
    cohorts = Cohorts().earn(1, 1_600).redeem(1, 1, 100)

    # January: expected 1,600 x 0.5 = 800, ratio 100 / 800; 759 x 0.125 = 94.875 -> 95.
    january = await run(session, program, 1, cohorts)
    assert (january.deferred_minor, january.reversed_minor) == (759, 0)
    assert _points(january) == (759, 95, 95)

    # February: A returned whole (its 1,000 points back), B a quarter (500
    # of 2,000: 75 points). Reversed: A's whole share 476; B's 140 x 500 /
    # 2,000 = 35; C's return was netted by its allocation: nothing. 511.
    await _return(session, a, "A-R1", 10_000, 1_000, at(2, 10))
    await _return(session, b, "B-R1", 500, 75, at(2, 11))
    _returned(cohorts, 2, 1_000)
    _returned(cohorts, 2, 75)
    # B again after February's end: March's.
    await _return(session, b, "B-R2", 300, 45, at(3, 2))
    _returned(cohorts, 3, 45)
    # Deferred 759 - 511 = 248; issued 1,600 - 1,075 = 525, expected 262.5;
    # 248 x 100 / 262.5 = 94.48 -> 94: February's revenue 94 - 95 = -1, the
    # revenue recognised for the returned points reversed.
    february = await run(session, program, 2, cohorts)
    assert (february.deferred_minor, february.reversed_minor) == (0, 511)
    assert _points(february) == (248, 94, -1)

    # March: B's 800 returned in all, 140 x 800 / 2,000 = 56, less 35: 21.
    # Deferred 248 - 21 = 227; the cohort is mature (age 2): expected = what
    # it redeemed, so all of it is recognised: 227 - 94 = 133.
    march = await run(session, program, 3, cohorts)
    assert march.reversed_minor == 21
    assert _points(march) == (227, 227, 133)

    found = {
        (period, orders[order]): figures
        for (period, order), figures in (await _reversals(session, program)).items()
    }
    assert found == {
        ("2025-02", "A"): (10_000, 476, 476),
        ("2025-02", "B"): (500, 35, 35),
        ("2025-03", "B"): (800, 56, 21),
    }
    # What the journal's deferral lines take (liability debited, sales revenue credited).
    connection = await session_connection(session)
    assert await period_reversals(connection, program.id, month(2)) == [(month(1), 511)]
    assert await period_reversals(connection, program.id, month(3)) == [(month(1), 21)]
    # Stored once: a replay reverses nothing again.
    again = await run(session, program, 3, cohorts)
    assert again.replayed and again.reversed_minor == 21


def test_the_share_of_a_returned_part_is_rounded_once_and_whole_when_all_returns() -> None:
    half_even = Rounding()
    # 143 x 1,500 / 3,000 = 71.5 -> 72 (half to even); down: 71.
    assert (
        reversed_to_date(
            price_minor=3_000, points_minor=143, returned_after_minor=1_500, rounding=half_even
        )
        == 72
    )
    assert reversed_to_date(
        price_minor=3_000, points_minor=143, returned_after_minor=1_500,
        rounding=Rounding(mode=RoundingMode.DOWN),
    ) == 71  # fmt: skip
    assert (
        reversed_to_date(
            price_minor=3_000, points_minor=143, returned_after_minor=3_000, rounding=half_even
        )
        == 143
    )
    assert (
        reversed_to_date(
            price_minor=3_000, points_minor=143, returned_after_minor=0, rounding=half_even
        )
        == 0
    )
