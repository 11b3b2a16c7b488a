"""Requests and answers of the exchange rates (``finance.exchange_rates``)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

import msgspec

from finance.currencies import is_currency
from finance.exchange_rate_models import RATE_FRACTION_DIGITS, RATE_INTEGER_DIGITS

CURRENCY_PATTERN = r"^[A-Z]{3}$"
_RATE_DOC = (
    "Units of the program's (functional) currency for one unit of `currency`, above 0,"
    f" at most {RATE_INTEGER_DIGITS} digits before the point and {RATE_FRACTION_DIGITS}"
    ' after, as a decimal string or a number (e.g. "18.4125").'
)


def rate_fault(rate: Decimal) -> str | None:
    """Why ``rate`` cannot be stored, or None."""
    if not rate.is_finite() or rate <= 0:
        return "rate: above 0"
    exponent = rate.as_tuple().exponent
    if not isinstance(exponent, int):
        return "rate: above 0"
    if -exponent > RATE_FRACTION_DIGITS:
        return f"rate: at most {RATE_FRACTION_DIGITS} decimal places"
    if rate >= Decimal(10) ** RATE_INTEGER_DIGITS:
        return f"rate: below 10^{RATE_INTEGER_DIGITS}"
    return None


class ExchangeRateBody(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    currency: Annotated[
        str,
        msgspec.Meta(
            pattern=CURRENCY_PATTERN,
            description="ISO 4217 code of the currency converted from (not the program's own).",
            examples=["EUR"],
        ),
    ]
    rate: Annotated[Decimal, msgspec.Meta(description=_RATE_DOC, examples=["18.4125"])]
    effective_on: Annotated[
        date,
        msgspec.Meta(
            description="The first day (program's calendar) the rate is in force; it stays in"
            " force until a later rate's day."
        ),
    ]

    def __post_init__(self) -> None:
        if not is_currency(self.currency):
            raise ValueError(f"currency: {self.currency!r} is not an ISO 4217 currency code")
        fault = rate_fault(self.rate)
        if fault is not None:
            raise ValueError(fault)


class ExchangeRateView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[uuid.UUID, msgspec.Meta(description="The rate's id.")]
    currency: Annotated[str, msgspec.Meta(description="ISO 4217 code converted from.")]
    functional_currency: Annotated[
        str, msgspec.Meta(description="The program's currency (ISO 4217), converted to.")
    ]
    rate: Annotated[
        Decimal,
        msgspec.Meta(description="Functional currency units for one unit of `currency`."),
    ]
    effective_on: Annotated[date, msgspec.Meta(description="In force from this day.")]
    recorded_by: Annotated[str, msgspec.Meta(description="Who recorded it.")]
    recorded_at: Annotated[datetime, msgspec.Meta(description="When it was recorded.")]


class ExchangeRatePage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[
        list[ExchangeRateView], msgspec.Meta(description="Rates, latest recorded first.")
    ]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None
