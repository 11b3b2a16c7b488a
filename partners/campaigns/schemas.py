"""Requests and answers of joint campaigns (msgspec; the bounds show in the
OpenAPI document)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

import msgspec

from ledger.bounds import (
    BIGINT_MAX,
    ExternalId,
    NonEmpty,
    Text50,
    Text200,
    check_moment,
    integer_range,
)
from ledger.bounds import Moment as _Moment
from partners.segments.definition import SegmentName

#: The whole, in basis points: shares add up to it.
WHOLE_BP = 10_000
#: Most participants of one campaign, stores and listed members.
MAX_PARTICIPANTS = 20
MAX_STORES = 200
MAX_LISTED_MEMBERS = 10_000
#: At most half the segment may be held out.
MAX_HOLDOUT_BP = 5_000

_SLUG = r"^[a-z0-9][a-z0-9-]{0,63}$"
PartnerSlug = Annotated[
    str, msgspec.Meta(pattern=_SLUG, description="A partner firm's (or store's) slug.")
]
Moment = _Moment


class ParticipantShare(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    partner: PartnerSlug
    share_bp: Annotated[
        int,
        integer_range(1, WHOLE_BP),
        msgspec.Meta(
            description="Its share of every bonus point and of the budget, in basis points"
            " (6,000 for 60%); the participants' shares add up to 10,000."
        ),
    ]


class SegmentKind(enum.StrEnum):
    #: Every active member of the program.
    ALL = "all"
    #: Active members in one of ``tiers``.
    TIERS = "tiers"
    #: Active members who earned at a partner of the program within ``active_within_days``.
    ACTIVE = "active"
    #: The members listed in ``members`` (by their id in the program).
    LIST = "list"
    #: The members of the saved segment ``saved`` (``partners.segments``).
    SAVED = "saved"


class Segment(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Who the campaign targets, drawn once at its start (later members are not in it)."""

    kind: Annotated[
        SegmentKind,
        msgspec.Meta(
            description="Who is targeted, always among the program's active members: `all`"
            " (every one); `tiers` (those whose tier code is one of `tiers`); `active` (those"
            " who earned at a partner of the program, or made a purchase, in the"
            " `active_within_days` days before the start); `list` (those of `members`);"
            " `saved` (those in the saved segment `saved` at the start, as it was defined"
            " when the campaign was proposed; a bonus then also needs the member in it at"
            " the purchase's time). Give the one field the kind names (none for `all`) and"
            " no other."
        ),
    ]
    tiers: (
        Annotated[
            list[Annotated[Text50, NonEmpty]],
            msgspec.Meta(min_length=1, max_length=50, description="Tier codes (kind `tiers`)."),
        ]
        | None
    ) = None
    active_within_days: (
        Annotated[
            int,
            integer_range(1, 3650),
            msgspec.Meta(description="Days before the start (kind `active`)."),
        ]
        | None
    ) = None
    members: (
        Annotated[
            list[ExternalId],
            msgspec.Meta(
                min_length=1,
                max_length=MAX_LISTED_MEMBERS,
                description="Members' ids in the program (kind `list`).",
            ),
        ]
        | None
    ) = None
    saved: (
        Annotated[
            SegmentName,
            msgspec.Meta(
                description="A saved segment of the program (kind `saved`); a partner may"
                " name only one offered to partners."
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        wanted = {
            SegmentKind.ALL: None,
            SegmentKind.TIERS: "tiers",
            SegmentKind.ACTIVE: "active_within_days",
            SegmentKind.LIST: "members",
            SegmentKind.SAVED: "saved",
        }[self.kind]
        for name in ("tiers", "active_within_days", "members", "saved"):
            given = getattr(self, name) is not None
            if given != (name == wanted):
                raise ValueError(
                    f"segment of kind {self.kind.value}: "
                    + (f"{name} is required" if not given else f"{name} does not apply")
                )


class BonusRules(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The bonus a purchase at a participating store earns a targeted member,
    on top of what the partner issued: each part rounded down to whole
    points, their sum capped."""

    points_per_currency_unit: Annotated[
        int,
        integer_range(0, 1_000_000),
        msgspec.Meta(
            description="Bonus points per whole unit of the program's currency spent (the"
            " purchase's amount, rounded down to whole units)."
        ),
    ] = 0
    multiplier_bp: Annotated[
        int,
        integer_range(0, 1_000_000),
        msgspec.Meta(
            description="Bonus as a share of the points the partner issued, in basis points"
            " (10,000 doubles them)."
        ),
    ] = 0
    min_spend_minor: Annotated[
        int,
        integer_range(0, BIGINT_MAX),
        msgspec.Meta(description="A purchase below this spend (minor units) earns no bonus."),
    ] = 0
    max_points_per_purchase: (
        Annotated[
            int,
            integer_range(1, BIGINT_MAX),
            msgspec.Meta(description="The most bonus points one purchase earns."),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        if self.points_per_currency_unit == 0 and self.multiplier_bp == 0:
            raise ValueError("a bonus needs points_per_currency_unit or multiplier_bp")


class CampaignProposal(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    reference: Annotated[
        ExternalId,
        msgspec.Meta(description="The proposer's id of the campaign, unique per program."),
    ]
    name: Annotated[Text200, NonEmpty, msgspec.Meta(description="The campaign's name.")]
    starts_at: Annotated[Moment, msgspec.Meta(description="When its bonus starts to apply.")]
    ends_at: Annotated[
        Moment,
        msgspec.Meta(description="When it stops (after starts_at); unspent budget goes back."),
    ]
    participants: Annotated[
        list[ParticipantShare],
        msgspec.Meta(
            min_length=1,
            max_length=MAX_PARTICIPANTS,
            description="The funding partners and their shares; a partner proposing is one.",
        ),
    ]
    segment: Annotated[
        Segment,
        msgspec.Meta(
            description="Who the campaign targets, drawn once at its start: members who join"
            " later are in neither the targeted group nor the holdout. Left out: every"
            " active member (kind `all`)."
        ),
    ] = msgspec.field(default_factory=lambda: Segment(kind=SegmentKind.ALL))
    rules: Annotated[
        BonusRules,
        msgspec.Meta(
            description="The bonus a targeted member earns on a purchase at a participating"
            " store while the campaign runs, on top of the points the partner issued; at least"
            " one of points_per_currency_unit and multiplier_bp must be above 0."
        ),
    ]
    budget_points: Annotated[
        int,
        integer_range(1, BIGINT_MAX),
        msgspec.Meta(description="The most bonus points it gives, split by the shares."),
    ]
    stores: (
        Annotated[
            list[PartnerSlug],
            msgspec.Meta(
                max_length=MAX_STORES,
                description="The participating stores (companies of a participant's group);"
                " left out: the participants themselves.",
            ),
        ]
        | None
    ) = None
    holdout_bp: Annotated[
        int,
        integer_range(0, MAX_HOLDOUT_BP),
        msgspec.Meta(
            description="Share of the segment held out (no bonus), in basis points, drawn at"
            " the start: their spend is the baseline of the campaign's effect."
        ),
    ] = 1_000

    def __post_init__(self) -> None:
        check_moment("starts_at", self.starts_at)
        check_moment("ends_at", self.ends_at)
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at: must come after starts_at")
        slugs = [p.partner for p in self.participants]
        if len(set(slugs)) != len(slugs):
            raise ValueError("participants: a partner appears twice")
        if sum(p.share_bp for p in self.participants) != WHOLE_BP:
            raise ValueError("participants: the shares must add up to 10,000 basis points (100%)")
        if self.stores is not None and len(set(self.stores)) != len(self.stores):
            raise ValueError("stores: a store appears twice")


class ParticipantView(msgspec.Struct, kw_only=True, frozen=True):
    partner: Annotated[str, msgspec.Meta(description="The participant's slug.")]
    share_bp: Annotated[int, msgspec.Meta(description="Its share, in basis points.")]
    budget_points: Annotated[int, msgspec.Meta(description="Its part of the budget.")]
    approved_at: Annotated[
        datetime | None, msgspec.Meta(description="When it approved; none yet: waiting.")
    ]


class CampaignView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The campaign's id.")]
    reference: Annotated[str, msgspec.Meta(description="The proposer's id of it.")]
    name: Annotated[str, msgspec.Meta(description="The campaign's name.")]
    status: Annotated[
        str,
        msgspec.Meta(
            description="proposed, approved (every participant did; starts at starts_at),"
            " running, unfunded (its start failed), stopped or ended."
        ),
    ]
    proposed_by: Annotated[str, msgspec.Meta(description="Who proposed it.")]
    starts_at: Annotated[datetime, msgspec.Meta(description="When its bonus starts to apply.")]
    ends_at: Annotated[datetime, msgspec.Meta(description="When it ends.")]
    participants: Annotated[list[ParticipantView], msgspec.Meta(description="Its funders.")]
    stores: Annotated[list[str], msgspec.Meta(description="The participating stores.")]
    segment: Annotated[Segment, msgspec.Meta(description="Who it targets.")]
    rules: Annotated[BonusRules, msgspec.Meta(description="Its bonus earn rules.")]
    budget_points: Annotated[int, msgspec.Meta(description="Its budget in points.")]
    holdout_bp: Annotated[int, msgspec.Meta(description="Share held out, in basis points.")]
    segment_size: Annotated[
        int | None, msgspec.Meta(description="Members in the segment at the start.")
    ]
    holdout_size: Annotated[int | None, msgspec.Meta(description="Of them, held out.")]
    started_at: Annotated[datetime | None, msgspec.Meta(description="When it started.")]
    closed_at: Annotated[
        datetime | None, msgspec.Meta(description="When it stopped applying (end or stop).")
    ]
    stopped_by: Annotated[str | None, msgspec.Meta(description="Who stopped it, if anyone.")]
    released_at: Annotated[
        datetime | None, msgspec.Meta(description="When its unspent budget went back.")
    ]
    failure: Annotated[str | None, msgspec.Meta(description="Why its start failed.")]
    replayed: Annotated[
        bool, msgspec.Meta(description="True when this answers an earlier identical proposal.")
    ] = False


class CampaignPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[
        list[CampaignView],
        msgspec.Meta(
            description="The campaigns the caller may see, the latest proposed first, at most"
            " `limit` of them."
        ),
    ]
    next_cursor: Annotated[
        str | None, msgspec.Meta(description="Pass as `cursor` for the next page; none: the last.")
    ]


class ParticipantFigures(msgspec.Struct, kw_only=True, frozen=True):
    partner: Annotated[str, msgspec.Meta(description="The participant's slug.")]
    spend_minor: Annotated[
        int, msgspec.Meta(description="Spend of targeted members at its stores while it ran.")
    ]
    cost_points: Annotated[int, msgspec.Meta(description="Bonus points its legs funded.")]
    budget_points: Annotated[int, msgspec.Meta(description="Its part of the budget.")]


class GroupFigures(msgspec.Struct, kw_only=True, frozen=True):
    members: Annotated[int, msgspec.Meta(description="Members in the group.")]
    spenders: Annotated[int, msgspec.Meta(description="Of them, who bought at a store.")]
    spend_minor: Annotated[int, msgspec.Meta(description="Their spend at the stores.")]
    spend_per_member_minor: Annotated[
        int, msgspec.Meta(description="spend_minor / members, rounded down (0 for none).")
    ]


class Attribution(msgspec.Struct, kw_only=True, frozen=True):
    campaign: Annotated[str, msgspec.Meta(description="The campaign's id.")]
    members_reached: Annotated[int, msgspec.Meta(description="Members who got a bonus.")]
    bonus_points: Annotated[int, msgspec.Meta(description="Bonus points issued.")]
    refused_bonuses: Annotated[
        int, msgspec.Meta(description="Bonuses the budget could no longer fund.")
    ]
    participants: Annotated[
        list[ParticipantFigures],
        msgspec.Meta(
            description="One entry per participant, in the proposal's order: the spend of"
            " targeted members (the holdout left out) at its stores, the bonus points its legs"
            " funded (its cost) and its part of the budget."
        ),
    ]
    targeted: Annotated[GroupFigures, msgspec.Meta(description="The segment less the holdout.")]
    holdout: Annotated[GroupFigures, msgspec.Meta(description="The holdout (no bonus).")]
    uplift_per_member_minor: Annotated[
        int,
        msgspec.Meta(
            description="Targeted spend per member less the holdout's: the campaign's"
            " incremental effect per member."
        ),
    ]
