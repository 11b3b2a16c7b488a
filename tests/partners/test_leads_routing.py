"""Routing of shared leads: explicit scores stored and reproducible, ties
broken by the stated rule, ineligible partners never offered, unreachable
configurations refused at save; the SLA moves an offer on exactly once
under concurrent sweeps; a decline records its reason and moves on."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.modules import JobContext
from core.outbox import outbox_events
from ledger import Ledger
from partners import events
from partners.leads.errors import OfferClosed, RoutingConfigurationRefused
from partners.leads.models import (
    Lead,
    LeadOffer,
    LeadRoutingDecision,
    OfferStatus,
    PartnerLeadProfile,
)
from partners.leads.offers import accept_offer, decline_offer, withdraw_due_offers
from partners.leads.routing import save_routing_version
from partners.leads.routing_decisions import (
    TIE_RULE,
    rank,
    stored_candidates,
    stored_exclusions,
)
from partners.models import PartnerStatus
from tests.conftest import NewProgram
from tests.partners.conftest import NewPartner
from tests.partners.lead_helpers import (
    OPERATOR,
    acting,
    configure_routing,
    profile,
    register,
    routing,
)

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


async def _decision(session: AsyncSession, lead_id: str) -> LeadRoutingDecision:
    found = await session.scalar(
        select(LeadRoutingDecision).where(LeadRoutingDecision.lead_id == uuid.UUID(lead_id))
    )
    assert found is not None
    return found


async def _offers(session: AsyncSession, lead_id: str) -> list[LeadOffer]:
    return list(
        await session.scalars(
            select(LeadOffer)
            .where(LeadOffer.lead_id == uuid.UUID(lead_id))
            .order_by(LeadOffer.rank)
            .execution_options(populate_existing=True)
        )
    )


async def test_a_decision_ranks_by_explicit_scores_and_leaves_out_the_ineligible(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    registrant = await new_partner(program)
    gold = await new_partner(program, tier="gold", slug=f"gold-{uuid.uuid4().hex[:8]}")
    silver = await new_partner(program, tier="silver")
    elsewhere = await new_partner(program, tier="gold")
    suspended = await new_partner(program, status=PartnerStatus.SUSPENDED, tier="gold")
    offboarded = await new_partner(program, status=PartnerStatus.OFFBOARDED)
    incapable = await new_partner(program, tier="gold")
    full = await new_partner(program, tier="gold")
    await configure_routing(session, program)
    for partner in (registrant, gold, silver, suspended, offboarded, full):
        await profile(session, program, partner, capacity=1 if partner is full else 10)
    await profile(session, program, elsewhere, territories=["ZA-GP"])
    await profile(session, program, incapable, capabilities=["fuel"])
    # full takes one lead and is at capacity for the next.
    await session.execute(
        update(PartnerLeadProfile)
        .where(PartnerLeadProfile.partner_id == full.id)
        .values(open_leads=1)
    )
    await session.commit()
    lead = await register(session, program, registrant, NOW, shared=True)
    assert lead.status == "offered"
    decision = await _decision(session, lead.id)
    stored = stored_candidates(decision)
    assert [c.partner_id for c in stored] == [gold.id, silver.id, elsewhere.id]
    by_id = {c.partner_id: c for c in stored}
    assert by_id[gold.id].scores == {
        "territory": 1000,
        "capability": 1000,
        "tier": 1000,
        "capacity": 1000,
        "acceptance_rate": 500,
        "response_time": 500,
    }
    assert by_id[elsewhere.id].scores["territory"] == 0
    assert by_id[silver.id].scores["tier"] == 600
    assert dict(stored_exclusions(decision)) == {
        registrant.id: "the partner that shared it",
        suspended.id: "partner suspended",
        offboarded.id: "partner offboarded",
        incapable.id: "without the capability: fleet-cards",
        full.id: "at capacity",
    }
    assert sum(decision.excluded_counts) == len(decision.excluded_ids) == 5
    # Reproducible from what is stored: the stored scores and weights, in
    # any order, rank to the stored order.
    again = rank(list(reversed(stored)), decision.weights)
    assert [c.partner_id for c in again] == [c.partner_id for c in stored]
    assert [c.rank for c in again] == [1, 2, 3]
    assert [c.total for c in again] == [
        sum(decision.weights[k] * v for k, v in c.scores.items()) for c in stored
    ]
    assert decision.tie_rule == TIE_RULE
    [offer] = await _offers(session, lead.id)
    assert offer.partner_id == gold.id and offer.status == OfferStatus.OFFERED


async def test_ties_are_broken_by_the_stated_rule(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    registrant = await new_partner(program)
    first, second, third = [await new_partner(program, tier="gold") for _ in range(3)]
    await configure_routing(session, program)
    for partner in (registrant, third, second, first):
        await profile(session, program, partner)
    # third answered one offer and accepted it: a higher acceptance rate
    # (and a total raised by it) put it ahead; first and second tie on all
    # scores, and first registered earlier.
    await session.execute(
        update(PartnerLeadProfile)
        .where(PartnerLeadProfile.partner_id == third.id)
        .values(offers_accepted=1, response_seconds=3600)
    )
    await session.commit()
    lead = await register(session, program, registrant, NOW, shared=True)
    decision = await _decision(session, lead.id)
    stored = stored_candidates(decision)
    assert [c.partner_id for c in stored] == [third.id, first.id, second.id]
    totals = [c.total for c in rank(stored, decision.weights)]
    assert totals[1] == totals[2] and totals[0] > totals[1]
    # The same scores in any order rank the same: never at random.
    assert [c.partner_id for c in rank(stored[:0:-1], decision.weights)] == [first.id, second.id]


async def test_a_configuration_leaving_a_partner_unreachable_is_refused(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    await new_partner(program, tier="bronze")
    with pytest.raises(RoutingConfigurationRefused) as refused:
        async with session.begin_nested():
            await save_routing_version(
                session,
                program,
                routing(
                    weights={
                        "territory": 0,
                        "capability": 1,
                        "tier": 1,
                        "capacity": 1,
                        "acceptance_rate": 1,
                        "response_time": 1,
                    },
                    tier_grades={"gold": 0},
                ),
                principal=OPERATOR,
            )
    problems = refused.value.problems
    assert any("weights.territory is 0" in p for p in problems)
    assert any("tier_grades.gold is 0" in p for p in problems)
    assert any("no grade for tier bronze" in p for p in problems)
    saved = await save_routing_version(
        session, program, routing(tier_grades={"bronze": 200}), principal=OPERATOR
    )
    assert saved.version == 1


async def test_a_decline_records_its_reason_and_offers_the_next(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    registrant = await new_partner(program)
    best, next_best = (
        await new_partner(program, tier="gold"),
        await new_partner(program, tier="silver"),
    )
    await configure_routing(session, program)
    for partner in (registrant, best, next_best):
        await profile(session, program, partner)
    lead = await register(session, program, registrant, NOW, shared=True)
    [offer] = await _offers(session, lead.id)
    # next_best cannot answer best's offer: not found.
    from core.errors import NotFound

    with pytest.raises(NotFound):
        await decline_offer(session, program, offer.id, "no", NOW, principal=acting(next_best))
    declined = await decline_offer(
        session,
        program,
        offer.id,
        "no capacity in the Cape this month",
        NOW + timedelta(minutes=6),
        principal=acting(best),
    )
    await session.commit()
    assert declined.status == "declined"
    first, second = await _offers(session, lead.id)
    assert first.decline_reason == "no capacity in the Cape this month"
    assert second.partner_id == next_best.id and second.status == OfferStatus.OFFERED
    counters = await session.scalar(
        select(PartnerLeadProfile)
        .where(PartnerLeadProfile.partner_id == best.id)
        .execution_options(populate_existing=True)
    )
    assert counters is not None
    assert (counters.offers_declined, counters.open_leads, counters.response_seconds) == (1, 0, 360)
    with pytest.raises(OfferClosed):
        await accept_offer(session, program, offer.id, NOW, principal=acting(best))


async def test_an_unanswered_offer_moves_on_exactly_once_under_concurrent_sweeps(
    session: AsyncSession,
    engine: AsyncEngine,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    registrant = await new_partner(program)
    first, second, third = [await new_partner(program, tier="gold") for _ in range(3)]
    await configure_routing(session, program)
    for partner in (registrant, first, second, third):
        await profile(session, program, partner)
    lead = await register(session, program, registrant, NOW, shared=True)
    [offer] = await _offers(session, lead.id)
    assert offer.partner_id == first.id
    context = JobContext(
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        ledger=ledger,
        now=NOW + timedelta(seconds=3601),
    )
    await asyncio.gather(*(withdraw_due_offers(context) for _ in range(6)))
    offers = await _offers(session, lead.id)
    assert [(o.partner_id, o.status) for o in offers] == [
        (first.id, OfferStatus.WITHDRAWN),
        (second.id, OfferStatus.OFFERED),
    ]
    assert offers[1].due_at == context.now + timedelta(seconds=3600)
    withdrawn = await session.scalar(
        select(PartnerLeadProfile.offers_withdrawn).where(PartnerLeadProfile.partner_id == first.id)
    )
    assert withdrawn == 1
    told = await session.scalar(
        select(func.count())
        .select_from(outbox_events)
        .where(
            outbox_events.c.topic == events.LEAD_OFFERED,
            outbox_events.c.payload["lead_id"].astext == lead.id,
        )
    )
    assert told == 2  # the first offer, and the one to second
    # Accepting the withdrawn offer is refused; the open one is taken.
    with pytest.raises(OfferClosed):
        async with session.begin_nested():
            await accept_offer(session, program, offer.id, context.now, principal=acting(first))
    taken = await accept_offer(
        session, program, offers[1].id, context.now, principal=acting(second)
    )
    await session.commit()
    assert taken.status == "accepted" and taken.contact is not None
    found = await session.get_one(Lead, uuid.UUID(lead.id), populate_existing=True)
    assert found.assignee_id == second.id and found.status == "accepted"


async def test_a_lead_with_no_eligible_partner_left_is_unrouted(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    registrant, only = await new_partner(program), await new_partner(program)
    await configure_routing(session, program)
    for partner in (registrant, only):
        await profile(session, program, partner)
    lead = await register(session, program, registrant, NOW, shared=True)
    [offer] = await _offers(session, lead.id)
    await decline_offer(session, program, offer.id, "not for us", NOW, principal=acting(only))
    await session.commit()
    found = await session.get_one(Lead, uuid.UUID(lead.id), populate_existing=True)
    assert found.status == "unrouted"


async def test_exclusivity_ends_unextended_and_frees_the_assignee(
    session: AsyncSession,
    engine: AsyncEngine,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    from partners.leads.registration import expire_exclusivity

    program = await new_program()
    registrant, worker = await new_partner(program), await new_partner(program)
    await configure_routing(session, program, exclusivity_days=10)
    for partner in (registrant, worker):
        await profile(session, program, partner)
    kept = await register(session, program, registrant, NOW)
    shared = await register(session, program, registrant, NOW, shared=True)
    [offer] = await _offers(session, shared.id)
    await accept_offer(session, program, offer.id, NOW, principal=acting(worker))
    await session.commit()
    context = JobContext(
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        ledger=ledger,
        now=NOW + timedelta(days=10, seconds=1),
    )
    assert await expire_exclusivity(context) >= 2
    for lead_id in (kept.id, shared.id):
        found = await session.get_one(Lead, uuid.UUID(lead_id), populate_existing=True)
        assert found.status == "expired"
    open_leads = await session.scalar(
        select(PartnerLeadProfile.open_leads).where(PartnerLeadProfile.partner_id == worker.id)
    )
    assert open_leads == 0
    # Expired, the company is free to register again.
    again = await register(
        session,
        program,
        await new_partner(program),
        context.now,
        company={"name": kept.company.name, "domain": kept.company.domain},
    )
    assert again.status == "registered"
