"""Recognition with a cumulative catch-up, by hand: a cohort's deferral
recognised as its points are redeemed, through an estimate revised up (a
negative period) and one revised down."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from finance.revenue.recognition import recognise
from finance.revenue.rounding import Rounding, RoundingMode, RoundingPolicy

EXACT = Rounding(RoundingPolicy.EXACT, RoundingMode.HALF_EVEN)


def test_catch_up_through_estimates_revised_up_and_down() -> None:
    # 1,200.00 deferred for a cohort of 1,000 points; each period's expected
    # redemption rate and points redeemed to date, and what is recognised:
    periods = [
        # rate, redeemed -> ratio, to date, in the period
        (Decimal("0.4"), 200, Decimal("0.5"), 600, 600),
        # Revised up: 800 expected, 300 of them redeemed: 0.375 -> 450, a reversal.
        (Decimal("0.8"), 300, Decimal("0.375"), 450, -150),
        # Revised down: 500 expected, 350 redeemed: 0.7 -> 840.
        (Decimal("0.5"), 350, Decimal("0.7"), 840, 390),
        # Everything expected is redeemed: all of it.
        (Decimal("0.5"), 500, Decimal(1), 1_200, 360),
        # More than expected changes nothing: never more than the deferral.
        (Decimal("0.5"), 700, Decimal(1), 1_200, 0),
    ]
    before = 0
    for expected_rate, redeemed, ratio, to_date, in_period in periods:
        outcome = recognise(
            deferred_minor=120_000 // 100,
            issued_points=1_000,
            redeemed_points=redeemed,
            expected_redemption_rate=expected_rate,
            recognised_before_minor=before,
            rounding=EXACT,
        )
        assert (outcome.ratio, outcome.recognised_to_date_minor) == (ratio, to_date)
        assert outcome.recognised_in_period_minor == in_period
        before = outcome.recognised_to_date_minor


def test_the_amount_to_date_is_rounded_once_by_the_mode() -> None:
    def to_date(mode: RoundingMode, deferred: int) -> int:
        return recognise(
            deferred_minor=deferred,
            issued_points=3,
            redeemed_points=1,
            expected_redemption_rate=Decimal(1),
            recognised_before_minor=0,
            rounding=Rounding(RoundingPolicy.EXACT, mode),
        ).recognised_to_date_minor

    assert to_date(RoundingMode.HALF_EVEN, 1_000) == 333
    assert to_date(RoundingMode.HALF_UP, 1_001) == 334  # 333.67
    assert to_date(RoundingMode.DOWN, 1_001) == 333


def test_a_cohort_nobody_is_expected_to_redeem_from() -> None:
    def outcome(redeemed: int) -> int:
        return recognise(
            deferred_minor=500,
            issued_points=1_000,
            redeemed_points=redeemed,
            expected_redemption_rate=Decimal(0),
            recognised_before_minor=0,
            rounding=EXACT,
        ).recognised_to_date_minor

    assert (outcome(0), outcome(1)) == (0, 500)


@given(
    deferred=st.integers(0, 2**62),
    issued=st.integers(1, 2**62),
    redeemed=st.lists(st.integers(0, 2**62), min_size=1, max_size=8),
    rates=st.lists(st.decimals(min_value=0, max_value=1, places=10), min_size=8, max_size=8),
)
def test_periods_sum_to_the_amount_to_date_and_never_pass_the_deferral(
    deferred: int, issued: int, redeemed: list[int], rates: list[Decimal]
) -> None:
    before = total = 0
    for n, points in enumerate(sorted(redeemed)):
        outcome = recognise(
            deferred_minor=deferred,
            issued_points=issued,
            redeemed_points=points,
            expected_redemption_rate=rates[n],
            recognised_before_minor=before,
            rounding=EXACT,
        )
        assert 0 <= outcome.recognised_to_date_minor <= deferred
        total += outcome.recognised_in_period_minor
        before = outcome.recognised_to_date_minor
        assert total == before
