"""A sale's price split between the goods and the points granted with it,
by relative stand-alone selling price (IFRS 15.73-86, ASC 606-10-32-28).

- SSP(goods) = the sale's price, net of what was returned within its
  return window: the price the goods sell at without points.
- SSP(points) = value per point x the points expected to be redeemed =
  points x value x (1 - breakage rate), the breakage rate being the
  cohort's estimate when the sale is allocated (the program's default for
  a cohort with no estimate yet).
- The points' share, price x SSP(points) / (SSP(goods) + SSP(points)), is
  a contract liability; how it is rounded is the program's ``Rounding``.

An allocation, once made, is stored and never changed (the table refuses
updates): a later estimate changes only how much of it is recognised.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from finance.revenue.rounding import CONTEXT, Rounding


@dataclass(frozen=True)
class Allocation:
    goods_ssp: Decimal
    points_ssp: Decimal
    #: The ratio the points' share was computed with (exact, or rounded by
    #: the ``ratio`` policy).
    ratio: Decimal
    goods_minor: int
    points_minor: int


def allocate_sale(
    *,
    price_minor: int,
    points: int,
    point_value_minor: Decimal,
    breakage_rate: Decimal,
    rounding: Rounding,
) -> Allocation:
    """The split of one sale; goods + points == price, always."""
    if price_minor < 0 or points < 0 or point_value_minor < 0:
        raise ValueError("a sale's price, points and point value are never negative")
    if not Decimal(0) <= breakage_rate <= Decimal(1):
        raise ValueError("a breakage rate lies between 0 and 1")
    goods_ssp = Decimal(price_minor)
    points_ssp = CONTEXT.multiply(
        CONTEXT.multiply(Decimal(points), point_value_minor), CONTEXT.subtract(1, breakage_rate)
    )
    total = CONTEXT.add(goods_ssp, points_ssp)
    if total == 0 or price_minor == 0:
        return Allocation(goods_ssp, points_ssp, Decimal(0), price_minor, 0)
    ratio = rounding.ratio(CONTEXT.divide(points_ssp, total))
    points_minor = rounding.minor(CONTEXT.multiply(Decimal(price_minor), ratio))
    # Rounding cannot take the share outside [0, price]; the goods take the rest.
    points_minor = min(max(points_minor, 0), price_minor)
    return Allocation(goods_ssp, points_ssp, ratio, price_minor - points_minor, points_minor)
