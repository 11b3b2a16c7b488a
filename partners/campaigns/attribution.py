"""What a campaign achieved, for its participants and the operator: members
reached, bonus points issued, spend and cost per participant, and the
spend of the targeted members against the holdout's (the campaign's
incremental effect, not only its cost).

Spend is what members spent at the campaign's stores while it applied
(from its start to its end or stop), as partners reported it with their
issuances (``purchase_amount_minor``). Figures are read from the rows and
agree with the ledger: a bonus's legs are its transfers.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from core.principal import Principal
from partners.campaigns.proposals import find_campaign
from partners.campaigns.schemas import Attribution, GroupFigures, ParticipantFigures

_BONUSES = text(
    """
    SELECT count(DISTINCT member_id) FILTER (WHERE refused IS NULL) AS reached,
           coalesce(sum(points) FILTER (WHERE refused IS NULL), 0) AS points,
           count(*) FILTER (WHERE refused IS NOT NULL) AS refused
      FROM campaign_bonuses WHERE campaign_id = :campaign
    """
)

_PARTICIPANTS = text(
    """
    SELECT p.slug, cp.budget_points,
           coalesce((SELECT sum(CAST(b.legs ->> CAST(cp.partner_id AS text) AS bigint))
                       FROM campaign_bonuses b
                      WHERE b.campaign_id = cp.campaign_id AND b.refused IS NULL), 0) AS cost,
           coalesce((SELECT sum(i.purchase_amount_minor)
                       FROM campaign_stores s
                       JOIN partner_issuances i ON i.company_id = s.company_id
                       JOIN campaign_members cm
                         ON cm.campaign_id = s.campaign_id AND cm.member_id = i.member_id
                      WHERE s.campaign_id = cp.campaign_id AND s.participant_id = cp.partner_id
                        AND NOT cm.holdout
                        AND i.created_at >= :since AND i.created_at < :until), 0) AS spend
      FROM campaign_participants cp
      JOIN partners p ON p.id = cp.partner_id
     WHERE cp.campaign_id = :campaign
     ORDER BY cp.position
    """
)

_GROUPS = text(
    """
    SELECT cm.holdout,
           count(*) AS members,
           count(*) FILTER (WHERE spent.total IS NOT NULL) AS spenders,
           coalesce(sum(spent.total), 0) AS spend
      FROM campaign_members cm
      LEFT JOIN LATERAL (
          SELECT sum(i.purchase_amount_minor) AS total
            FROM partner_issuances i
            JOIN campaign_stores s ON s.company_id = i.company_id AND s.campaign_id = cm.campaign_id
           WHERE i.member_id = cm.member_id
             AND i.created_at >= :since AND i.created_at < :until
             AND i.purchase_amount_minor IS NOT NULL
      ) spent ON TRUE
     WHERE cm.campaign_id = :campaign
     GROUP BY cm.holdout
    """
)


def _group(members: int, spenders: int, spend: int) -> GroupFigures:
    return GroupFigures(
        members=members,
        spenders=spenders,
        spend_minor=spend,
        spend_per_member_minor=spend // members if members else 0,
    )


async def campaign_attribution(
    session: AsyncSession,
    program: Program,
    campaign_id: uuid.UUID,
    now: datetime,
    *,
    principal: Principal,
) -> Attribution:
    campaign = await find_campaign(session, program, campaign_id, principal=principal)
    since = campaign.started_at or campaign.starts_at
    until = campaign.closed_at or min(now, campaign.ends_at)
    window = {"campaign": campaign.id, "since": since, "until": until}
    bonuses = (await session.execute(_BONUSES, {"campaign": campaign.id})).one()
    participants = [
        ParticipantFigures(
            partner=row.slug,
            spend_minor=int(row.spend),
            cost_points=int(row.cost),
            budget_points=int(row.budget_points),
        )
        for row in (await session.execute(_PARTICIPANTS, window)).all()
    ]
    groups = {
        row.holdout: _group(int(row.members), int(row.spenders), int(row.spend))
        for row in (await session.execute(_GROUPS, window)).all()
    }
    targeted = groups.get(False, _group(0, 0, 0))
    holdout = groups.get(True, _group(0, 0, 0))
    return Attribution(
        campaign=str(campaign.id),
        members_reached=int(bonuses.reached),
        bonus_points=int(bonuses.points),
        refused_bonuses=int(bonuses.refused),
        participants=participants,
        targeted=targeted,
        holdout=holdout,
        uplift_per_member_minor=targeted.spend_per_member_minor - holdout.spend_per_member_minor,
    )
