"""Requests and answers of the exchange between programs: the operators'
agreements and rate versions, and the members' quotes and conversions.

Terms are written from the side of the program that reads or writes them
(the path's program for an operator, the token's for a member):
``outbound`` is this program's points converted into the counterparty's,
``inbound`` the counterparty's points converted into this program's.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from ledger.bounds import MOMENT_RULE, Moment, check_moment, integer_range
from rewards.programs import Slug

#: Largest ``give`` or ``receive`` of a rate: with ``MAX_POINTS`` a
#: conversion's product stays far inside a bigint.
RATE_TERM_MAX = 1_000_000
#: Largest amount of one conversion, in points of the source program.
MAX_POINTS = 1_000_000_000
#: Largest daily cap, in points of the source program.
DAILY_CAP_MAX = 1_000_000_000_000

RateTerm = Annotated[int, integer_range(1, RATE_TERM_MAX)]
Points = Annotated[int, integer_range(1, MAX_POINTS)]

_GIVE = "Points of the source program given for every `receive` points of the target program."
_RECEIVE = (
    "Points of the target program received for every `give` points of the source program:"
    " the rate is exactly receive/give, and a conversion's result is rounded down (the"
    " fraction of a point is never created)."
)
_MIN = "The fewest points of the source program one conversion may give."
_MAX = "The most points of the source program one conversion may give."
_CAP = (
    "The most points of the source program one member may convert in this direction in one"
    " day of the source program's calendar (its time zone)."
)
_OUTBOUND = "Members of this program converting its points into the counterparty's; none: closed."
_INBOUND = "Members of the counterparty converting its points into this program's; none: closed."
_EFFECTIVE = (
    "When the rates start; none, or a time before the other program accepts them: at its"
    f" acceptance. {MOMENT_RULE}"
)
_NEXT = "Send it back as `cursor` for the next (older) page; none on the last."


class DirectionTerms(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    give: Annotated[RateTerm, msgspec.Meta(description=_GIVE)]
    receive: Annotated[RateTerm, msgspec.Meta(description=_RECEIVE)]
    daily_cap: Annotated[
        Annotated[int, integer_range(1, DAILY_CAP_MAX)], msgspec.Meta(description=_CAP)
    ]
    min_points: Annotated[Points, msgspec.Meta(description=_MIN)] = 1
    max_points: Annotated[Points, msgspec.Meta(description=_MAX)] = MAX_POINTS


class ExchangeTerms(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    outbound: Annotated[DirectionTerms, msgspec.Meta(description=_OUTBOUND)] | None = None
    inbound: Annotated[DirectionTerms, msgspec.Meta(description=_INBOUND)] | None = None

    def stored(self, program_id: uuid.UUID, other_id: uuid.UUID) -> dict[str, Any]:
        """As stored: each direction keyed by its source program's id."""
        directions = {str(program_id): self.outbound, str(other_id): self.inbound}
        return {
            source: msgspec.to_builtins(terms)
            for source, terms in directions.items()
            if terms is not None
        }

    @classmethod
    def of(
        cls, stored: dict[str, Any], program_id: uuid.UUID, other_id: uuid.UUID
    ) -> ExchangeTerms:
        """The stored terms as ``program_id`` reads them."""
        return cls(
            outbound=direction_of(stored, program_id),
            inbound=direction_of(stored, other_id),
        )


def direction_of(stored: dict[str, Any], source_id: uuid.UUID) -> DirectionTerms | None:
    """The stored terms of the direction out of ``source_id``, if open."""
    found = stored.get(str(source_id))
    return msgspec.convert(found, DirectionTerms) if found is not None else None


class AgreementProposal(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    counterparty: Annotated[
        Slug, msgspec.Meta(description="The slug of the program to exchange points with.")
    ]
    terms: Annotated[
        ExchangeTerms, msgspec.Meta(description="Version 1 of the rates, for the other to accept.")
    ]
    effective_from: Annotated[Moment, msgspec.Meta(description=_EFFECTIVE)] | None = None

    def __post_init__(self) -> None:
        check_moment("effective_from", self.effective_from)


class RateProposal(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    terms: Annotated[ExchangeTerms, msgspec.Meta(description="The rates, for the other to accept.")]
    effective_from: Annotated[Moment, msgspec.Meta(description=_EFFECTIVE)] | None = None

    def __post_init__(self) -> None:
        check_moment("effective_from", self.effective_from)


class RateVersionView(msgspec.Struct, kw_only=True, frozen=True):
    version: Annotated[int, msgspec.Meta(description="The version's number in the agreement.")]
    status: Annotated[
        str, msgspec.Meta(description="`proposed` (awaiting the other program) or `accepted`.")
    ]
    proposed_by: Annotated[str, msgspec.Meta(description="The slug of the proposing program.")]
    effective_from: Annotated[
        datetime | None,
        msgspec.Meta(description="The start the proposal asked for; none: at acceptance."),
    ]
    in_force_from: Annotated[
        datetime | None,
        msgspec.Meta(description="When the accepted version starts (none until accepted)."),
    ]
    terms: Annotated[ExchangeTerms, msgspec.Meta(description="The rates, from this side.")]


class AgreementView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[uuid.UUID, msgspec.Meta(description="The agreement's id.")]
    program: Annotated[str, msgspec.Meta(description="This program's slug.")]
    counterparty: Annotated[str, msgspec.Meta(description="The other program's slug.")]
    status: Annotated[
        str,
        msgspec.Meta(
            description="`proposed` until the other program accepts a rate version, then `active`."
        ),
    ]
    proposed_by: Annotated[str, msgspec.Meta(description="The slug of the proposing program.")]
    accepted_at: Annotated[
        datetime | None, msgspec.Meta(description="When its first rate version was accepted.")
    ]
    version_in_force: Annotated[
        int | None, msgspec.Meta(description="The accepted version in force now; none if none.")
    ]
    versions: Annotated[
        list[RateVersionView], msgspec.Meta(description="Every rate version, in order.")
    ]


class AgreementPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[AgreementView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[str | None, msgspec.Meta(description=_NEXT)] = None


class PositionSide(msgspec.Struct, kw_only=True, frozen=True):
    program: Annotated[str, msgspec.Meta(description="The program's slug.")]
    account_id: Annotated[
        uuid.UUID,
        msgspec.Meta(description="Its exchange account for the other program, on its ledger."),
    ]
    sent_points: Annotated[
        int,
        msgspec.Meta(
            description="Its own points its members converted into the other's (the"
            " account's posted credits)."
        ),
    ]
    received_points: Annotated[
        int,
        msgspec.Meta(
            description="Its own points credited to its members for the other's points (the"
            " account's posted debits)."
        ),
    ]
    owed_points: Annotated[
        int,
        msgspec.Meta(
            description="sent_points - received_points: what it owes the other program, in"
            " its own points (negative: what it is owed)."
        ),
    ]


class ExchangePosition(msgspec.Struct, kw_only=True, frozen=True):
    agreement: Annotated[uuid.UUID, msgspec.Meta(description="The agreement's id.")]
    program: Annotated[PositionSide, msgspec.Meta(description="This program's side.")]
    counterparty: Annotated[PositionSide, msgspec.Meta(description="The other program's side.")]


class ExchangeRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    to_program: Annotated[
        Slug,
        msgspec.Meta(
            description="The slug of the program whose points the member receives (one with"
            " an exchange agreement with the member's program)."
        ),
    ]
    points: Annotated[
        Points, msgspec.Meta(description="Points of the member's program to convert.")
    ]


class ExchangeView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[uuid.UUID, msgspec.Meta(description="The conversion's id.")]
    from_program: Annotated[str, msgspec.Meta(description="The slug of the program given.")]
    to_program: Annotated[str, msgspec.Meta(description="The slug of the program received.")]
    points: Annotated[int, msgspec.Meta(description="Points of `from_program` given.")]
    received_points: Annotated[
        int, msgspec.Meta(description="Points of `to_program` received (rounded down).")
    ]
    give: Annotated[int, msgspec.Meta(description=_GIVE)]
    receive: Annotated[int, msgspec.Meta(description=_RECEIVE)]
    rate_version: Annotated[int, msgspec.Meta(description="The rate version applied.")]
    at: Annotated[datetime, msgspec.Meta(description="When the points moved.")]


class ExchangeOutcome(ExchangeView, kw_only=True, frozen=True):
    replayed: Annotated[
        bool,
        msgspec.Meta(
            description="True when the Idempotency-Key was used before: the first answer"
            " again, nothing converted twice."
        ),
    ]


class ExchangePage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[ExchangeView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[str | None, msgspec.Meta(description=_NEXT)] = None


class ExchangeQuote(msgspec.Struct, kw_only=True, frozen=True):
    to_program: Annotated[str, msgspec.Meta(description="The slug of the program received.")]
    points: Annotated[int, msgspec.Meta(description="Points of the member's program to give.")]
    received_points: Annotated[
        int, msgspec.Meta(description="Points of `to_program` they would receive (rounded down).")
    ]
    give: Annotated[int, msgspec.Meta(description=_GIVE)]
    receive: Annotated[int, msgspec.Meta(description=_RECEIVE)]
    rate_version: Annotated[int, msgspec.Meta(description="The rate version in force now.")]
    min_points: Annotated[int, msgspec.Meta(description=_MIN)]
    max_points: Annotated[int, msgspec.Meta(description=_MAX)]
    daily_cap: Annotated[int, msgspec.Meta(description=_CAP)]
    converted_today: Annotated[
        int, msgspec.Meta(description="Points the member converted in this direction today.")
    ]
