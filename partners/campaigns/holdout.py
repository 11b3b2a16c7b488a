"""The segment a campaign targets, drawn once at its start, and its holdout.

The draw is reproducible: the segment's members are ranked by SHA-256 of
``<campaign id>:<member id>`` (ties, which SHA-256 makes all but
impossible, by member id), and the first ``floor(size * holdout_bp /
10,000)`` are held out. Nothing random: the same campaign over the same
segment draws the same holdout, and the draw is stored
(``campaign_members``), so attribution never depends on drawing again.
Members who join after the start are in neither group.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from partners.campaigns.models import Campaign
from partners.campaigns.schemas import WHOLE_BP, SegmentKind

_CONDITIONS: dict[SegmentKind, str] = {
    SegmentKind.ALL: "TRUE",
    SegmentKind.TIERS: "m.tier_code = ANY(CAST(:tiers AS text[]))",
    SegmentKind.ACTIVE: (
        "EXISTS (SELECT 1 FROM partner_issuances i"
        " WHERE i.member_id = m.id AND i.created_at >= :since AND i.created_at < :start)"
        " OR EXISTS (SELECT 1 FROM purchases p"
        " WHERE p.member_id = m.id AND p.occurred_at >= :since AND p.occurred_at < :start)"
    ),
    SegmentKind.LIST: "m.external_id = ANY(CAST(:members AS text[]))",
}

_DRAW = """
WITH segment AS (
    SELECT m.id FROM members m
     WHERE m.program_id = :program AND m.status = 'active' AND ({condition})
), ranked AS (
    SELECT id,
           row_number() OVER (
               ORDER BY sha256(convert_to(:campaign_key || ':' || id::text, 'UTF8')), id
           ) AS rank,
           count(*) OVER () AS size
      FROM segment
), drawn AS (
    INSERT INTO campaign_members (id, campaign_id, member_id, holdout, created_at, updated_at)
    SELECT gen_random_uuid(), :campaign, id, rank <= size * :holdout_bp / {whole}, now(), now()
      FROM ranked
    ON CONFLICT (campaign_id, member_id) DO NOTHING
    RETURNING holdout
)
SELECT count(*) AS size, count(*) FILTER (WHERE holdout) AS held_out FROM drawn
"""


async def draw_segment(session: AsyncSession, campaign: Campaign, now: datetime) -> tuple[int, int]:
    """Store the segment's members and which are held out; answers (size,
    held out)."""
    segment = campaign.segment
    kind = SegmentKind(segment["kind"])
    days = segment.get("active_within_days") or 0
    row = (
        await session.execute(
            text(_DRAW.format(condition=_CONDITIONS[kind], whole=WHOLE_BP)),
            {
                "program": campaign.program_id,
                "campaign": campaign.id,
                "campaign_key": str(campaign.id),
                "holdout_bp": campaign.holdout_bp,
                "tiers": segment.get("tiers") or [],
                "members": segment.get("members") or [],
                "since": now - timedelta(days=days),
                "start": now,
            },
        )
    ).one()
    return int(row.size), int(row.held_out)
