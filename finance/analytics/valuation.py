"""Points valued in money and ratios, with one explicit rounding: half to
even, to the minor unit (money) or to ``RATIO_PLACES`` places (ratios)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

RATIO_PLACES = Decimal("0.000001")


def points_value_minor(points: int, point_value_minor: Decimal) -> int:
    return int((Decimal(points) * point_value_minor).quantize(Decimal(1), ROUND_HALF_EVEN))


def ratio(numerator: int, denominator: int) -> str | None:
    """``numerator / denominator`` to six places; None when it is 0."""
    if denominator == 0:
        return None
    return str((Decimal(numerator) / Decimal(denominator)).quantize(RATIO_PLACES, ROUND_HALF_EVEN))
