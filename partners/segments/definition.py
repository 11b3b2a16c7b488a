"""What a segment is: the members of a program who meet every criterion
given (tier, activity, RFM scores, partner, cohort, a custom filter), as of
a moment. A criterion left out does not narrow the segment.

Activity counts *purchases*: the program's own (``purchases``: their amount
less what was returned) and those partners reported with their issuances
(``partner_issuances``: their ``purchase_amount_minor``, when given, in the
program's currency). Recency is whole days, in the program's time zone,
from the day of the member's last purchase to the day of the moment;
frequency and monetary value count the purchases of the ``window_days``
days up to the moment (after ``moment - window_days``, up to it included).

RFM scores are quintiles among the program's members who made a purchase
in the window: a member's score is ``1 + floor(5 * (rank - 1) / n)``,
where ``n`` is how many such members there are and ``rank`` is SQL's
``rank()`` of the member (ties share a rank, so equal values share a
score) by days since the last purchase from the longest (recency), by
purchases (frequency) and by spend (monetary), from the lowest: 5 is the
best fifth. A member with no purchase in the window scores 0 on all three.

The structs bound the shape (a malformed body is a 400); what needs the
program to judge (a tier or partner it does not have, a custom filter that
does not parse, a minimum above its maximum) is checked when the segment is
compiled (``partners.segments.compiler``), a 422 ``invalid-segment``.
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from ledger.bounds import NO_NUL, NonEmpty, Text50, Text500, integer_range

#: The most days a window or a bound may span (ten years).
MAX_DAYS = 3650
#: The longest custom filter, in characters.
MAX_FILTER_LENGTH = 2000
MAX_TIERS = 50
MAX_PARTNERS = 50

_SLUG = r"^[a-z0-9][a-z0-9-]{0,63}$"
_MONTH = r"^(19|[2-9][0-9])[0-9]{2}-(0[1-9]|1[0-2])$"
_NAME = r"^[a-z0-9][a-z0-9_-]{0,99}$"

SegmentName = Annotated[
    str,
    msgspec.Meta(
        pattern=_NAME,
        description="The segment's name, unique in the program: 1 to 100 lower-case letters,"
        " digits, `-` and `_`, starting with a letter or digit.",
    ),
]
Days = Annotated[int, integer_range(0, MAX_DAYS)]
Count = Annotated[int, integer_range(0, 2**31 - 1)]
Minor = Annotated[int, integer_range(-(2**62), 2**62)]
Score = Annotated[int, integer_range(0, 5)]
Month = Annotated[
    str, msgspec.Meta(pattern=_MONTH, description="A calendar month, `YYYY-MM` (1900-9999).")
]


class MemberState(enum.StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


class _Bounds(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Inclusive bounds; a bound left out is open."""


class RecencyBounds(_Bounds, kw_only=True, frozen=True, forbid_unknown_fields=True):
    min_days: Annotated[Days, msgspec.Meta(description="At least this many days.")] | None = None
    max_days: Annotated[Days, msgspec.Meta(description="At most this many days.")] | None = None


class FrequencyBounds(_Bounds, kw_only=True, frozen=True, forbid_unknown_fields=True):
    min_purchases: (
        Annotated[Count, msgspec.Meta(description="At least this many purchases.")] | None
    ) = None
    max_purchases: (
        Annotated[Count, msgspec.Meta(description="At most this many purchases.")] | None
    ) = None


class MonetaryBounds(_Bounds, kw_only=True, frozen=True, forbid_unknown_fields=True):
    min_minor: (
        Annotated[Minor, msgspec.Meta(description="At least this spend, in minor units.")] | None
    ) = None
    max_minor: (
        Annotated[Minor, msgspec.Meta(description="At most this spend, in minor units.")] | None
    ) = None


class ScoreBounds(_Bounds, kw_only=True, frozen=True, forbid_unknown_fields=True):
    min_score: Annotated[Score, msgspec.Meta(description="The lowest score, 0 to 5.")] = 1
    max_score: Annotated[Score, msgspec.Meta(description="The highest score, 0 to 5.")] = 5


class RfmScores(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    recency: (
        Annotated[
            ScoreBounds, msgspec.Meta(description="Recency score bounds (5: the most recent).")
        ]
        | None
    ) = None
    frequency: (
        Annotated[
            ScoreBounds, msgspec.Meta(description="Frequency score bounds (5: the most purchases).")
        ]
        | None
    ) = None
    monetary: (
        Annotated[
            ScoreBounds, msgspec.Meta(description="Monetary score bounds (5: the highest spend).")
        ]
        | None
    ) = None


class PartnerAction(enum.StrEnum):
    EARNED = "earned"
    REDEEMED = "redeemed"
    EITHER = "either"


class PartnerActivity(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    partners: Annotated[
        list[Annotated[str, msgspec.Meta(pattern=_SLUG)]],
        msgspec.Meta(
            min_length=1,
            max_length=MAX_PARTNERS,
            description="Partner slugs of the program (a partner, or one of its stores).",
        ),
    ]
    action: Annotated[
        PartnerAction,
        msgspec.Meta(
            description="`earned` (the partner issued the member points: a partner issuance),"
            " `redeemed` (the member paid with points there: a captured checkout hold), or"
            " `either`."
        ),
    ] = PartnerAction.EITHER
    within_days: (
        Annotated[
            int,
            integer_range(1, MAX_DAYS),
            msgspec.Meta(description="Only in the days before the moment; left out: ever."),
        ]
        | None
    ) = None


class CohortBasis(enum.StrEnum):
    ENROLMENT = "enrolment"
    FIRST_EARNING = "first_earning"


class CohortRange(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    basis: Annotated[
        CohortBasis,
        msgspec.Meta(
            description="`enrolment` (the month the member enrolled) or `first_earning` (the"
            " month of the first points credited to the wallet, the cohort of its first lot),"
            " in the program's time zone."
        ),
    ] = CohortBasis.ENROLMENT
    from_month: (
        Annotated[Month, msgspec.Meta(description="The first cohort month, included.")] | None
    ) = None
    to_month: (
        Annotated[Month, msgspec.Meta(description="The last cohort month, included.")] | None
    ) = None


FilterText = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=MAX_FILTER_LENGTH,
        pattern=NO_NUL,
        description="A custom filter in the segment filter language (docs/segments.md), e.g."
        " `tier in ('gold', 'silver') and spend_minor >= 10000 and not has_email`.",
    ),
]


class SegmentDefinition(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Members meeting every criterion given, as of a moment."""

    statuses: Annotated[
        list[MemberState],
        msgspec.Meta(
            min_length=1, max_length=3, description="Member statuses included (default: active)."
        ),
    ] = msgspec.field(default_factory=lambda: [MemberState.ACTIVE])
    tiers: (
        Annotated[
            list[Annotated[Text50, NonEmpty]],
            msgspec.Meta(
                min_length=1,
                max_length=MAX_TIERS,
                description="Tier codes of the program: members in one of them.",
            ),
        ]
        | None
    ) = None
    window_days: Annotated[
        int,
        integer_range(1, MAX_DAYS),
        msgspec.Meta(
            description="The window of frequency, monetary value and RFM scores: the days up"
            " to the moment."
        ),
    ] = 365
    recency: (
        Annotated[
            RecencyBounds,
            msgspec.Meta(
                description="Days since the last purchase (members who never purchased are out)."
            ),
        ]
        | None
    ) = None
    frequency: (
        Annotated[FrequencyBounds, msgspec.Meta(description="Purchases in the window.")] | None
    ) = None
    monetary: (
        Annotated[MonetaryBounds, msgspec.Meta(description="Spend in the window, in minor units.")]
        | None
    ) = None
    rfm: (
        Annotated[RfmScores, msgspec.Meta(description="RFM quintile scores (0: no purchase).")]
        | None
    ) = None
    partner: (
        Annotated[
            PartnerActivity,
            msgspec.Meta(description="Members who earned or redeemed at one of these partners."),
        ]
        | None
    ) = None
    cohort: (
        Annotated[
            CohortRange, msgspec.Meta(description="Members whose cohort month is in the range.")
        ]
        | None
    ) = None
    filter: (
        Annotated[FilterText, msgspec.Meta(description="A custom filter (docs/segments.md).")]
        | None
    ) = None


class SegmentSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A segment to save (create, or replace under its name)."""

    name: SegmentName
    description: Annotated[Text500, msgspec.Meta(description="What the segment is for.")] | None = (
        None
    )
    definition: Annotated[
        SegmentDefinition, msgspec.Meta(description="Who is in it (every criterion must hold).")
    ]
    offered_to_partners: Annotated[
        bool,
        msgspec.Meta(
            description="Whether partners may target it in the joint campaigns they propose"
            " (they name it; they never see its members). The operator always may."
        ),
    ] = False


class SegmentChange(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A saved segment's new description, definition and offer (its name stays)."""

    description: Annotated[Text500, msgspec.Meta(description="What the segment is for.")] | None = (
        None
    )
    definition: Annotated[
        SegmentDefinition, msgspec.Meta(description="Who is in it (every criterion must hold).")
    ]
    offered_to_partners: Annotated[
        bool,
        msgspec.Meta(description="Whether partners may target it in their joint campaigns."),
    ] = False


class SegmentView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The saved segment's id.")]
    name: Annotated[str, msgspec.Meta(description="Its name, unique in the program.")]
    description: Annotated[str | None, msgspec.Meta(description="What it is for.")]
    definition: Annotated[SegmentDefinition, msgspec.Meta(description="Who is in it.")]
    offered_to_partners: Annotated[
        bool, msgspec.Meta(description="Whether partners may target it in joint campaigns.")
    ]
    created_by: Annotated[str, msgspec.Meta(description="Who saved it first.")]
    updated_by: Annotated[str, msgspec.Meta(description="Who changed it last.")]


class SegmentPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[
        list[SegmentView],
        msgspec.Meta(
            description="The program's saved segments, the oldest first, at most `limit`."
        ),
    ]
    next_cursor: Annotated[
        str | None, msgspec.Meta(description="Pass as `cursor` for the next page; none: the last.")
    ]


class SegmentCount(msgspec.Struct, kw_only=True, frozen=True):
    segment: Annotated[str, msgspec.Meta(description="The segment's name.")]
    as_of: Annotated[
        str, msgspec.Meta(description="The moment it was counted at (ISO 8601, with offset).")
    ]
    members: Annotated[int, msgspec.Meta(description="Members in the segment at that moment.")]
