"""The segment a campaign targets, drawn once at its start, and its holdout.

The draw is reproducible: the segment's members are ranked by SHA-256 of
``<campaign id>:<member id>`` (ties, which SHA-256 makes all but
impossible, by member id), and the first ``floor(size * holdout_bp /
10,000)`` are held out. Nothing random: the same campaign over the same
segment draws the same holdout, and the draw is stored
(``campaign_members``), so attribution never depends on drawing again.
Members who join after the start are in neither group.

A saved segment (kind ``saved``) is drawn from the definition the proposal
copied, as of the start (``partners.segments``); one that no longer
compiles against the program (a tier it names was removed) draws no one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec
from sqlalchemy import DateTime, Text, Uuid, cast, func, literal, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from partners.campaigns.models import Campaign, CampaignMember
from partners.campaigns.schemas import WHOLE_BP, SegmentKind
from partners.segments.compiler import resolve, segment_query
from partners.segments.definition import SegmentDefinition
from partners.segments.errors import InvalidSegment

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
    SegmentKind.SAVED: "FALSE",  # drawn by _draw_saved
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
    if kind is SegmentKind.SAVED:
        return await _draw_saved(session, campaign, now)
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


async def _draw_saved(session: AsyncSession, campaign: Campaign, now: datetime) -> tuple[int, int]:
    """The draw above, over the members of the campaign's saved segment."""
    program = await session.get_one(Program, campaign.program_id)
    definition = msgspec.convert(campaign.segment["definition"], SegmentDefinition)
    try:
        resolved = await resolve(session, program, definition)
    except InvalidSegment:
        return 0, 0
    members = segment_query(program, resolved, now).subquery("segment")
    key = literal(str(campaign.id)) + ":" + cast(members.c.id, Text)
    ranked = select(
        members.c.id,
        func.row_number()
        .over(order_by=(func.sha256(func.convert_to(key, "UTF8")), members.c.id))
        .label("rank"),
        func.count().over().label("size"),
    ).subquery("ranked")
    at = literal(now, DateTime(timezone=True))
    drawn = (
        insert(CampaignMember)
        .from_select(
            ["id", "campaign_id", "member_id", "holdout", "created_at", "updated_at"],
            select(
                func.gen_random_uuid(),
                literal(campaign.id, Uuid),
                ranked.c.id,
                # rank <= floor(size * holdout_bp / 10,000), in integers.
                ranked.c.rank * WHOLE_BP <= ranked.c.size * campaign.holdout_bp,
                at,
                at,
            ),
        )
        .on_conflict_do_nothing(index_elements=["campaign_id", "member_id"])
        .returning(CampaignMember.holdout)
        .cte("drawn")
    )
    row = (
        await session.execute(
            select(func.count(), func.count().filter(drawn.c.holdout)).select_from(drawn)
        )
    ).one()
    return int(row[0]), int(row[1])
