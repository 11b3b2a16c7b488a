"""Pricing a purchase under earn rules: pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards.rule_versions import parse_rules
from rewards.rules import (
    Basket,
    Bonus,
    EarnRules,
    Item,
    Rounding,
    points_for_return,
    quote_purchase,
)

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def basket(amount: int, *items: Item) -> Basket:
    return Basket(amount_minor=amount, occurred_at=NOW, items=items)


def test_base_rate_with_explicit_rounding() -> None:
    rules = EarnRules(points_per_unit=Decimal("1.5"))
    assert quote_purchase(rules, basket(999)).points == 14  # 14.985 rounded down
    half_up = msgspec.structs.replace(rules, rounding=Rounding.HALF_UP)
    assert quote_purchase(half_up, basket(999)).points == 15
    up = msgspec.structs.replace(rules, rounding=Rounding.UP)
    assert quote_purchase(up, basket(1001)).points == 16


def test_multipliers_exclusions_and_tiers() -> None:
    rules = EarnRules(
        points_per_unit=Decimal(1),
        category_multipliers={"fuel": Decimal(2)},
        sku_multipliers={"PREMIUM-95": Decimal(3)},
        excluded_categories=frozenset({"tobacco"}),
        excluded_skus=frozenset({"GIFT-CARD"}),
        tier_multipliers={"gold": Decimal("1.5")},
    )
    items = (
        Item(sku="BREAD", category="grocery", amount_minor=1000),  # 10
        Item(sku="DIESEL", category="fuel", amount_minor=1000),  # 20
        Item(sku="PREMIUM-95", category="fuel", amount_minor=1000),  # 30: SKU wins
        Item(sku="CIGS", category="tobacco", amount_minor=5000),  # excluded
        Item(sku="GIFT-CARD", category="grocery", amount_minor=5000),  # excluded
    )
    assert quote_purchase(rules, basket(13000, *items)).points == 60
    assert quote_purchase(rules, basket(13000, *items), tier="gold").points == 90
    assert quote_purchase(rules, basket(13000, *items), tier="unknown").points == 60


def test_minimum_spend() -> None:
    rules = EarnRules(points_per_unit=Decimal(1), min_spend_minor=5000)
    below = quote_purchase(rules, basket(4999))
    assert (below.points, below.reason) == (0, "below_minimum_spend")
    assert quote_purchase(rules, basket(5000)).points == 50


def test_bonus_applies_inside_its_window_only() -> None:
    bonus = Bonus(
        name="double-fuel",
        multiplier=Decimal(2),
        starts_at=NOW,
        ends_at=NOW + timedelta(days=1),
        categories=frozenset({"fuel"}),
    )
    rules = EarnRules(points_per_unit=Decimal(1), bonuses=(bonus,))
    items = (
        Item(sku="D", category="fuel", amount_minor=1000),
        Item(sku="B", category="grocery", amount_minor=1000),
    )
    inside = quote_purchase(rules, Basket(amount_minor=2000, occurred_at=NOW, items=items))
    assert (inside.points, inside.base_points) == (30, 20)
    assert [(g.name, g.points) for g in inside.bonuses] == [("double-fuel", 10)]
    at_end = Basket(amount_minor=2000, occurred_at=NOW + timedelta(days=1), items=items)
    assert quote_purchase(rules, at_end).points == 20
    before = Basket(amount_minor=2000, occurred_at=NOW - timedelta(seconds=1), items=items)
    assert quote_purchase(rules, before).points == 20


def test_rules_document_is_validated() -> None:
    with pytest.raises(msgspec.ValidationError, match="points_per_unit"):
        msgspec.convert({"points_per_unit": "-1"}, EarnRules, strict=False)
    with pytest.raises(msgspec.ValidationError, match="unknown"):
        msgspec.convert({"points_per_unit": "1", "unknown": 1}, EarnRules, strict=False)


#: A document as ``draft_rules`` has stored it since the first version (the
#: parsed rules through ``msgspec.to_builtins``, back from JSONB): every field.
STORED = {
    "points_per_unit": "1.25",
    "rounding": "half_up",
    "min_spend_minor": 500,
    "category_multipliers": {"food": "2"},
    "sku_multipliers": {"X1": "0.5"},
    "excluded_categories": ["tobacco"],
    "excluded_skus": ["GIFT"],
    "tier_multipliers": {"gold": "1.5"},
    "bonuses": [
        {
            "name": "double",
            "multiplier": "2",
            "starts_at": "2026-01-01T00:00:00Z",
            "ends_at": "2026-02-01T00:00:00Z",
            "categories": ["food"],
            "budget_points": 1000,
        }
    ],
    "events": {
        "gym": {
            "points": 50,
            "per_member_per_day": 50,
            "per_member_per_month": 200,
            "budget_points": 1000000,
        }
    },
}


def test_stored_documents_load_under_the_strict_conversion() -> None:
    rules = parse_rules(STORED)
    assert msgspec.json.decode(msgspec.json.encode(rules)) == STORED  # as it would be stored
    assert rules.events["gym"].points == 50
    assert rules.bonuses[0].starts_at == datetime(2026, 1, 1, tzinfo=UTC)


# Arithmetic alone: a deadline would time the machine (a busy one pauses a
# process longer than the default 200 ms), not the code.
@settings(deadline=None)
@given(
    earned=st.integers(0, 10**9),
    amount=st.integers(1, 10**9),
    parts=st.lists(st.integers(1, 10**6), min_size=1, max_size=10),
)
def test_partial_returns_never_reverse_more_than_earned(
    earned: int, amount: int, parts: list[int]
) -> None:
    returned = 0
    reversed_total = 0
    for part in parts:
        returned = min(amount, returned + part)
        after = points_for_return(earned, amount, returned)
        assert after >= reversed_total  # a return never gives points back
        reversed_total = after
    assert reversed_total <= earned
    assert points_for_return(earned, amount, amount) == earned
