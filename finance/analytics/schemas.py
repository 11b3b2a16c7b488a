"""The analytics' answers (msgspec; every field described for the OpenAPI
document). Money in the program's currency's minor units; rates as decimal
strings, never floats."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import msgspec


class MemberValue(msgspec.Struct, kw_only=True, frozen=True):
    member: Annotated[str, msgspec.Meta(description="The member's id in the program.")]
    as_of: Annotated[datetime, msgspec.Meta(description="Everything up to this moment.")]
    revenue_minor: Annotated[
        int,
        msgspec.Meta(
            description="The member's purchases: the program's own (less returns) and those"
            " partners reported, in the program's currency."
        ),
    ]
    points_earned: Annotated[
        int,
        msgspec.Meta(
            description="Points credited to the wallet (earnings, bonuses, bought, received"
            " from partners), gifts and restorations left out."
        ),
    ]
    points_redeemed: Annotated[
        int,
        msgspec.Meta(
            description="Points spent (rewards, payments, at partners), net of cancellations."
        ),
    ]
    points_outstanding: Annotated[
        int, msgspec.Meta(description="Points in the wallet, less what the member owes back.")
    ]
    point_value_minor: Annotated[
        str, msgspec.Meta(description="The point value in force at `as_of` (decimal).")
    ]
    points_cost_minor: Annotated[
        int,
        msgspec.Meta(
            description="(points_redeemed + points_outstanding) x point_value_minor, rounded"
            " half to even: what the points cost the program (redeemed) or owe (outstanding)."
        ),
    ]
    relationship_value_minor: Annotated[
        int,
        msgspec.Meta(description="revenue_minor - points_cost_minor (the cost to serve)."),
    ]


class CohortCurveView(msgspec.Struct, kw_only=True, frozen=True):
    cohort: Annotated[date, msgspec.Meta(description="The month earned (its first day).")]
    age: Annotated[int, msgspec.Meta(description="Months from the cohort to the period.")]
    issued: Annotated[int, msgspec.Meta(description="Points issued into the cohort, net.")]
    expired: Annotated[
        int, msgspec.Meta(description="Points of it expired, net of reinstatements.")
    ]
    redeemed: Annotated[
        list[int],
        msgspec.Meta(description="Cumulative points redeemed by age 0, 1, ... age."),
    ]
    redeemed_share: Annotated[
        list[str],
        msgspec.Meta(
            description="The same over `issued`, as decimals to 6 places (empty when nothing"
            " was issued)."
        ),
    ]


class RedemptionCurves(msgspec.Struct, kw_only=True, frozen=True):
    period: Annotated[str, msgspec.Meta(description="The month (YYYY-MM) they run to.")]
    cohorts: Annotated[
        list[CohortCurveView],
        msgspec.Meta(description="One curve per cohort, the oldest first (breakage's own)."),
    ]


class ProgramRoi(msgspec.Struct, kw_only=True, frozen=True):
    period: Annotated[str, msgspec.Meta(description="The month (YYYY-MM).")]
    member_revenue_minor: Annotated[
        int, msgspec.Meta(description="The program's own purchases in the month, less returns.")
    ]
    partner_revenue_minor: Annotated[
        int,
        msgspec.Meta(description="Billed to partners in the month (statements' settlement lines)."),
    ]
    points_issued: Annotated[
        int, msgspec.Meta(description="Points the program itself issued in the month (posted).")
    ]
    points_cost_minor: Annotated[
        int, msgspec.Meta(description="points_issued x the point value at the month's end.")
    ]
    partner_reimbursements_minor: Annotated[
        int, msgspec.Meta(description="Owed to partners in the month for points redeemed there.")
    ]
    roi: Annotated[
        str | None,
        msgspec.Meta(
            description="(revenue - cost) / cost, to 6 places; null with no cost. Revenue is"
            " gross (not incremental): compare months, not programs."
        ),
    ]


class CampaignRoi(msgspec.Struct, kw_only=True, frozen=True):
    campaign: Annotated[str, msgspec.Meta(description="The campaign's id.")]
    targeted_members: Annotated[int, msgspec.Meta(description="The segment less the holdout.")]
    uplift_per_member_minor: Annotated[
        int, msgspec.Meta(description="Targeted spend per member less the holdout's (attribution).")
    ]
    uplift_revenue_minor: Annotated[
        int, msgspec.Meta(description="uplift_per_member_minor x targeted_members.")
    ]
    bonus_points: Annotated[int, msgspec.Meta(description="Bonus points the campaign gave.")]
    bonus_cost_minor: Annotated[
        int, msgspec.Meta(description="bonus_points x the point value now, half to even.")
    ]
    roi: Annotated[
        str | None,
        msgspec.Meta(description="(uplift_revenue - bonus_cost) / bonus_cost; null with no cost."),
    ]


class PartnerProfitabilityLine(msgspec.Struct, kw_only=True, frozen=True):
    partner: Annotated[str, msgspec.Meta(description="The partner's slug.")]
    currency: Annotated[str, msgspec.Meta(description="The money ledger's currency.")]
    points_issued: Annotated[
        int, msgspec.Meta(description="Points it issued to members in the period.")
    ]
    points_redeemed: Annotated[
        int,
        msgspec.Meta(description="Points members redeemed at it in the period, net of refunds."),
    ]
    billed_minor: Annotated[
        int, msgspec.Meta(description="What its statements billed it in the period.")
    ]
    paid_in_minor: Annotated[
        int, msgspec.Meta(description="Payments received from it, and prepaid credit drawn.")
    ]
    reimbursed_minor: Annotated[
        int,
        msgspec.Meta(
            description="What the program came to owe it in the period: redemptions at it"
            " (net of refunds billed back), referral and development fund payments."
        ),
    ]
    paid_out_minor: Annotated[int, msgspec.Meta(description="Payouts made to it in the period.")]
    net_contribution_minor: Annotated[
        int, msgspec.Meta(description="billed_minor - reimbursed_minor: what it brought in.")
    ]
    balance_minor: Annotated[
        int,
        msgspec.Meta(
            description="At the period's end: what it owes the program less what the program"
            " owes it (its receivable less its payable)."
        ),
    ]


class PartnerProfitability(msgspec.Struct, kw_only=True, frozen=True):
    period: Annotated[str, msgspec.Meta(description="The month (YYYY-MM), in the program's zone.")]
    partners: Annotated[
        list[PartnerProfitabilityLine],
        msgspec.Meta(description="One line per partner of the program, by slug."),
    ]
