"""Breakage per cohort (the month points were earned), estimated from the
program's own redemption curves by the chain-ladder (development factor)
method, as actuaries estimate claims still to come.

Inputs, for every cohort as of the end of a period: the points issued into
it (net of returns and reversals), the points of it redeemed, cumulated by
age in months (0 = the month it was earned), and the points of it expired.
Expired points count as not redeemed; reinstated points are expired no
more; a cancelled redemption is redeemed no more; a gift moves points
between wallets inside their cohort and changes nothing.

The method (``estimate_breakage``):

1. Development factors, volume-weighted over the older cohorts: for each
   age k below the development horizon M (``development_months``: the age
   by which a cohort's redemptions are complete),
   ``f(k) = sum R(c, k+1) / sum R(c, k)`` over the cohorts c that have
   reached age k+1. A factor is undefined when no cohort has reached k+1,
   or when the cohorts had redeemed nothing by age k but something by k+1
   (nothing to develop from); it is 1 when neither had redeemed anything.
2. A cohort at age a >= M is **mature**: its ultimate redemptions are those
   observed.
3. A younger cohort with points redeemed is developed to ultimate by the
   **chain ladder**: ``R(c, a) x f(a) x ... x f(M-1)``, when every one of
   those factors is defined.
4. Otherwise (no history old enough, or nothing redeemed yet) the cohort
   takes the program's **default** rate.

The expected ultimate redemption rate is that ultimate over the issued
points, kept between what is already redeemed and what has not expired
(neither can be undone by an estimate); the breakage rate is 1 minus it.
Factors and rates are rounded to ``RATE_PLACES`` places (half-even) before
use, so the stored inputs reproduce each estimate exactly.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Protocol

from core.codes import TransferCode
from finance.revenue.rounding import CONTEXT, rate

#: Wallet debits that redeem points (a member's or a partner's reward, a
#: payment in points, points converted to another program).
REDEEMING = frozenset(
    {
        TransferCode.CATALOG_REDEMPTION,
        TransferCode.POINTS_PAYMENT,
        TransferCode.PARTNER_ACCEPTANCE,
        TransferCode.PARTNER_EXCHANGE,
    }
)
#: Wallet credits that give redeemed points back.
UNREDEEMING = frozenset(
    {
        TransferCode.REDEMPTION_CANCELLATION,
        TransferCode.POINTS_PAYMENT_CANCELLATION,
        TransferCode.PARTNER_ACCEPTANCE_REFUND,
    }
)
EXPIRING = frozenset({TransferCode.EXPIRY, TransferCode.PROGRAM_SUNSET})
UNEXPIRING = frozenset({TransferCode.EXPIRY_REINSTATEMENT})
#: Moves points between wallets inside their cohort: neither issued nor redeemed.
NEUTRAL = frozenset({TransferCode.GIFT})


class CohortMovement(Protocol):
    """A cohort's lot movements of one code in one month, signed
    (``ledger.lots.CohortMonth``)."""

    @property
    def cohort(self) -> date: ...
    @property
    def month(self) -> date: ...
    @property
    def code(self) -> int: ...
    @property
    def points(self) -> int: ...


class Method(enum.StrEnum):
    MATURE = "mature"
    CHAIN_LADDER = "chain_ladder"
    DEFAULT = "default"


def months_between(start: date, end: date) -> int:
    return (end.year - start.year) * 12 + end.month - start.month


@dataclass(frozen=True)
class CohortCurve:
    cohort: date
    #: Months from the cohort's month to the period's (0: the same month).
    age: int
    issued: int
    #: Cumulative points redeemed by each age 0..age.
    redeemed: tuple[int, ...]
    expired: int

    @property
    def redeemed_to_date(self) -> int:
        return self.redeemed[-1]


def redemption_curves(movements: Iterable[CohortMovement], period: date) -> list[CohortCurve]:
    """Each cohort's curve as of the end of ``period`` (a month's first
    day); movements after it are left out. Oldest cohort first."""
    issued: dict[date, int] = defaultdict(int)
    expired: dict[date, int] = defaultdict(int)
    redeemed: dict[date, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for movement in movements:
        age = months_between(movement.cohort, movement.month)
        if months_between(movement.month, period) < 0 or movement.cohort > period:
            continue
        code, points, cohort = movement.code, movement.points, movement.cohort
        if code in NEUTRAL:
            continue
        if (code in REDEEMING and points < 0) or code in UNREDEEMING:
            redeemed[cohort][max(age, 0)] -= points
        elif code in EXPIRING or code in UNEXPIRING:
            expired[cohort] -= points
        else:
            issued[cohort] += points
    curves = []
    for cohort in sorted(set(issued) | set(redeemed) | set(expired)):
        age = months_between(cohort, period)
        by_age = redeemed[cohort]
        cumulative, running = [], 0
        for k in range(age + 1):
            running += by_age.get(k, 0)
            cumulative.append(running)
        curves.append(CohortCurve(cohort, age, issued[cohort], tuple(cumulative), expired[cohort]))
    return curves


@dataclass(frozen=True)
class BreakageEstimate:
    cohort: date
    age: int
    issued: int
    redeemed: int
    expired: int
    method: Method
    #: The factors f(age) .. f(M-1) the chain ladder multiplied (none for
    #: the other methods).
    factors: tuple[Decimal, ...]
    expected_redemption_rate: Decimal
    default_breakage_rate: Decimal
    development_months: int

    @property
    def breakage_rate(self) -> Decimal:
        return CONTEXT.subtract(1, self.expected_redemption_rate)


def development_factors(
    curves: Sequence[CohortCurve], development_months: int
) -> list[Decimal | None]:
    """f(0) .. f(M-1), None where undefined (see the module's method)."""
    factors: list[Decimal | None] = []
    for k in range(development_months):
        reached = [c for c in curves if c.age >= k + 1 and c.issued > 0]
        if not reached:
            factors.append(None)
            continue
        later = sum(c.redeemed[k + 1] for c in reached)
        earlier = sum(c.redeemed[k] for c in reached)
        if earlier == 0:
            factors.append(Decimal(1) if later == 0 else None)
        else:
            factors.append(rate(CONTEXT.divide(Decimal(later), Decimal(earlier))))
    return factors


def estimate_breakage(
    curves: Sequence[CohortCurve], *, development_months: int, default_breakage_rate: Decimal
) -> list[BreakageEstimate]:
    """One estimate per cohort with points issued (see the module's method)."""
    factors = development_factors(curves, development_months)
    estimates = []
    for curve in curves:
        if curve.issued <= 0:
            continue
        issued = Decimal(curve.issued)
        observed = CONTEXT.divide(Decimal(curve.redeemed_to_date), issued)
        needed = factors[curve.age :] if curve.age < development_months else []
        used: tuple[Decimal, ...] = ()
        if curve.age >= development_months:
            method, ultimate = Method.MATURE, observed
        elif curve.redeemed_to_date > 0 and all(f is not None for f in needed):
            method = Method.CHAIN_LADDER
            used = tuple(f for f in needed if f is not None)
            developed = Decimal(curve.redeemed_to_date)
            for factor in used:
                developed = CONTEXT.multiply(developed, factor)
            ultimate = CONTEXT.divide(developed, issued)
        else:
            method, ultimate = Method.DEFAULT, CONTEXT.subtract(1, default_breakage_rate)
        unexpired = CONTEXT.divide(Decimal(curve.issued - max(curve.expired, 0)), issued)
        ceiling = max(observed, min(unexpired, Decimal(1)))
        bounded = min(max(ultimate, observed, Decimal(0)), ceiling)
        estimates.append(
            BreakageEstimate(
                cohort=curve.cohort,
                age=curve.age,
                issued=curve.issued,
                redeemed=curve.redeemed_to_date,
                expired=curve.expired,
                method=method,
                factors=used,
                expected_redemption_rate=rate(bounded),
                default_breakage_rate=default_breakage_rate,
                development_months=development_months,
            )
        )
    return estimates
