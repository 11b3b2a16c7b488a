"""Earn rules: the document an operator edits, and how it prices a purchase.

Pure functions over typed inputs: no database, no clock. Money is integer
minor units; rates are ``Decimal``; points are integers, rounded once per
purchase with the rule's explicit rounding mode.
"""

from __future__ import annotations

import enum
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Annotated

import msgspec

from ledger import bounds
from ledger.bounds import NonEmpty, NonNegativeBigInt, Text50, Text100, check_moment

# msgspec bounds numbers but not Decimals: the structs check these themselves.
Rate = Decimal
Multiplier = Decimal
MULTIPLIER_MAX = Decimal(100)
Name = Annotated[Text100, NonEmpty]
MinorUnits = NonNegativeBigInt
#: A moment with its offset: a time without one is refused (it would be ambiguous).
Moment = bounds.Moment
Points = NonNegativeBigInt
#: A product category or SKU, as purchases name them.
Category = Text100
Sku = Text100
TierCode = Text50
EventName = Annotated[Text100, NonEmpty]


class Rounding(enum.StrEnum):
    DOWN = "down"
    HALF_UP = "half_up"
    UP = "up"


_ROUNDING = {
    Rounding.DOWN: ROUND_FLOOR,
    Rounding.HALF_UP: ROUND_HALF_UP,
    Rounding.UP: ROUND_CEILING,
}


class Bonus(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A time-boxed multiplier, optionally limited to categories, with an
    optional budget of extra points it may grant in all."""

    name: Name
    multiplier: Multiplier
    starts_at: Moment
    ends_at: Moment
    categories: frozenset[Category] = frozenset()
    budget_points: Points | None = None

    def __post_init__(self) -> None:
        _check_multiplier("multiplier", self.multiplier)
        check_moment("starts_at", self.starts_at)
        check_moment("ends_at", self.ends_at)
        if self.ends_at <= self.starts_at:
            raise ValueError("a bonus must end after it starts")


class EventRule(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Points for a behaviour (gym visit, survey, e-statement sign-up)."""

    points: Points
    per_member_per_day: Points | None = None
    per_member_per_month: Points | None = None
    budget_points: Points | None = None


class EarnRules(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: Points per one major currency unit spent (e.g. 1 point per 1.00 ZAR).
    points_per_unit: Rate
    rounding: Rounding = Rounding.DOWN
    min_spend_minor: MinorUnits = 0
    #: Multipliers by product category; a SKU's own multiplier wins over it.
    category_multipliers: dict[Category, Multiplier] = {}
    sku_multipliers: dict[Sku, Multiplier] = {}
    excluded_categories: frozenset[Category] = frozenset()
    excluded_skus: frozenset[Sku] = frozenset()
    #: Multipliers by tier code (e.g. {"gold": "1.5"}).
    tier_multipliers: dict[TierCode, Multiplier] = {}
    bonuses: tuple[Bonus, ...] = ()
    events: dict[EventName, EventRule] = {}

    def __post_init__(self) -> None:
        if not self.points_per_unit.is_finite() or self.points_per_unit < 0:
            raise ValueError("points_per_unit must be a number >= 0")
        for field in ("category_multipliers", "sku_multipliers", "tier_multipliers"):
            for key, value in getattr(self, field).items():
                _check_multiplier(f"{field}[{key}]", value)


def _check_multiplier(name: str, value: Decimal) -> None:
    if not value.is_finite() or not 0 <= value <= MULTIPLIER_MAX:
        raise ValueError(f"{name} must be between 0 and {MULTIPLIER_MAX}")


class Item(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    sku: Annotated[
        Sku,
        NonEmpty,
        msgspec.Meta(description="The product's SKU, as the earn rules' sku_multipliers name it."),
    ]
    category: Annotated[
        Category,
        msgspec.Meta(
            description="The product's category, as the earn rules' category_multipliers"
            " name it; empty for none."
        ),
    ] = ""
    amount_minor: Annotated[
        MinorUnits,
        msgspec.Meta(description="What the line cost, in minor units of the purchase's currency."),
    ]


class Basket(msgspec.Struct, kw_only=True, frozen=True):
    """What a purchase is priced from."""

    amount_minor: MinorUnits
    occurred_at: Moment
    items: tuple[Item, ...] = ()
    #: The currency's minor units per major unit (100 for ZAR, 1 for JPY).
    minor_per_major: int = 100


class BonusGrant(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    #: Extra points this bonus adds (before its budget is applied).
    points: int


class EarnQuote(msgspec.Struct, kw_only=True, frozen=True):
    points: int
    #: Points before bonuses (base, category/SKU and tier multipliers).
    base_points: int
    bonuses: tuple[BonusGrant, ...] = ()
    #: Why nothing was earned, if nothing was.
    reason: str | None = None


def quote_purchase(rules: EarnRules, basket: Basket, tier: str | None = None) -> EarnQuote:
    """Points a purchase earns under ``rules`` for a member of ``tier``.

    Each eligible line earns ``amount x points_per_unit x (SKU or category
    multiplier) x tier multiplier``; a bonus active at the purchase's time adds
    ``(multiplier - 1)`` of the lines it covers. Rounding happens once, on the
    base and on each bonus, so that budgets are counted in whole points.
    """
    if basket.amount_minor < rules.min_spend_minor:
        return EarnQuote(points=0, base_points=0, reason="below_minimum_spend")
    items = basket.items or (Item(sku="*", amount_minor=basket.amount_minor),)
    tier_multiplier = rules.tier_multipliers.get(tier or "", Decimal(1))
    unit = Decimal(basket.minor_per_major)
    base = Decimal(0)
    covered: dict[str, Decimal] = {}
    active = [b for b in rules.bonuses if b.starts_at <= basket.occurred_at < b.ends_at]
    for item in items:
        if item.sku in rules.excluded_skus or item.category in rules.excluded_categories:
            continue
        multiplier = rules.sku_multipliers.get(
            item.sku, rules.category_multipliers.get(item.category, Decimal(1))
        )
        line = Decimal(item.amount_minor) / unit * rules.points_per_unit * multiplier
        line *= tier_multiplier
        base += line
        for bonus in active:
            if not bonus.categories or item.category in bonus.categories:
                covered[bonus.name] = covered.get(bonus.name, Decimal(0)) + line
    mode = _ROUNDING[rules.rounding]
    base_points = int(base.to_integral_value(rounding=mode))
    grants = tuple(
        BonusGrant(
            name=bonus.name,
            points=int(
                (covered[bonus.name] * (bonus.multiplier - 1)).to_integral_value(rounding=mode)
            ),
        )
        for bonus in active
        if bonus.name in covered and bonus.multiplier > 1
    )
    return EarnQuote(
        points=base_points + sum(g.points for g in grants),
        base_points=base_points,
        bonuses=grants,
        reason=None if base_points or grants else "nothing_eligible",
    )


def points_for_return(earned: int, purchase_minor: int, returned_minor: int) -> int:
    """Points a return of ``returned_minor`` reverses, of ``earned`` for the
    whole purchase: proportional, rounded down, so that the sum over partial
    returns never exceeds what was earned and a full return reverses it all."""
    if purchase_minor <= 0:
        return earned
    returned_minor = min(returned_minor, purchase_minor)
    return earned * returned_minor // purchase_minor
