"""A sale's split between goods and points: hand-computed cents under both
rounding policies, deterministic, always summing to the price."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from finance.revenue.allocation import allocate_sale
from finance.revenue.partner_fees import service_recognised_to_date, split_issuance_fee
from finance.revenue.rounding import Rounding, RoundingMode, RoundingPolicy

EXACT = Rounding(RoundingPolicy.EXACT, RoundingMode.HALF_EVEN)
RATIO_2 = Rounding(RoundingPolicy.RATIO, RoundingMode.HALF_EVEN, ratio_places=2)


def test_exact_policy_gives_the_hand_computed_cents() -> None:
    # Price 100.00; 1,000 points worth 1 cent each, 20% breakage: SSP 800 cents.
    # Points' share: 10000 x 800 / 10800 = 740.7407... -> 741 cents.
    split = allocate_sale(
        price_minor=10_000,
        points=1_000,
        point_value_minor=Decimal(1),
        breakage_rate=Decimal("0.2"),
        rounding=EXACT,
    )
    assert split.points_ssp == Decimal(800)
    assert (split.points_minor, split.goods_minor) == (741, 9_259)


def test_ratio_policy_rounds_the_ratio_first() -> None:
    # The same sale: the ratio 800 / 10800 = 0.074074... is 0.07 to 2 places,
    # so the points take 700 cents, where the exact policy gave 741.
    split = allocate_sale(
        price_minor=10_000,
        points=1_000,
        point_value_minor=Decimal(1),
        breakage_rate=Decimal("0.2"),
        rounding=RATIO_2,
    )
    assert split.ratio == Decimal("0.07")
    assert (split.points_minor, split.goods_minor) == (700, 9_300)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [(RoundingMode.HALF_EVEN, 2), (RoundingMode.HALF_UP, 3), (RoundingMode.DOWN, 2)],
)
def test_the_mode_decides_a_half_cent(mode: RoundingMode, expected: int) -> None:
    # Price 5 cents, points SSP 5 cents: the share is exactly 2.5 cents.
    split = allocate_sale(
        price_minor=5,
        points=5,
        point_value_minor=Decimal(1),
        breakage_rate=Decimal(0),
        rounding=Rounding(RoundingPolicy.EXACT, mode),
    )
    assert split.points_minor == expected
    assert split.goods_minor == 5 - expected


def test_a_sale_without_points_defers_nothing() -> None:
    split = allocate_sale(
        price_minor=999,
        points=0,
        point_value_minor=Decimal(1),
        breakage_rate=Decimal("0.3"),
        rounding=EXACT,
    )
    assert (split.goods_minor, split.points_minor) == (999, 0)


def test_full_breakage_gives_the_points_nothing() -> None:
    split = allocate_sale(
        price_minor=10_000,
        points=1_000,
        point_value_minor=Decimal(1),
        breakage_rate=Decimal(1),
        rounding=EXACT,
    )
    assert split.points_minor == 0


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        allocate_sale(
            price_minor=1,
            points=1,
            point_value_minor=Decimal(1),
            breakage_rate=Decimal("1.1"),
            rounding=EXACT,
        )


policies = st.builds(
    Rounding,
    st.sampled_from(list(RoundingPolicy)),
    st.sampled_from(list(RoundingMode)),
    st.integers(1, 12),
)


@given(
    price=st.integers(0, 2**62),
    points=st.integers(0, 2**62),
    value=st.decimals(min_value=0, max_value=10**6, places=6),
    breakage_rate=st.decimals(min_value=0, max_value=1, places=10),
    rounding=policies,
)
def test_allocations_sum_to_the_price_and_repeat_to_the_cent(
    price: int, points: int, value: Decimal, breakage_rate: Decimal, rounding: Rounding
) -> None:
    def split() -> tuple[int, int]:
        made = allocate_sale(
            price_minor=price,
            points=points,
            point_value_minor=value,
            breakage_rate=breakage_rate,
            rounding=rounding,
        )
        return made.goods_minor, made.points_minor

    goods, share = split()
    assert goods + share == price
    assert 0 <= share <= price
    assert split() == (goods, share)


def test_a_partner_fee_splits_into_its_points_value_and_the_rest() -> None:
    # 10,000 points sold for 150.00; each point is worth 1.2 cents when redeemed.
    split = split_issuance_fee(
        fee_minor=15_000, points=10_000, point_value_minor=Decimal("1.2"), rounding=EXACT
    )
    assert (split.redemption_minor, split.service_minor) == (12_000, 3_000)
    # A fee below the points' value is all redemption element.
    low = split_issuance_fee(
        fee_minor=5_000, points=10_000, point_value_minor=Decimal("1.2"), rounding=EXACT
    )
    assert (low.redemption_minor, low.service_minor) == (5_000, 0)
    credit = split_issuance_fee(
        fee_minor=-15_000, points=-10_000, point_value_minor=Decimal("1.2"), rounding=EXACT
    )
    assert (credit.redemption_minor, credit.service_minor) == (-12_000, -3_000)


def test_the_service_element_is_recognised_straight_line() -> None:
    def to_date(months: int) -> int:
        return service_recognised_to_date(
            service_minor=3_000, months_elapsed=months, life_months=24, rounding=EXACT
        )

    assert [to_date(m) for m in (0, 1, 7, 12, 24, 30)] == [0, 125, 875, 1_500, 3_000, 3_000]
    # 1,000 over 3 months: 333.33 -> 333, 666.67 -> 667, all of it at the end.
    thirds = [
        service_recognised_to_date(
            service_minor=1_000, months_elapsed=m, life_months=3, rounding=EXACT
        )
        for m in (1, 2, 3)
    ]
    assert thirds == [333, 667, 1_000]
