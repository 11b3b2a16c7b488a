"""What the period close answers and takes (``finance.periods``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from ledger.bounds import Text500

_BOUNDARY = (
    "The ledger's boundary: it refuses every transfer whose business time is at or before"
    " this instant (the last instant of the last closed month); none when no month is closed."
)


class FinancePeriod(msgspec.Struct, kw_only=True, frozen=True):
    """A calendar month of the program, in its time zone, and whether it is closed."""

    month: Annotated[str, msgspec.Meta(description="The month, YYYY-MM.")]
    starts_at: Annotated[
        datetime,
        msgspec.Meta(description="Its first instant: the 1st at midnight in the program's zone."),
    ]
    ends_at: Annotated[
        datetime, msgspec.Meta(description="The first instant of the next month (not in it).")
    ]
    status: Annotated[
        Literal["open", "closed"],
        msgspec.Meta(
            description="`closed`: the ledger refuses every movement dated in it; `open`:"
            " never closed, or reopened."
        ),
    ]
    ended: Annotated[
        bool, msgspec.Meta(description="Whether the month is over (only then may it close).")
    ]
    closed_at: Annotated[
        datetime | None, msgspec.Meta(description="When it was last closed; none if never.")
    ] = None
    closed_by: Annotated[
        str | None, msgspec.Meta(description="Who closed it last; none if never.")
    ] = None
    reopened_at: Annotated[
        datetime | None, msgspec.Meta(description="When it was last reopened; none if never.")
    ] = None
    reopened_by: Annotated[
        str | None, msgspec.Meta(description="Who reopened it last; none if never.")
    ] = None
    reopen_reason: Annotated[
        str | None, msgspec.Meta(description="Why it was last reopened; none if never.")
    ] = None


class FinancePeriodList(msgspec.Struct, kw_only=True, frozen=True):
    periods: Annotated[
        list[FinancePeriod],
        msgspec.Meta(
            description="Every month from the program's start month to the current one,"
            " oldest first."
        ),
    ]
    next_to_close: Annotated[
        str | None,
        msgspec.Meta(
            description="The month that may close next (YYYY-MM): the earliest open one,"
            " once it has ended; none while it has not."
        ),
    ] = None
    closed_through: Annotated[datetime | None, msgspec.Meta(description=_BOUNDARY)] = None
    time_zone: Annotated[
        str,
        msgspec.Meta(
            description="The zone the months are counted in: the ledger's accounting days"
            " (`ledgers.time_zone`, set from the program's zone when its ledger was made),"
            " which a later change of the program's `time_zone` does not move."
        ),
    ] = ""


class FinancePeriodClosing(msgspec.Struct, kw_only=True, frozen=True):
    period: Annotated[FinancePeriod, msgspec.Meta(description="The month, closed.")]
    changed: Annotated[
        bool,
        msgspec.Meta(
            description="True when this request closed it; false when it was closed"
            " already (nothing written)."
        ),
    ]
    closed_through: Annotated[datetime, msgspec.Meta(description=_BOUNDARY)]


class FinancePeriodReopenRequest(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True
):
    reason: Annotated[
        Text500, msgspec.Meta(min_length=3, description="Why it reopens, for the audit trail.")
    ]


class FinancePeriodReopening(msgspec.Struct, kw_only=True, frozen=True):
    reopened: Annotated[
        list[FinancePeriod],
        msgspec.Meta(
            description="The months this request reopened: the month and every later closed"
            " one, oldest first; empty when the month was open (nothing written)."
        ),
    ]
    closed_through: Annotated[datetime | None, msgspec.Meta(description=_BOUNDARY)] = None
