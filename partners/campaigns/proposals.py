"""Proposing a joint campaign, each participant's approval, and its stop by
any participant (or the operator).

Who sees a campaign: the operator of its program, and its participants
(a partner principal whose reach holds one of them). Anyone else is
answered as if it did not exist (``NotFound``): a partner that does not
take part sees nothing of it. A partner that proposes takes part, and its
proposal is its own approval.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.codes import derived_id
from core.errors import AlreadyExists, Forbidden, NotFound
from core.models import Program
from core.pagination import Page, decode_cursor, encode_cursor
from core.principal import Principal, PrincipalKind
from partners import events
from partners.campaigns.bonus import split
from partners.campaigns.errors import CampaignNotOpen, InvalidCampaign
from partners.campaigns.models import (
    STOPPABLE,
    Campaign,
    CampaignParticipant,
    CampaignStatus,
    CampaignStore,
)
from partners.campaigns.schemas import (
    BonusRules,
    CampaignProposal,
    CampaignView,
    ParticipantView,
    Segment,
    SegmentKind,
)
from partners.models import Partner, PartnerStatus
from partners.segments.compiler import resolve
from partners.segments.models import SavedSegment
from partners.segments.saved import definition_of

SCOPE = "campaigns:manage"
#: How far up a store's hierarchy its participant is looked for.
_DEPTH = 16


def budget_account_id(
    program_id: uuid.UUID, campaign_id: uuid.UUID, partner_id: uuid.UUID
) -> uuid.UUID:
    """A participant's budget account for one campaign."""
    return derived_id(program_id, "campaign", str(campaign_id), str(partner_id), "budget")


def _check_program(program: Program, principal: Principal) -> None:
    if not principal.sees_program(program.id):
        raise NotFound("no program")


async def propose_campaign(
    session: AsyncSession,
    program: Program,
    request: CampaignProposal,
    now: datetime,
    *,
    principal: Principal,
) -> CampaignView:
    """Record a proposal, audited, with an event to every participant. A
    partner proposing is a participant and approves its share by proposing."""
    if principal.kind is PrincipalKind.PARTNER:
        principal.require(SCOPE)
    _check_program(program, principal)
    if request.ends_at <= now:
        raise InvalidCampaign("ends_at: the campaign would be over before it could start")
    slugs = [p.partner for p in request.participants]
    found = {
        p.slug: p
        for p in await session.scalars(
            select(Partner).where(Partner.program_id == program.id, Partner.slug.in_(slugs))
        )
    }
    for slug in slugs:
        firm = found.get(slug)
        if firm is None:
            raise InvalidCampaign(f"participants: no partner {slug!r} in this program")
        if firm.status != PartnerStatus.ACTIVE:
            raise InvalidCampaign(f"participants: partner {slug!r} is not active")
    proposer: Partner | None = None
    if principal.kind is PrincipalKind.PARTNER:
        mine = [found[s] for s in slugs if found[s].id in principal.partner_ids]
        if not mine:
            raise InvalidCampaign("participants: a partner proposing takes part in its campaign")
        proposer = next((f for f in mine if f.id == principal.partner_id), mine[0])
    participant_ids = {found[s].id for s in slugs}
    stores = await _stores(session, program, request.stores or slugs, participant_ids)
    if await session.scalar(
        select(
            exists().where(
                Campaign.program_id == program.id, Campaign.reference == request.reference
            )
        )
    ):
        raise AlreadyExists(
            f"a campaign with the reference {request.reference!r} exists", field="reference"
        )
    campaign = Campaign(
        id=uuid.uuid4(),
        program_id=program.id,
        reference=request.reference,
        name=request.name,
        proposed_by_partner_id=proposer.id if proposer else None,
        proposed_by=principal.actor,
        starts_at=request.starts_at,
        ends_at=request.ends_at,
        status=CampaignStatus.PROPOSED,
        segment=await _segment_of(session, program, request.segment, principal),
        rules=msgspec.to_builtins(request.rules),
        budget_points=request.budget_points,
        holdout_bp=request.holdout_bp,
    )
    session.add(campaign)
    await session.flush()
    budgets = split(request.budget_points, [p.share_bp for p in request.participants])
    for position, (share, budget) in enumerate(zip(request.participants, budgets, strict=True)):
        firm = found[share.partner]
        own = proposer is not None and firm.id == proposer.id
        session.add(
            CampaignParticipant(
                campaign_id=campaign.id,
                partner_id=firm.id,
                position=position,
                share_bp=share.share_bp,
                budget_points=budget,
                budget_account_id=budget_account_id(program.id, campaign.id, firm.id),
                approved_at=now if own else None,
                approved_by=principal.actor if own else None,
            )
        )
    for company_id, participant_id in stores.items():
        session.add(
            CampaignStore(
                campaign_id=campaign.id, company_id=company_id, participant_id=participant_id
            )
        )
    await session.flush()
    if len(slugs) == 1 and proposer is not None:
        campaign.status = CampaignStatus.APPROVED
    await audit.record(
        session,
        principal,
        "campaign.propose",
        f"program:{program.slug}:campaign:{request.reference}",
        {
            "participants": {p.partner: p.share_bp for p in request.participants},
            "budget_points": request.budget_points,
        },
    )
    await _tell(session, campaign, events.CAMPAIGN_PROPOSED, found.values())
    return await campaign_view(session, campaign)


async def _segment_of(
    session: AsyncSession, program: Program, segment: Segment, principal: Principal
) -> dict[str, Any]:
    """The segment as stored: a saved segment's definition is copied in, so
    that a later change of the saved segment does not move the target its
    participants approved."""
    stored: dict[str, Any] = msgspec.to_builtins(segment)
    if segment.kind is not SegmentKind.SAVED:
        return stored
    saved = await session.scalar(
        select(SavedSegment).where(
            SavedSegment.program_id == program.id, SavedSegment.name == segment.saved
        )
    )
    if saved is None or (principal.kind is PrincipalKind.PARTNER and not saved.offered_to_partners):
        offered = " offered to partners" if principal.kind is PrincipalKind.PARTNER else ""
        raise InvalidCampaign(f"segment: no saved segment {segment.saved!r}{offered}")
    await resolve(session, program, definition_of(saved))
    return stored | {"definition": saved.definition}


async def _stores(
    session: AsyncSession, program: Program, slugs: list[str], participants: set[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """Store id -> the participant whose group it is in (itself, or its
    nearest ancestor taking part)."""
    rows = {
        p.slug: p
        for p in await session.scalars(
            select(Partner).where(Partner.program_id == program.id, Partner.slug.in_(slugs))
        )
    }
    found: dict[uuid.UUID, uuid.UUID] = {}
    for slug in slugs:
        store = rows.get(slug)
        if store is None:
            raise InvalidCampaign(f"stores: no partner {slug!r} in this program")
        at: Partner | None = store
        for _ in range(_DEPTH):
            if at is None or at.id in participants:
                break
            at = await session.get(Partner, at.parent_id) if at.parent_id else None
        if at is None or at.id not in participants:
            raise InvalidCampaign(f"stores: {slug!r} is in no participant's group")
        found[store.id] = at.id
    return found


async def _tell(
    session: AsyncSession, campaign: Campaign, topic: str, firms: Iterable[Partner]
) -> None:
    for firm in firms:
        await outbox.emit(
            session,
            topic,
            events.subject(firm.id),
            {
                "campaign_id": str(campaign.id),
                "reference": campaign.reference,
                "name": campaign.name,
                "status": campaign.status,
            },
        )


def _visible(principal: Principal) -> list[ColumnElement[bool]]:
    """Conditions a campaign meets to be the principal's to see."""
    if principal.kind is not PrincipalKind.PARTNER:
        return []
    return [
        exists().where(
            CampaignParticipant.campaign_id == Campaign.id,
            CampaignParticipant.partner_id.in_(principal.partner_ids),
        )
    ]


async def find_campaign(
    session: AsyncSession,
    program: Program,
    campaign_id: uuid.UUID,
    *,
    principal: Principal,
    lock: bool = False,
) -> Campaign:
    """The campaign, if the principal may see it (else ``NotFound``)."""
    _check_program(program, principal)
    query = select(Campaign).where(
        Campaign.id == campaign_id, Campaign.program_id == program.id, *_visible(principal)
    )
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    found = await session.scalar(query)
    if found is None:
        raise NotFound("no campaign")
    return found


async def get_campaign(
    session: AsyncSession, program: Program, campaign_id: uuid.UUID, *, principal: Principal
) -> CampaignView:
    return await campaign_view(
        session, await find_campaign(session, program, campaign_id, principal=principal)
    )


async def list_campaigns(
    session: AsyncSession,
    program: Program,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
) -> Page[CampaignView]:
    """The campaigns the principal may see, newest first."""
    _check_program(program, principal)
    query = select(Campaign).where(Campaign.program_id == program.id, *_visible(principal))
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(Campaign.id < after)
    rows = list(await session.scalars(query.order_by(Campaign.id.desc()).limit(limit + 1)))
    views = [await campaign_view(session, c) for c in rows[:limit]]
    if len(rows) > limit:
        return Page(items=views, next_cursor=encode_cursor(rows[limit - 1].id))
    return Page(items=views)


async def approve_campaign(
    session: AsyncSession,
    program: Program,
    campaign_id: uuid.UUID,
    now: datetime,
    *,
    principal: Principal,
) -> CampaignView:
    """The principal's participants approve their shares; once every one
    has, the campaign is approved and starts at its start (the start job).
    Approving again changes nothing."""
    if principal.kind is not PrincipalKind.PARTNER:
        raise Forbidden("a participant approves its own share: the operator cannot")
    principal.require(SCOPE)
    campaign = await find_campaign(session, program, campaign_id, principal=principal, lock=True)
    participants = await _participants(session, campaign)
    mine = [p for p in participants if p.partner_id in principal.partner_ids]
    waiting = [p for p in mine if p.approved_at is None]
    if not waiting:
        return await campaign_view(session, campaign)
    if campaign.status != CampaignStatus.PROPOSED:
        raise CampaignNotOpen(f"the campaign is {campaign.status}: it can no longer be approved")
    for p in waiting:
        p.approved_at = now
        p.approved_by = principal.actor
    if all(p.approved_at is not None for p in participants):
        campaign.status = CampaignStatus.APPROVED
    await session.flush()
    await audit.record(
        session,
        principal,
        "campaign.approve",
        f"program:{program.slug}:campaign:{campaign.reference}",
        {"status": campaign.status},
    )
    firms = await session.scalars(
        select(Partner).where(Partner.id.in_([p.partner_id for p in participants]))
    )
    await _tell(session, campaign, events.CAMPAIGN_APPROVED, list(firms))
    return await campaign_view(session, campaign)


async def stop_campaign(
    session: AsyncSession,
    program: Program,
    campaign_id: uuid.UUID,
    now: datetime,
    *,
    principal: Principal,
) -> CampaignView:
    """Stop the campaign now: its bonus no longer applies (a bonus being
    given at this moment commits first: the stop waits for it), and the
    end job gives the unspent budget back. Stopping again changes nothing."""
    if principal.kind is PrincipalKind.PARTNER:
        principal.require(SCOPE)
    campaign = await find_campaign(session, program, campaign_id, principal=principal, lock=True)
    if campaign.status == CampaignStatus.STOPPED:
        return await campaign_view(session, campaign)
    if campaign.status not in STOPPABLE:
        raise CampaignNotOpen(f"the campaign is {campaign.status}: there is nothing to stop")
    campaign.status = CampaignStatus.STOPPED
    campaign.closed_at = now
    campaign.stopped_by = principal.actor
    await session.flush()
    await audit.record(
        session,
        principal,
        "campaign.stop",
        f"program:{program.slug}:campaign:{campaign.reference}",
        {},
    )
    participants = await _participants(session, campaign)
    firms = await session.scalars(
        select(Partner).where(Partner.id.in_([p.partner_id for p in participants]))
    )
    await _tell(session, campaign, events.CAMPAIGN_STOPPED, list(firms))
    return await campaign_view(session, campaign)


async def _participants(session: AsyncSession, campaign: Campaign) -> list[CampaignParticipant]:
    return list(
        await session.scalars(
            select(CampaignParticipant)
            .where(CampaignParticipant.campaign_id == campaign.id)
            .order_by(CampaignParticipant.position)
            .execution_options(populate_existing=True)
        )
    )


async def campaign_view(session: AsyncSession, campaign: Campaign) -> CampaignView:
    participants = (
        await session.execute(
            select(CampaignParticipant, Partner.slug)
            .join(Partner, Partner.id == CampaignParticipant.partner_id)
            .where(CampaignParticipant.campaign_id == campaign.id)
            .order_by(CampaignParticipant.position)
        )
    ).all()
    stores = await session.scalars(
        select(Partner.slug)
        .join(CampaignStore, CampaignStore.company_id == Partner.id)
        .where(CampaignStore.campaign_id == campaign.id)
        .order_by(Partner.slug)
    )
    return CampaignView(
        id=str(campaign.id),
        reference=campaign.reference,
        name=campaign.name,
        status=campaign.status,
        proposed_by=campaign.proposed_by,
        starts_at=campaign.starts_at,
        ends_at=campaign.ends_at,
        participants=[
            ParticipantView(
                partner=slug,
                share_bp=p.share_bp,
                budget_points=p.budget_points,
                approved_at=p.approved_at,
            )
            for p, slug in participants
        ],
        stores=list(stores),
        segment=msgspec.convert(
            {k: v for k, v in campaign.segment.items() if k != "definition"}, Segment
        ),
        rules=msgspec.convert(campaign.rules, BonusRules),
        budget_points=campaign.budget_points,
        holdout_bp=campaign.holdout_bp,
        segment_size=campaign.segment_size,
        holdout_size=campaign.holdout_size,
        started_at=campaign.started_at,
        closed_at=campaign.closed_at,
        stopped_by=campaign.stopped_by,
        released_at=campaign.released_at,
        failure=campaign.failure,
    )
