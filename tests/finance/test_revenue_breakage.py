"""Breakage per cohort by the chain ladder, on synthetic cohorts whose
estimates are computed by hand here."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from core.codes import TransferCode
from finance.revenue.breakage import (
    Method,
    development_factors,
    estimate_breakage,
    redemption_curves,
)
from finance.revenue.rounding import rate

EARN = TransferCode.PURCHASE_EARN
REDEEM = TransferCode.CATALOG_REDEMPTION


@dataclass(frozen=True)
class Moved:
    cohort: date
    month: date
    code: int
    points: int


def month(n: int) -> date:
    """Month n of 2026 (1 = January)."""
    return date(2026 + (n - 1) // 12, (n - 1) % 12 + 1, 1)


def cohort(n: int, issued: int, redeemed_by_age: list[int]) -> list[Moved]:
    """A cohort earned in month n, with its redemptions of each month (not cumulative)."""
    moves = [Moved(month(n), month(n), EARN, issued)]
    moves += [
        Moved(month(n), month(n + age), REDEEM, -points)
        for age, points in enumerate(redeemed_by_age)
        if points
    ]
    return moves


#: Cumulative redeemed by age: January 100, 300, 450, 500; February 300,
#: 600, 900; March 100, 250; April 50.
HISTORY = (
    cohort(1, 1000, [100, 200, 150, 50])
    + cohort(2, 2000, [300, 300, 300])
    + cohort(3, 1000, [100, 150])
    + cohort(4, 500, [50])
)


def test_curves_cumulate_redemptions_by_age() -> None:
    curves = redemption_curves(HISTORY, month(4))
    assert [(c.cohort, c.age, c.issued, c.redeemed) for c in curves] == [
        (month(1), 3, 1000, (100, 300, 450, 500)),
        (month(2), 2, 2000, (300, 600, 900)),
        (month(3), 1, 1000, (100, 250)),
        (month(4), 0, 500, (50,)),
    ]


def test_development_factors_are_volume_weighted_over_older_cohorts() -> None:
    factors = development_factors(redemption_curves(HISTORY, month(4)), 3)
    # f0 over Jan, Feb, Mar: (300 + 600 + 250) / (100 + 300 + 100) = 2.3
    # f1 over Jan, Feb: (450 + 900) / (300 + 600) = 1.5; f2 over Jan: 500 / 450.
    assert factors == [Decimal("2.3"), Decimal("1.5"), rate(Decimal(500) / Decimal(450))]


def test_each_cohort_is_developed_to_its_ultimate_rate() -> None:
    estimates = estimate_breakage(
        redemption_curves(HISTORY, month(4)),
        development_months=3,
        default_breakage_rate=Decimal("0.3"),
    )
    f2 = rate(Decimal(500) / Decimal(450))
    expected = {
        month(1): (Method.MATURE, Decimal("0.5")),
        month(2): (Method.CHAIN_LADDER, rate(900 * f2 / 2000)),
        month(3): (Method.CHAIN_LADDER, rate(250 * Decimal("1.5") * f2 / 1000)),
        month(4): (Method.CHAIN_LADDER, rate(50 * Decimal("2.3") * Decimal("1.5") * f2 / 500)),
    }
    assert {e.cohort: (e.method, e.expected_redemption_rate) for e in estimates} == expected
    # By hand: 0.5, 0.5 (0.49999999999...), 0.41666..., 0.38333...
    assert expected[month(3)][1] == Decimal("0.4166666667")
    assert expected[month(4)][1] == Decimal("0.3833333333")
    assert estimates[0].breakage_rate == Decimal("0.5")


def test_a_cohort_without_history_takes_the_default_rate() -> None:
    # One young cohort: nobody older shows how it develops.
    estimates = estimate_breakage(
        redemption_curves(cohort(1, 1000, [100]), month(1)),
        development_months=12,
        default_breakage_rate=Decimal("0.25"),
    )
    [only] = estimates
    assert (only.method, only.expected_redemption_rate) == (Method.DEFAULT, Decimal("0.75"))


def test_the_default_never_goes_below_what_is_redeemed_nor_above_what_is_left() -> None:
    redeemed = cohort(1, 1000, [900])
    [high] = estimate_breakage(
        redemption_curves(redeemed, month(1)),
        development_months=6,
        default_breakage_rate=Decimal("0.5"),
    )
    assert high.expected_redemption_rate == Decimal("0.9")
    expired = [*cohort(1, 1000, [100]), Moved(month(1), month(1), TransferCode.EXPIRY, -600)]
    [capped] = estimate_breakage(
        redemption_curves(expired, month(1)),
        development_months=6,
        default_breakage_rate=Decimal("0.1"),
    )
    # 600 expired can never be redeemed: at most 400 of 1,000.
    assert (capped.expired, capped.expected_redemption_rate) == (600, Decimal("0.4"))


def test_expired_cancelled_and_gifted_points_count_as_they_should() -> None:
    moves = [
        *cohort(1, 1000, [200]),
        Moved(month(1), month(2), TransferCode.REDEMPTION_CANCELLATION, 50),
        Moved(month(1), month(2), TransferCode.EXPIRY, -100),
        Moved(month(1), month(3), TransferCode.EXPIRY_REINSTATEMENT, 40),
        Moved(month(1), month(2), TransferCode.GIFT, -30),
        Moved(month(1), month(2), TransferCode.GIFT, 30),
        Moved(month(1), month(2), TransferCode.RETURN_REVERSAL, -100),
        # After the period: left out.
        Moved(month(1), month(4), REDEEM, -500),
    ]
    [curve] = redemption_curves(moves, month(3))
    assert (curve.issued, curve.redeemed, curve.expired) == (900, (200, 150, 150), 60)


def test_a_re_estimate_revises_a_cohort_down_then_up() -> None:
    """Cohort 2's expected redemption rate as of months 2, 3 and 4, each
    from the history known then (the horizon is 2 months)."""
    by_period = {
        2: cohort(1, 1000, [100, 100]) + cohort(2, 1000, [100]),
        3: cohort(1, 1000, [100, 100, 300]) + cohort(2, 1000, [100, 50]),
        4: cohort(1, 1000, [100, 100, 300]) + cohort(2, 1000, [100, 50, 350]),
    }

    def estimate_of_cohort_2(period: int) -> tuple[Method, Decimal]:
        estimates = estimate_breakage(
            redemption_curves(by_period[period], month(period)),
            development_months=2,
            default_breakage_rate=Decimal("0.5"),
        )
        found = {e.cohort: e for e in estimates}[month(2)]
        return found.method, found.expected_redemption_rate

    # Month 2: f0 = 200 / 100, but nobody is 2 months old yet (f1 undefined): the default.
    assert estimate_of_cohort_2(2) == (Method.DEFAULT, Decimal("0.5"))
    # Month 3: f1 = 500 / 200 = 2.5 from cohort 1; 150 x 2.5 / 1000: revised down.
    assert estimate_of_cohort_2(3) == (Method.CHAIN_LADDER, Decimal("0.375"))
    # Month 4: cohort 2 is mature, 500 of 1000 redeemed: revised up.
    assert estimate_of_cohort_2(4) == (Method.MATURE, Decimal("0.5"))
