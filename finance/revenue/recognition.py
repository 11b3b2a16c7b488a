"""Revenue recognised as points are redeemed, in proportion to the points
expected to be redeemed (IFRS 15.B46), with a cumulative catch-up:

    recognised to date = deferred x min(1, redeemed to date / expected to redeem)
    the period's revenue = recognised to date - recognised before

per cohort, where ``expected to redeem = issued x expected redemption
rate`` (the period's breakage estimate). A revised estimate moves only
this: an estimate revised up (more redemptions expected) gives a smaller
ratio, and a period's revenue can then be negative; one revised down
recognises the difference at once. The amount to date is rounded once, by
the program's rounding mode; the period's revenue is a difference of
rounded amounts, so the periods always sum to the amount to date.

A cohort nobody is expected to redeem from (expected 0) recognises all of
its deferral once anything is redeemed, none before.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from finance.revenue.rounding import CONTEXT, Rounding, rate


@dataclass(frozen=True)
class Recognition:
    deferred_minor: int
    expected_points: Decimal
    redeemed_points: int
    #: min(1, redeemed / expected), to ``RATE_PLACES`` places (for reading:
    #: the amount is computed from the exact ratio).
    ratio: Decimal
    recognised_to_date_minor: int
    recognised_before_minor: int

    @property
    def recognised_in_period_minor(self) -> int:
        return self.recognised_to_date_minor - self.recognised_before_minor


def recognise(
    *,
    deferred_minor: int,
    issued_points: int,
    redeemed_points: int,
    expected_redemption_rate: Decimal,
    recognised_before_minor: int,
    rounding: Rounding,
) -> Recognition:
    expected = CONTEXT.multiply(Decimal(max(issued_points, 0)), expected_redemption_rate)
    redeemed = Decimal(max(redeemed_points, 0))
    if expected <= 0:
        exact = Decimal(1) if redeemed > 0 else Decimal(0)
    else:
        exact = min(Decimal(1), CONTEXT.divide(redeemed, expected))
    to_date = rounding.minor(CONTEXT.multiply(Decimal(deferred_minor), exact))
    return Recognition(
        deferred_minor=deferred_minor,
        expected_points=expected,
        redeemed_points=redeemed_points,
        ratio=rate(exact),
        recognised_to_date_minor=to_date,
        recognised_before_minor=recognised_before_minor,
    )
