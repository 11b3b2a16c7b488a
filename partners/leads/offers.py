"""Offers of a shared lead, one partner at a time in the decision's rank:
accepted (the partner works the lead), declined with a reason, or
withdrawn when the SLA passes unanswered; each of the last two offers it
to the next candidate still eligible (active, with free capacity).

Exactly once, whatever runs at the same time: an offer is answered or
withdrawn under its row lock (the sweep takes due offers ``FOR UPDATE
SKIP LOCKED``, and re-checks their status), a partner's capacity is
claimed by a guarded update, and a lead has at most one open offer (a
partial unique index).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.errors import NotFound
from core.models import Program
from core.modules import JobContext
from core.principal import Principal
from partners import events
from partners.acting import partner_of
from partners.leads.errors import OfferClosed
from partners.leads.models import (
    Lead,
    LeadOffer,
    LeadRoutingDecision,
    LeadRoutingVersion,
    LeadStatus,
    OfferStatus,
    PartnerLeadProfile,
)
from partners.leads.routing import configuration_of
from partners.leads.schemas import Company, LeadContact, OfferList, OfferView
from partners.models import Partner, PartnerStatus

#: Due offers one transaction of the sweep withdraws at most.
SWEEP_BATCH = 100


def lead_event(lead: Lead, now: datetime) -> dict[str, object]:
    return {
        "lead_id": str(lead.id),
        "reference": lead.reference,
        "status": lead.status,
        "won_amount_minor": lead.won_amount_minor,
        "currency": lead.currency,
        "lost_reason": lead.lost_reason,
        "at": now.isoformat(),
    }


async def tell_registrant(session: AsyncSession, lead: Lead, now: datetime) -> None:
    await outbox.emit(
        session, events.LEAD_STATUS_CHANGED, events.subject(lead.partner_id), lead_event(lead, now)
    )


async def _claim_capacity(session: AsyncSession, partner_id: uuid.UUID) -> bool:
    """One more open lead for the partner, if it is active and has room."""
    claimed = await session.scalar(
        update(PartnerLeadProfile)
        .where(
            PartnerLeadProfile.partner_id == partner_id,
            PartnerLeadProfile.open_leads < PartnerLeadProfile.capacity,
            exists().where(Partner.id == partner_id, Partner.status == PartnerStatus.ACTIVE),
        )
        .values(open_leads=PartnerLeadProfile.open_leads + 1)
        .returning(PartnerLeadProfile.partner_id)
        .execution_options(synchronize_session=False)
    )
    return claimed is not None


async def offer_next(
    session: AsyncSession,
    lead: Lead,
    decision: LeadRoutingDecision,
    sla_seconds: int,
    now: datetime,
    *,
    first: bool = False,
) -> LeadOffer | None:
    """Offer the (locked) lead to the best-ranked candidate not offered it
    yet and still eligible; none left: the lead is ``unrouted``. ``first``:
    the decision was just made, so nobody was offered it yet."""
    offered = (
        set()
        if first
        else set(
            await session.scalars(select(LeadOffer.partner_id).where(LeadOffer.lead_id == lead.id))
        )
    )
    for candidate in decision.candidates:
        partner_id = uuid.UUID(candidate["partner_id"])
        if partner_id in offered or not await _claim_capacity(session, partner_id):
            continue
        offer = LeadOffer(
            program_id=lead.program_id,
            lead_id=lead.id,
            partner_id=partner_id,
            rank=candidate["rank"],
            status=OfferStatus.OFFERED,
            offered_at=now,
            due_at=now + timedelta(seconds=sla_seconds),
        )
        session.add(offer)
        lead.status = LeadStatus.OFFERED
        lead.status_changed_at = now
        await session.flush()
        await outbox.emit(
            session,
            events.LEAD_OFFERED,
            events.subject(partner_id),
            {
                "offer_id": str(offer.id),
                "lead_id": str(lead.id),
                "due_at": offer.due_at.isoformat(),
                "territory": lead.territory,
                "products": lead.products,
                "estimated_value_minor": lead.estimated_value_minor,
                "currency": lead.currency,
            },
        )
        return offer
    lead.status = LeadStatus.UNROUTED
    lead.status_changed_at = now
    await session.flush()
    await tell_registrant(session, lead, now)
    return None


async def _decision_of(session: AsyncSession, lead: Lead) -> tuple[LeadRoutingDecision, int]:
    row = (
        await session.execute(
            select(LeadRoutingDecision, LeadRoutingVersion)
            .join(
                LeadRoutingVersion,
                (LeadRoutingVersion.program_id == LeadRoutingDecision.program_id)
                & (LeadRoutingVersion.version == LeadRoutingDecision.routing_version),
            )
            .where(LeadRoutingDecision.lead_id == lead.id)
        )
    ).one()
    return row[0], configuration_of(row[1]).offer_sla_seconds


async def _lock_lead(session: AsyncSession, lead_id: uuid.UUID) -> Lead:
    lead = await session.scalar(
        select(Lead)
        .where(Lead.id == lead_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert lead is not None  # leads are never deleted
    return lead


async def _own_offer(
    session: AsyncSession, principal: Principal, offer_id: uuid.UUID, *, lock: bool
) -> LeadOffer:
    """The offer, if it was made to the principal's partner (another's is
    not found, as a missing one)."""
    program_id, partner_id = partner_of(principal)
    query = select(LeadOffer).where(
        LeadOffer.id == offer_id,
        LeadOffer.partner_id == partner_id,
        LeadOffer.program_id == program_id,
    )
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    offer = await session.scalar(query)
    if offer is None:
        raise NotFound(f"no lead offer {offer_id}")
    return offer


async def _answered(
    session: AsyncSession, offer: LeadOffer, now: datetime, **counters: int
) -> None:
    seconds = max(0, int((now - offer.offered_at).total_seconds()))
    await session.execute(
        update(PartnerLeadProfile)
        .where(PartnerLeadProfile.partner_id == offer.partner_id)
        .values(
            response_seconds=PartnerLeadProfile.response_seconds + seconds,
            **{
                name: getattr(PartnerLeadProfile, name) + amount
                for name, amount in counters.items()
            },
        )
        .execution_options(synchronize_session=False)
    )


async def accept_offer(
    session: AsyncSession,
    program: Program,
    offer_id: uuid.UUID,
    now: datetime,
    *,
    principal: Principal,
) -> OfferView:
    """The partner takes the lead: it becomes the lead's assignee and sees
    its contact. Again: the same answer (``replayed``)."""
    principal.require("leads:receive")
    offer = await _own_offer(session, principal, offer_id, lock=True)
    if offer.status == OfferStatus.ACCEPTED:
        return view_of(offer, await session.get_one(Lead, offer.lead_id), replayed=True)
    if offer.status != OfferStatus.OFFERED or now >= offer.due_at:
        raise OfferClosed(f"lead offer {offer_id} is {offer.status}: its time to answer passed")
    lead = await _lock_lead(session, offer.lead_id)
    offer.status = OfferStatus.ACCEPTED
    offer.answered_at = now
    lead.status = LeadStatus.ACCEPTED
    lead.assignee_id = offer.partner_id
    lead.status_changed_at = now
    await _answered(session, offer, now, offers_accepted=1)
    await audit.record(
        session,
        principal,
        "leads.offer_accepted",
        f"program:{program.slug}:lead:{lead.id}",
        {"offer": str(offer.id)},
    )
    await tell_registrant(session, lead, now)
    return view_of(offer, lead)


async def decline_offer(
    session: AsyncSession,
    program: Program,
    offer_id: uuid.UUID,
    reason: str,
    now: datetime,
    *,
    principal: Principal,
) -> OfferView:
    """The partner declines, with its reason; the lead goes to the next candidate."""
    principal.require("leads:receive")
    offer = await _own_offer(session, principal, offer_id, lock=True)
    if offer.status == OfferStatus.DECLINED and offer.decline_reason == reason:
        return view_of(offer, await session.get_one(Lead, offer.lead_id), replayed=True)
    if offer.status != OfferStatus.OFFERED:
        raise OfferClosed(f"lead offer {offer_id} is {offer.status}")
    lead = await _lock_lead(session, offer.lead_id)
    offer.status = OfferStatus.DECLINED
    offer.answered_at = now
    offer.decline_reason = reason
    await _answered(session, offer, now, offers_declined=1, open_leads=-1)
    await session.flush()
    await audit.record(
        session,
        principal,
        "leads.offer_declined",
        f"program:{program.slug}:lead:{lead.id}",
        {"offer": str(offer.id), "reason": reason},
    )
    decision, sla = await _decision_of(session, lead)
    await offer_next(session, lead, decision, sla, now)
    return view_of(offer, lead)


async def withdraw_due_offers(context: JobContext) -> int:
    """Withdraw every offer whose time to answer passed, and offer each
    lead to its next candidate: a batch per transaction, due offers taken
    ``SKIP LOCKED`` so that sweeps at once never withdraw one twice."""
    total = 0
    while True:
        async with context.sessions() as session, session.begin():
            due = (
                await session.scalars(
                    select(LeadOffer)
                    .where(LeadOffer.status == OfferStatus.OFFERED, LeadOffer.due_at <= context.now)
                    .order_by(LeadOffer.due_at)
                    .limit(SWEEP_BATCH)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for offer in due:
                await withdraw(session, offer, context.now)
            total += len(due)
        if len(due) < SWEEP_BATCH:
            return total


async def withdraw(session: AsyncSession, offer: LeadOffer, now: datetime) -> None:
    """Withdraw the (locked, due) offer and offer its lead to the next candidate."""
    lead = await _lock_lead(session, offer.lead_id)
    offer.status = OfferStatus.WITHDRAWN
    offer.answered_at = now
    await session.execute(
        update(PartnerLeadProfile)
        .where(PartnerLeadProfile.partner_id == offer.partner_id)
        .values(
            offers_withdrawn=PartnerLeadProfile.offers_withdrawn + 1,
            open_leads=PartnerLeadProfile.open_leads - 1,
        )
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    await outbox.emit(
        session,
        events.LEAD_OFFER_WITHDRAWN,
        events.subject(offer.partner_id),
        {"offer_id": str(offer.id), "lead_id": str(lead.id), "at": now.isoformat()},
    )
    decision, sla = await _decision_of(session, lead)
    await offer_next(session, lead, decision, sla, now)


async def list_offers(
    session: AsyncSession, *, principal: Principal, status: str | None, limit: int
) -> OfferList:
    """The offers made to the principal's partner, newest first."""
    principal.require("leads:receive")
    program_id, partner_id = partner_of(principal)
    query = (
        select(LeadOffer, Lead)
        .join(Lead, Lead.id == LeadOffer.lead_id)
        .where(LeadOffer.partner_id == partner_id, LeadOffer.program_id == program_id)
        .order_by(LeadOffer.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(LeadOffer.status == status)
    rows = (await session.execute(query)).all()
    return OfferList(items=[view_of(offer, lead) for offer, lead in rows])


async def get_offer(
    session: AsyncSession, offer_id: uuid.UUID, *, principal: Principal
) -> OfferView:
    principal.require("leads:receive")
    offer = await _own_offer(session, principal, offer_id, lock=False)
    return view_of(offer, await session.get_one(Lead, offer.lead_id))


def view_of(offer: LeadOffer, lead: Lead, *, replayed: bool = False) -> OfferView:
    """The offer as its partner sees it: the contact only once accepted,
    never the partner that shared it."""
    accepted = offer.status == OfferStatus.ACCEPTED
    return OfferView(
        id=str(offer.id),
        lead_id=str(lead.id),
        status=offer.status,
        offered_at=offer.offered_at,
        due_at=offer.due_at,
        answered_at=offer.answered_at,
        decline_reason=offer.decline_reason,
        company=Company(
            name=lead.company_name,
            domain=lead.company_domain,
            size=lead.company_size,
            industry=lead.industry,
        ),
        contact=LeadContact(**lead.contact) if accepted else None,
        estimated_value_minor=lead.estimated_value_minor,
        currency=lead.currency,
        territory=lead.territory,
        products=list(lead.products),
        lead_status=lead.status if accepted else offer.status,
        replayed=replayed,
    )
