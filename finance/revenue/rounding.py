"""The rounding policy of a program's revenue: explicit, so that the same
inputs always give the same cents.

- ``exact``: the points' share is the exact product price x SSP(points) /
  (SSP(goods) + SSP(points)), rounded once to minor units with the policy's
  mode; the goods take the remainder, so the two always sum to the price.
- ``ratio``: the allocation ratio SSP(points) / (SSP(goods) + SSP(points))
  is first rounded to ``ratio_places`` decimal places (with the same mode),
  as some publications state it ("12.35 % of the price is deferred"); the
  points' share is then price x that ratio, rounded to minor units, and the
  goods again take the remainder.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Context, Decimal

#: Every computation runs in this context: 40 significant digits hold a
#: bigint price times a rate of 10 places exactly, whatever the caller's
#: own decimal context says.
CONTEXT = Context(prec=40)
#: Rates (breakage, redemption, recognition ratios) are stored to this many places.
RATE_PLACES = 10
_RATE_QUANTUM = Decimal(1).scaleb(-RATE_PLACES)
_ONE = Decimal(1)


class RoundingPolicy(enum.StrEnum):
    EXACT = "exact"
    RATIO = "ratio"


class RoundingMode(enum.StrEnum):
    HALF_EVEN = "half_even"
    HALF_UP = "half_up"
    DOWN = "down"


_MODES = {
    RoundingMode.HALF_EVEN: ROUND_HALF_EVEN,
    RoundingMode.HALF_UP: ROUND_HALF_UP,
    RoundingMode.DOWN: ROUND_DOWN,
}


@dataclass(frozen=True)
class Rounding:
    policy: RoundingPolicy = RoundingPolicy.EXACT
    mode: RoundingMode = RoundingMode.HALF_EVEN
    #: Decimal places of the allocation ratio under ``ratio``.
    ratio_places: int = 4

    def minor(self, amount: Decimal) -> int:
        """Exact minor units of an exact amount, rounded once by the mode."""
        return int(amount.quantize(_ONE, rounding=_MODES[self.mode], context=CONTEXT))

    def ratio(self, ratio: Decimal) -> Decimal:
        """The allocation ratio as the policy uses it: exact, or rounded."""
        if self.policy is RoundingPolicy.EXACT:
            return ratio
        quantum = Decimal(1).scaleb(-self.ratio_places)
        return ratio.quantize(quantum, rounding=_MODES[self.mode], context=CONTEXT)


def rate(value: Decimal) -> Decimal:
    """A rate as stored: ``RATE_PLACES`` places, half-even (the mode of the
    estimates themselves, whatever the allocation's policy)."""
    return value.quantize(_RATE_QUANTUM, rounding=ROUND_HALF_EVEN, context=CONTEXT)
