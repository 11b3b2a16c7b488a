"""Offers of a shared lead, one partner at a time in the decision's rank:
accepted (the partner works the lead), declined with a reason, or
withdrawn when the SLA passes unanswered; each of the last two offers it
to the next candidate still eligible (active, with free capacity).

Exactly once, whatever runs at the same time: an offer is answered or
withdrawn under its row lock (the sweep takes due offers ``FOR UPDATE
SKIP LOCKED``, and re-checks their status), a partner's capacity is
claimed under its profile's row lock by the statement that writes the
offer, and a lead has at most one open offer (a partial unique index).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from core import audit, outbox
from core.errors import NotFound
from core.models import Program
from core.modules import JobContext
from core.principal import Principal
from ledger import new_id
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
from partners.leads.schemas import (
    Company,
    LeadContact,
    OfferList,
    OfferView,
    RoutingConfiguration,
)
from rewards.connections import session_connection

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


#: Offer the lead ($1) to its best-ranked candidate not offered it yet
#: that is still active and has room, in one statement: walk the stored
#: decision's candidates in rank until one is eligible (mostly the first:
#: one look-up, not a join over every candidate), claim its room by a
#: guarded update (re-checked under the row lock when another transaction
#: changed it meanwhile), write the offer and the lead's new status. $2 the offer's id, $3 the
#: program, $4 now, $5 when it is due. Answers the partner offered it
#: (null: none) and whether an eligible candidate was found (found, yet
#: none offered: its room was taken meanwhile, so walk again).
_OFFER_NEXT = """
WITH RECURSIVE walk(rank, partner_id, eligible) AS (
  SELECT 0, NULL::uuid, false
  UNION ALL
  SELECT w.rank + 1, d.candidate_ids[w.rank + 1], EXISTS (
    SELECT FROM partner_lead_profiles f JOIN partners p ON p.id = f.partner_id
    WHERE f.partner_id = d.candidate_ids[w.rank + 1] AND p.status = 'active'
      AND f.open_leads < f.capacity
      AND NOT EXISTS (SELECT FROM lead_offers o WHERE o.lead_id = $1 AND o.partner_id = p.id))
  FROM walk w JOIN lead_routing_decisions d ON d.lead_id = $1
  WHERE NOT w.eligible AND w.rank < cardinality(d.candidate_ids)
), chosen AS (
  SELECT partner_id, rank FROM walk WHERE eligible
), claimed AS (
  UPDATE partner_lead_profiles f SET open_leads = f.open_leads + 1, updated_at = now()
  FROM chosen WHERE f.partner_id = chosen.partner_id AND f.open_leads < f.capacity
  RETURNING chosen.partner_id, chosen.rank
), offered AS (
  INSERT INTO lead_offers (id, program_id, lead_id, partner_id, rank, status, offered_at, due_at)
  SELECT $2, $3, $1, partner_id, rank, 'offered', $4, $5 FROM claimed
  RETURNING partner_id
), lead AS (
  UPDATE leads SET status = 'offered', status_changed_at = $4, updated_at = now()
  WHERE id = $1 AND EXISTS (SELECT FROM offered)
)
SELECT (SELECT partner_id FROM offered) AS offered, EXISTS (SELECT FROM chosen) AS found
"""


async def offer_next(
    session: AsyncSession, lead: Lead, sla_seconds: int, now: datetime
) -> uuid.UUID | None:
    """Offer the (locked, flushed) lead to the best-ranked candidate of its
    decision not offered it yet and still eligible; none left: the lead is
    ``unrouted``. Answers the partner offered it."""
    offer_id, due_at = new_id(), now + timedelta(seconds=sla_seconds)
    # The answered offer's new status first: one open offer per lead.
    await session.flush()
    connection = await session_connection(session)
    while True:
        row = await connection.fetchrow(
            _OFFER_NEXT, lead.id, offer_id, lead.program_id, now, due_at
        )
        assert row is not None
        partner_id: uuid.UUID | None = row["offered"]
        if partner_id is not None or not row["found"]:
            break
    if partner_id is None:
        lead.status = LeadStatus.UNROUTED
        lead.status_changed_at = now
        await session.flush()
        await tell_registrant(session, lead, now)
        return None
    # Written by the statement: the session is told, and writes it again not.
    set_committed_value(lead, "status", LeadStatus.OFFERED)
    set_committed_value(lead, "status_changed_at", now)
    await outbox.emit(
        session,
        events.LEAD_OFFERED,
        events.subject(partner_id),
        {
            "offer_id": str(offer_id),
            "lead_id": str(lead.id),
            "due_at": due_at.isoformat(),
            "territory": lead.territory,
            "products": lead.products,
            "estimated_value_minor": lead.estimated_value_minor,
            "currency": lead.currency,
        },
    )
    return partner_id


async def _offer_sla(session: AsyncSession, lead: Lead) -> int:
    """The offer SLA of the routing version that decided the lead."""
    config = await session.scalar(
        select(LeadRoutingVersion.config)
        .join(
            LeadRoutingDecision,
            (LeadRoutingVersion.program_id == LeadRoutingDecision.program_id)
            & (LeadRoutingVersion.version == LeadRoutingDecision.routing_version),
        )
        .where(LeadRoutingDecision.lead_id == lead.id)
    )
    assert config is not None  # a shared lead that was offered has its decision
    return msgspec.convert(config, RoutingConfiguration).offer_sla_seconds


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
    await offer_next(session, lead, await _offer_sla(session, lead), now)
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
    await offer_next(session, lead, await _offer_sla(session, lead), now)


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
