"""Points sold to partners: the coalition's issuance fee, split as
coalition operators report it (Aimia's and Air Miles' "gross billings"):

- the **redemption element**: the points' value, points x the program's
  value per point (``point_value_minor``, the redemption value in force),
  rounded by the program's mode and never more than the fee. It is a
  contract liability of the cohort the points were issued in, recognised
  as that cohort's points are redeemed, exactly like the points' share of
  a sale;
- the **service element**: the rest of the fee (marketing, the network,
  the data the coalition provides), recognised straight-line over the
  points' estimated life (``service_life_months``, a setting), from the
  month the points were issued: ``fee x min(1, months elapsed / life)``
  to date, the issue month counting as the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from finance.revenue.rounding import CONTEXT, Rounding


@dataclass(frozen=True)
class FeeSplit:
    redemption_minor: int
    service_minor: int


def split_issuance_fee(
    *, fee_minor: int, points: int, point_value_minor: Decimal, rounding: Rounding
) -> FeeSplit:
    """The fee's two elements; they sum to the fee. A negative fee (a
    credit note) splits the same way, with both elements negative."""
    sign = -1 if fee_minor < 0 else 1
    fee, points = abs(fee_minor), abs(points)
    value = rounding.minor(CONTEXT.multiply(Decimal(points), point_value_minor))
    redemption = min(max(value, 0), fee)
    return FeeSplit(sign * redemption, sign * (fee - redemption))


def service_recognised_to_date(
    *, service_minor: int, months_elapsed: int, life_months: int, rounding: Rounding
) -> int:
    """What the straight-line recognition of a service element has
    recognised after ``months_elapsed`` months (the issue month is month 1)."""
    if months_elapsed <= 0:
        return 0
    if months_elapsed >= life_months:
        return service_minor
    share = CONTEXT.divide(Decimal(months_elapsed), Decimal(life_months))
    return rounding.minor(CONTEXT.multiply(Decimal(service_minor), share))
