"""The bonus of a purchase at a participating store, funded by the
participants in one linked multi-leg ledger posting.

The seam: a partner's issuance (``partners.issuance_recording``) writes its
``partner.points_issued`` event in the transaction of the issuance; this
module subscribes to it (``partners.campaigns.module``), so the bonus is
posted by the outbox's drain, in the transaction that marks the event
handled: after the issuance committed, exactly once (a row per campaign and
issuance, unique, and ledger ids derived from them).

The rounding rule (``split``): each participant's leg is its share of the
points rounded down; the points left over (fewer than the participants) go
one each to the largest remainders, ties to the participant listed first in
the proposal. The legs always add up to the whole bonus; the budget is split
by the same rule.

A campaign targeting a saved segment gives a bonus only to a member drawn
at the start who is still in the segment (its definition as proposed)
just before the purchase.

The budget is never overspent, whatever the race: each leg debits the
participant's campaign budget account, which is bounded (debits must not
exceed credits), and the legs are one linked chain, so that a leg beyond
its budget fails the whole bonus atomically (``exceeds_credits``, recorded
as a refused bonus) and nothing moves.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode, derived_id
from core.models import Program
from core.outbox import BatchSubscriber, OutboxEvent
from ledger import Transfer, TransferFlags
from ledger.writer import post_batch
from partners.campaigns.schemas import WHOLE_BP, BonusRules, SegmentKind
from partners.segments.compiler import resolve
from partners.segments.definition import SegmentDefinition
from partners.segments.errors import InvalidSegment
from partners.segments.members import is_member
from rewards.connections import session_connection


def split(points: int, shares_bp: Sequence[int]) -> list[int]:
    """``points`` split by ``shares_bp`` (adding up to 10,000), in whole
    points adding up to ``points``: largest remainder, ties to the earlier."""
    if sum(shares_bp) != WHOLE_BP:
        raise ValueError("shares must add up to 10,000 basis points")
    if points < 0:
        raise ValueError("points must not be negative")
    exact = [points * share for share in shares_bp]
    parts = [value // WHOLE_BP for value in exact]
    left = points - sum(parts)
    # Largest remainder first; among equal remainders, the earlier position.
    order = sorted(range(len(parts)), key=lambda i: (-(exact[i] % WHOLE_BP), i))
    for i in order[:left]:
        parts[i] += 1
    assert sum(parts) == points
    return parts


def bonus_points(
    rules: BonusRules, spend_minor: int | None, issued_points: int, minor_per_major: int
) -> int:
    """What a purchase earns under the campaign's rules: each part rounded
    down to whole points, their sum capped."""
    spend = spend_minor or 0
    if spend < rules.min_spend_minor:
        return 0
    by_spend = (spend // minor_per_major) * rules.points_per_currency_unit
    by_points = issued_points * rules.multiplier_bp // WHOLE_BP
    total = by_spend + by_points
    if rules.max_points_per_purchase is not None:
        total = min(total, rules.max_points_per_purchase)
    return total


def bonus_leg_id(
    program_id: uuid.UUID, campaign_id: uuid.UUID, issuance_id: uuid.UUID, partner_id: uuid.UUID
) -> uuid.UUID:
    return derived_id(
        program_id, "campaign-bonus", str(campaign_id), str(issuance_id), str(partner_id)
    )


# The issuance and every running campaign at its store whose window holds
# it, the campaign row shared-locked: a stop (which takes it for update)
# waits for this bonus to commit, and a bonus after the stop sees it closed.
_CAMPAIGNS = text(
    """
    SELECT c.id, c.rules, c.segment, p.id AS program_id, p.ledger_id, p.minor_per_major,
           i.member_id, i.company_id, i.points, i.purchase_amount_minor, i.created_at,
           m.wallet_account_id
      FROM partner_issuances i
      JOIN programs p ON p.id = i.program_id
      JOIN members m ON m.id = i.member_id
      JOIN campaign_stores s ON s.company_id = i.company_id
      JOIN campaigns c ON c.id = s.campaign_id AND c.program_id = i.program_id
      JOIN campaign_members cm
        ON cm.campaign_id = c.id AND cm.member_id = i.member_id AND NOT cm.holdout
     WHERE i.id = :issuance
       AND c.status = 'running'
       AND c.starts_at <= i.created_at AND i.created_at < c.ends_at
     ORDER BY c.id
       FOR SHARE OF c
    """
)

_PARTICIPANTS = text(
    """
    SELECT partner_id, share_bp, budget_account_id
      FROM campaign_participants
     WHERE campaign_id = :campaign
     ORDER BY position
    """
)

_CLAIM = text(
    """
    INSERT INTO campaign_bonuses
        (id, campaign_id, issuance_id, member_id, company_id, points, legs, refused,
         created_at, updated_at)
    VALUES (:id, :campaign, :issuance, :member, :company, :points, CAST(:legs AS jsonb), NULL,
            now(), now())
    ON CONFLICT (campaign_id, issuance_id) DO NOTHING
    RETURNING id
    """
)

_REFUSE = text("UPDATE campaign_bonuses SET refused = :refused, legs = '{}' WHERE id = :id")


async def apply_campaign_bonuses(session: AsyncSession, issuance_id: uuid.UUID) -> int:
    """Give the bonus of every running campaign that targets this issuance's
    member at its store, in the session's transaction (the ledger's lock is
    held from the posting to its end: nothing after may wait on the ledger's
    writer). Answers the bonus points posted. Idempotent by (campaign,
    issuance)."""
    rows = (await session.execute(_CAMPAIGNS, {"issuance": issuance_id})).all()
    posted = 0
    for row in rows:
        if row.segment.get("kind") == SegmentKind.SAVED and not await _in_saved_segment(
            session, row.program_id, row.segment["definition"], row.member_id, row.created_at
        ):
            continue
        rules = msgspec.convert(row.rules, BonusRules)
        points = bonus_points(rules, row.purchase_amount_minor, row.points, row.minor_per_major)
        if points <= 0:
            continue
        participants = (await session.execute(_PARTICIPANTS, {"campaign": row.id})).all()
        legs = split(points, [p.share_bp for p in participants])
        funded = [(p, leg) for p, leg in zip(participants, legs, strict=True) if leg > 0]
        bonus_id = derived_id(row.program_id, "campaign-bonus", str(row.id), str(issuance_id))
        claimed = await session.scalar(
            _CLAIM,
            {
                "id": bonus_id,
                "campaign": row.id,
                "issuance": issuance_id,
                "member": row.member_id,
                "company": row.company_id,
                "points": points,
                "legs": msgspec.json.encode({str(p.partner_id): leg for p, leg in funded}).decode(),
            },
        )
        if claimed is None:
            continue  # given before: an event handled twice moves nothing twice
        transfers = [
            Transfer(
                id=bonus_leg_id(row.program_id, row.id, issuance_id, p.partner_id),
                debit_account_id=p.budget_account_id,
                credit_account_id=row.wallet_account_id,
                amount=leg,
                ledger=row.ledger_id,
                code=TransferCode.CAMPAIGN_BONUS,
                # One chain: every leg or none.
                flags=TransferFlags.LINKED if n < len(funded) - 1 else TransferFlags.NONE,
                metadata={"campaign": str(row.id), "issuance": str(issuance_id)},
            )
            for n, (p, leg) in enumerate(funded)
        ]
        [outcomes] = await post_batch(await session_connection(session), [transfers])
        if all(o.result in ("ok", "exists") for o in outcomes):
            posted += points
            continue
        cause = next(
            (o.result for o in outcomes if o.result not in ("ok", "exists", "linked_event_failed")),
            outcomes[0].result,
        )
        await session.execute(_REFUSE, {"refused": str(cause), "id": bonus_id})
    return posted


async def _in_saved_segment(
    session: AsyncSession,
    program_id: uuid.UUID,
    definition: dict[str, Any],
    member_id: uuid.UUID,
    at: datetime,
) -> bool:
    """Whether the member is in the campaign's saved segment at the
    purchase's time (a definition that no longer compiles holds no one)."""
    program = await session.get_one(Program, program_id)
    try:
        resolved = await resolve(session, program, msgspec.convert(definition, SegmentDefinition))
    except InvalidSegment:
        return False
    # Just before the purchase: the purchase being rewarded does not qualify itself.
    return await is_member(session, program, resolved, member_id, at - timedelta(microseconds=1))


async def _bonuses_of(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    for event in events:
        issuance = event.payload.get("issuance_id")
        if isinstance(issuance, str):
            await apply_campaign_bonuses(session, uuid.UUID(issuance))


#: The subscriber of ``partner.points_issued`` (``partners.campaigns.module``).
on_points_issued = BatchSubscriber(_bonuses_of)


__all__ = ["apply_campaign_bonuses", "bonus_points", "on_points_issued", "split"]
