"""What an operator sends and reads of a partner leaving the coalition
(``partners.departures``): the departure itself and its report."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec

from ledger.bounds import YEAR_MAX, YEAR_MIN, Text500
from partners.departure_models import PartnerDeparture

_DAY = (
    f"A date of the program's calendar (its time zone), YYYY-MM-DD, in the years {YEAR_MIN}"
    f" to {YEAR_MAX}; the day ends at the next local midnight."
)


class DepartureRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The partner's last days and its valuation date (the same again
    changes nothing; other days change the departure while they are still
    to come)."""

    last_issuing_day: Annotated[
        date,
        msgspec.Meta(
            description="The last day the partner issues points: from the end of it, issuances"
            f" are refused (409 partner-departed). {_DAY}",
            examples=["2026-12-31"],
        ),
    ]
    last_accepting_day: Annotated[
        date,
        msgspec.Meta(
            description="The last day the partner takes new holds of points at its tills. " + _DAY,
            examples=["2026-12-31"],
        ),
    ]
    valuation_date: Annotated[
        date,
        msgspec.Meta(
            description="The day at whose end the partner's final statement values its share of"
            " the outstanding points; on or after both last days. " + _DAY,
            examples=["2027-01-31"],
        ),
    ]
    reason: Annotated[
        Text500 | None, msgspec.Meta(description="Why it leaves, for the record (at most 500).")
    ] = None

    def __post_init__(self) -> None:
        for name in ("last_issuing_day", "last_accepting_day", "valuation_date"):
            day: date = getattr(self, name)
            if not YEAR_MIN <= day.year <= YEAR_MAX:
                raise ValueError(f"{name}: Expected a date in the years {YEAR_MIN} to {YEAR_MAX}")


class DepartureView(msgspec.Struct, kw_only=True, frozen=True):
    partner: Annotated[str, msgspec.Meta(description="The leaving contract holder's slug.")]
    last_issuing_day: Annotated[date, msgspec.Meta(description="The last day it issues points.")]
    last_accepting_day: Annotated[
        date, msgspec.Meta(description="The last day it takes new holds of points.")
    ]
    valuation_date: Annotated[
        date, msgspec.Meta(description="The day at whose end its final statement values.")
    ]
    issuing_ends_at: Annotated[
        datetime,
        msgspec.Meta(description="When issuance stops: the end of the last issuing day."),
    ]
    accepting_ends_at: Annotated[
        datetime,
        msgspec.Meta(description="When new holds stop: the end of the last accepting day."),
    ]
    valuation_at: Annotated[
        datetime,
        msgspec.Meta(
            description="The valuation instant (the end of the valuation date): captures and"
            " refunds stop, and the final statement's period ends."
        ),
    ]
    reason: Annotated[str | None, msgspec.Meta(description="Why it leaves.")]
    recorded_by: Annotated[str, msgspec.Meta(description="Who recorded the departure as it is.")]
    recorded_at: Annotated[datetime, msgspec.Meta(description="When it was so recorded.")]
    status: Annotated[
        str,
        msgspec.Meta(
            description="`leaving` (its final statement is still to come) or `left` (issued:"
            " the departure is final, the firm offboarded)."
        ),
    ]
    final_statement: Annotated[
        int | None,
        msgspec.Meta(description="The number of its final statement, once issued."),
    ]

    @classmethod
    def of(cls, departure: PartnerDeparture, slug: str, final: int | None) -> DepartureView:
        return cls(
            partner=slug,
            last_issuing_day=departure.last_issuing_day,
            last_accepting_day=departure.last_accepting_day,
            valuation_date=departure.valuation_date,
            issuing_ends_at=departure.issuing_ends_at,
            accepting_ends_at=departure.accepting_ends_at,
            valuation_at=departure.valuation_at,
            reason=departure.reason,
            recorded_by=departure.recorded_by,
            recorded_at=departure.recorded_at,
            status="leaving" if final is None else "left",
            final_statement=final,
        )


class DepartureReport(msgspec.Struct, kw_only=True, frozen=True):
    """What the partner issued, what was redeemed at it and what remains
    outstanding of its points, from the ledger at one instant."""

    partner: Annotated[str, msgspec.Meta(description="The leaving contract holder's slug.")]
    as_of: Annotated[
        datetime,
        msgspec.Meta(
            description="The instant of the figures: now before the valuation instant, the"
            " valuation instant after it."
        ),
    ]
    basis: Annotated[
        str,
        msgspec.Meta(
            description="`now` (the ledger as it stands), `valuation` (the ledger at the"
            " valuation instant, before the final statement) or `final_statement` (the"
            " figures the final statement valued, stored with it)."
        ),
    ]
    points_issued: Annotated[
        int,
        msgspec.Meta(
            description="Points it issued (its member companies under its contract included)."
        ),
    ]
    points_captured: Annotated[int, msgspec.Meta(description="Points captured at its tills.")]
    points_refunded: Annotated[int, msgspec.Meta(description="Points refunded at its tills.")]
    points_redeemed: Annotated[int, msgspec.Meta(description="points_captured - points_refunded.")]
    program_points_issued: Annotated[
        int,
        msgspec.Meta(
            description="Points the program and all its partners issued to members, net of"
            " reversals, and points converted in from other programs."
        ),
    ]
    program_points_outstanding: Annotated[
        int, msgspec.Meta(description="Points the program's members hold, less their debts.")
    ]
    points_outstanding: Annotated[
        int,
        msgspec.Meta(
            description="Its share of the outstanding points: program_points_outstanding x"
            " points_issued / program_points_issued, rounded half-even to whole points."
        ),
    ]
    final_statement: Annotated[
        int | None, msgspec.Meta(description="Its final statement's number, once issued.")
    ]
    liability_points: Annotated[
        int | None,
        msgspec.Meta(
            description="Points whose price the final statement billed for the liability"
            " (its share, at most its points whose deferred price was not billed yet); none"
            " before it is issued."
        ),
    ]
    liability_minor: Annotated[
        int | None,
        msgspec.Meta(
            description="Minor units of the final statement's `liability_transferred` line;"
            " none before it is issued."
        ),
    ]
