"""The revenue API's structs: settings, allocations, breakage estimates and
recognition runs. Names start with ``Revenue`` or ``Breakage``: schema
names are unique across the whole API."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from finance.gl_accounts import KEY_PATTERN, OVERRIDES_MAX, VALUE_LENGTH_MAX, override_fault
from ledger.bounds import integer_range

PERIOD_PATTERN = r"^(19|[2-9][0-9])[0-9]{2}-(0[1-9]|1[0-2])$"
_PERIOD = re.compile(PERIOD_PATTERN)
PERIOD_DOC = "A month of the program's time zone, YYYY-MM (1900-01 to 9998-12)."
Period = Annotated[str, msgspec.Meta(pattern=PERIOD_PATTERN, description=PERIOD_DOC)]
_RATE_DOC = (
    "A rate between 0 and 1, at most 10 decimal places, as a decimal string or a number"
    ' (e.g. "0.2").'
)


def period_start(period: str) -> date:
    """The first day of a ``YYYY-MM`` period (``ValueError`` if it is none)."""
    if not _PERIOD.match(period):
        raise ValueError(f"period: {period!r} is not YYYY-MM (1900-01 to 9998-12)")
    return date(int(period[:4]), int(period[5:]), 1)


def period_label(start: date) -> str:
    return f"{start.year:04d}-{start.month:02d}"


def check_rate(field: str, value: Decimal) -> None:
    if not value.is_finite() or not Decimal(0) <= value <= Decimal(1):
        raise ValueError(f"{field}: a rate between 0 and 1")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -10:
        raise ValueError(f"{field}: at most 10 decimal places")


class RevenueSettingsBody(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    rounding_policy: Annotated[
        Literal["exact", "ratio"],
        msgspec.Meta(
            description="How a sale's price is split: `exact` (the points' share rounded once"
            " to minor units, the goods take the rest) or `ratio` (the allocation ratio rounded"
            " to `ratio_places` places first, then the share)."
        ),
    ] = "exact"
    rounding_mode: Annotated[
        Literal["half_even", "half_up", "down"],
        msgspec.Meta(description="The rounding mode of every rounding of the policy."),
    ] = "half_even"
    ratio_places: Annotated[
        int,
        integer_range(1, 12),
        msgspec.Meta(description="Decimal places of the allocation ratio under `ratio`."),
    ] = 4
    default_breakage_rate: Annotated[
        Decimal,
        msgspec.Meta(
            description="The breakage rate of a cohort without enough history. " + _RATE_DOC
        ),
    ] = Decimal("0.2")
    development_months: Annotated[
        int,
        integer_range(1, 240),
        msgspec.Meta(
            description="The age in months by which a cohort's redemptions are complete: the"
            " chain ladder's horizon (a cohort that old is mature)."
        ),
    ] = 24
    service_life_months: Annotated[
        int,
        integer_range(1, 240),
        msgspec.Meta(
            description="The points' estimated life in months, over which a partner fee's"
            " service element is recognised straight-line."
        ),
    ] = 24
    gl_accounts: Annotated[
        dict[
            Annotated[str, msgspec.Meta(pattern=KEY_PATTERN)],
            Annotated[str, msgspec.Meta(min_length=1, max_length=VALUE_LENGTH_MAX)],
        ],
        msgspec.Meta(
            max_length=OVERRIDES_MAX,
            description="Overrides of the default GL accounts, by key:"
            " `account:<account code>`, `transfer:<transfer code>:account:<account code>` or"
            " `revenue:<role>` (contract_liability, sales_revenue, loyalty_revenue,"
            " deferred_service_revenue, service_revenue); values are account names, 1 to"
            f" {VALUE_LENGTH_MAX} printable characters.",
        ),
    ] = {}

    def __post_init__(self) -> None:
        check_rate("default_breakage_rate", self.default_breakage_rate)
        for key, value in self.gl_accounts.items():
            if fault := override_fault(key, value):
                raise ValueError(fault)


class RevenueSettingsView(msgspec.Struct, kw_only=True, frozen=True):
    rounding_policy: Annotated[
        str, msgspec.Meta(description="`exact` or `ratio` (see the settings body).")
    ]
    rounding_mode: Annotated[str, msgspec.Meta(description="half_even, half_up or down.")]
    ratio_places: Annotated[
        int, msgspec.Meta(description="Decimal places of the allocation ratio under `ratio`.")
    ]
    default_breakage_rate: Annotated[
        Decimal, msgspec.Meta(description="The breakage rate of a cohort without enough history.")
    ]
    development_months: Annotated[
        int,
        msgspec.Meta(
            description="The chain ladder's horizon: the age by which a cohort is mature."
        ),
    ]
    service_life_months: Annotated[
        int,
        msgspec.Meta(description="The months a partner fee's service element is recognised over."),
    ]
    gl_accounts: Annotated[
        dict[str, str],
        msgspec.Meta(description="The overrides of the default GL accounts, by key."),
    ]
    stored: Annotated[
        bool,
        msgspec.Meta(
            description="Whether the program stored settings of its own (else: the defaults)."
        ),
    ]


class RevenueAllocationView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[uuid.UUID, msgspec.Meta(description="The allocation's id.")]
    period: Annotated[
        str, msgspec.Meta(description="The period (YYYY-MM) whose recognition run made it.")
    ]
    source: Annotated[
        str,
        msgspec.Meta(
            description="`sale` (a purchase) or `partner_fee` (a fee on a statement line)."
        ),
    ]
    purchase_id: Annotated[
        uuid.UUID | None,
        msgspec.Meta(description="The sale's purchase id (rewards' purchases); none for a fee."),
    ]
    statement_line_id: Annotated[
        uuid.UUID | None,
        msgspec.Meta(description="The partner statement line of a fee; none for a sale."),
    ]
    cohort: Annotated[
        str,
        msgspec.Meta(description="The month (YYYY-MM) the points were earned in: their cohort."),
    ]
    sold_at: Annotated[
        datetime,
        msgspec.Meta(description="When the points were posted (a sale) or billed (a fee)."),
    ]
    currency: Annotated[
        str,
        msgspec.Meta(
            description="ISO 4217 code of the amounts: the program's (functional) currency for"
            " a fee, converted when billed in another (`original_currency`)."
        ),
    ]
    price_minor: Annotated[
        int,
        msgspec.Meta(
            description="The price allocated, in minor units: a sale's net of returns, or the fee."
        ),
    ]
    points: Annotated[int, msgspec.Meta(description="The points granted (posted) or sold.")]
    point_value_minor: Annotated[
        Decimal, msgspec.Meta(description="The value of a point in minor units used.")
    ]
    breakage_rate: Annotated[
        Decimal | None,
        msgspec.Meta(description="The breakage rate the points' SSP used; none for a fee."),
    ]
    breakage_estimate_id: Annotated[
        uuid.UUID | None,
        msgspec.Meta(description="The estimate that rate came from; none: the default rate."),
    ]
    goods_ssp: Annotated[
        Decimal | None,
        msgspec.Meta(
            description="The goods' stand-alone selling price (the sale's price); none for a fee."
        ),
    ]
    points_ssp: Annotated[
        Decimal | None,
        msgspec.Meta(
            description="The points' stand-alone selling price: points x value x (1 - breakage)."
        ),
    ]
    rounding_policy: Annotated[str, msgspec.Meta(description="The rounding policy applied.")]
    rounding_mode: Annotated[str, msgspec.Meta(description="The rounding mode applied.")]
    ratio_places: Annotated[int, msgspec.Meta(description="The ratio places of the policy then.")]
    ratio: Annotated[
        Decimal | None,
        msgspec.Meta(
            description="The share of the price allocated to the points, as used; none for a fee."
        ),
    ]
    goods_minor: Annotated[int, msgspec.Meta(description="Revenue of the goods, in minor units.")]
    points_minor: Annotated[
        int,
        msgspec.Meta(
            description="The contract liability: the points' share, or a fee's redemption element."
        ),
    ]
    service_minor: Annotated[
        int, msgspec.Meta(description="A fee's service element (0 for a sale).")
    ]
    original_currency: Annotated[
        str | None,
        msgspec.Meta(
            description="The currency a fee was billed in when not the program's; none for a"
            " sale or a fee billed in the program's currency."
        ),
    ] = None
    original_minor: Annotated[
        int | None,
        msgspec.Meta(
            description="The fee as billed, in minor units of `original_currency`; `price_minor`"
            " = original_minor x exchange_rate x 10^(difference of minor units), rounded half"
            " to even."
        ),
    ] = None
    exchange_rate: Annotated[
        Decimal | None,
        msgspec.Meta(
            description="The rate converted at: one unit of `original_currency` in the"
            " program's currency, in force on the statement's issue day (ledger's zone)."
        ),
    ] = None
    exchange_rate_date: Annotated[
        date | None,
        msgspec.Meta(description="The day that rate took effect (on or before the issue day)."),
    ] = None


class RevenueAllocationPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[
        list[RevenueAllocationView], msgspec.Meta(description="Allocations, newest first.")
    ]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class BreakageEstimateView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[uuid.UUID, msgspec.Meta(description="The estimate's id.")]
    period: Annotated[
        str, msgspec.Meta(description="The period (YYYY-MM) as of whose end it was made.")
    ]
    cohort: Annotated[
        str, msgspec.Meta(description="The cohort: the month (YYYY-MM) its points were earned in.")
    ]
    age_months: Annotated[
        int,
        msgspec.Meta(
            description="The cohort's age at the period's end, in months (0: the same month)."
        ),
    ]
    method: Annotated[
        str,
        msgspec.Meta(
            description="mature (observed), chain_ladder (developed by older cohorts) or default."
        ),
    ]
    issued_points: Annotated[
        int, msgspec.Meta(description="Points issued into the cohort to date, net of returns.")
    ]
    redeemed_points: Annotated[
        int, msgspec.Meta(description="Points of the cohort redeemed to date.")
    ]
    expired_points: Annotated[
        int, msgspec.Meta(description="Points of the cohort expired to date (not redeemed).")
    ]
    development_factors: Annotated[
        list[str],
        msgspec.Meta(description="The development factors applied, from its age to the horizon."),
    ]
    development_months: Annotated[int, msgspec.Meta(description="The horizon used.")]
    default_breakage_rate: Annotated[
        Decimal, msgspec.Meta(description="The default rate in force.")
    ]
    expected_redemption_rate: Annotated[
        Decimal,
        msgspec.Meta(description="The share of issued points expected to be redeemed in the end."),
    ]
    breakage_rate: Annotated[Decimal, msgspec.Meta(description="1 - the expected redemption rate.")]


class RevenueRecognitionView(msgspec.Struct, kw_only=True, frozen=True):
    period: Annotated[str, msgspec.Meta(description="The period (YYYY-MM).")]
    cohort: Annotated[str, msgspec.Meta(description="The cohort (YYYY-MM).")]
    element: Annotated[
        str,
        msgspec.Meta(description="`points` (recognised as redeemed) or `service` (straight-line)."),
    ]
    deferred_minor: Annotated[
        int,
        msgspec.Meta(
            description="The deferred amount of the cohort and element to date, in minor units."
        ),
    ]
    issued_points: Annotated[
        int, msgspec.Meta(description="Points issued into the cohort to date.")
    ]
    expected_points: Annotated[
        Decimal,
        msgspec.Meta(
            description="Points expected to be redeemed: issued x expected redemption rate."
        ),
    ]
    redeemed_points: Annotated[
        int, msgspec.Meta(description="Points of the cohort redeemed to date.")
    ]
    ratio: Annotated[
        Decimal,
        msgspec.Meta(description="min(1, redeemed / expected) (service: months elapsed / life)."),
    ]
    recognised_to_date_minor: Annotated[
        int, msgspec.Meta(description="deferred x ratio, rounded once.")
    ]
    recognised_before_minor: Annotated[
        int, msgspec.Meta(description="What earlier periods recognised of it.")
    ]
    recognised_in_period_minor: Annotated[
        int,
        msgspec.Meta(
            description="The period's revenue: to date - before (< 0 after an estimate revised up)."
        ),
    ]
    breakage_estimate_id: Annotated[
        uuid.UUID | None,
        msgspec.Meta(
            description="The estimate used; none for a service element or a cohort without one."
        ),
    ]


class RevenueRunRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    period: Annotated[
        str,
        msgspec.Meta(
            pattern=PERIOD_PATTERN,
            description="The month to recognise, YYYY-MM: one that has ended.",
        ),
    ]
    preview: Annotated[
        bool,
        msgspec.Meta(
            description="Compute the run of an ended month that is not closed yet, as the"
            " final run would, and write nothing (200). A final run (false) needs the month"
            " closed: 409 revenue-period-open otherwise."
        ),
    ] = False


class RevenueRunView(msgspec.Struct, kw_only=True, frozen=True):
    period: Annotated[str, msgspec.Meta(description="The period recognised (YYYY-MM).")]
    recognised_at: Annotated[datetime, msgspec.Meta(description="When the run was made.")]
    currency: Annotated[str, msgspec.Meta(description="The program's currency (ISO 4217).")]
    allocations: Annotated[int, msgspec.Meta(description="Sales and fees allocated by this run.")]
    estimates: Annotated[
        int, msgspec.Meta(description="Breakage estimates made by this run (one per cohort).")
    ]
    deferred_minor: Annotated[
        int, msgspec.Meta(description="Contract liability added by the allocations of this run.")
    ]
    service_deferred_minor: Annotated[
        int, msgspec.Meta(description="Deferred service revenue added by this run.")
    ]
    recognised_minor: Annotated[
        int, msgspec.Meta(description="The period's revenue from points redeemed (and breakage).")
    ]
    service_recognised_minor: Annotated[
        int, msgspec.Meta(description="The period's service revenue from partner fees.")
    ]
    reversed_minor: Annotated[
        int,
        msgspec.Meta(
            description="Contract liability reversed by this run: the points' share of the"
            " part of allocated sales' prices returned in the period (IFRS 15)."
        ),
    ] = 0
    recognitions: Annotated[
        list[RevenueRecognitionView],
        msgspec.Meta(description="Per cohort and element, oldest cohort first."),
    ]
    replayed: Annotated[
        bool,
        msgspec.Meta(
            description="True when the period had been recognised before: nothing was written."
        ),
    ] = False
    preview: Annotated[
        bool,
        msgspec.Meta(
            description="True for a preview of a period not closed yet: computed as the final"
            " run would be, nothing written."
        ),
    ] = False
