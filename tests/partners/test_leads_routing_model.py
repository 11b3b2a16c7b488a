"""Routing decisions against a model: for any partners (statuses, tiers,
territories, capabilities, room, answers so far, ties), the stored decision
leaves out exactly whom the rules leave out, with the reason, scores each
candidate as docs/leads.md says, ranks by the stated tie rule, and ranks
again to the same order from what it stores, whatever the order it is
given in."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from partners.leads.models import LeadOffer, LeadRoutingDecision, PartnerLeadProfile
from partners.leads.routing_decisions import (
    CRITERIA,
    NEUTRAL,
    rank,
    stored_candidates,
    stored_exclusions,
)
from partners.models import Partner, PartnerStatus
from tests.conftest import NewProgram
from tests.partners.conftest import NewPartner
from tests.partners.lead_helpers import configure_routing, register, routing

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
SLA = 3600
PRODUCTS = ["fleet-cards", "fuel"]
#: Few moments, so that partners tie on when they joined.
JOINED = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=d) for d in (0, 0, 3)]
CONFIG = routing(offer_sla_seconds=SLA)


@dataclass(frozen=True)
class Drawn:
    status: PartnerStatus
    tier: str | None
    in_territory: bool
    capabilities: tuple[str, ...]
    capacity: int
    open_leads: int
    accepted: int
    declined: int
    withdrawn: int
    response_seconds: int
    joined: datetime


_any_partner = st.builds(
    Drawn,
    status=st.sampled_from([PartnerStatus.ACTIVE] * 4 + [PartnerStatus.SUSPENDED]),
    # platinum: a tier given after the configuration was saved, with no grade.
    tier=st.sampled_from(["gold", "silver", None, "platinum"]),
    in_territory=st.booleans(),
    capabilities=st.sampled_from([tuple(PRODUCTS)] * 3 + [("fuel",), ("fleet-cards",), ()]),
    capacity=st.integers(min_value=1, max_value=3),
    open_leads=st.integers(min_value=0, max_value=3),
    # Small counts: equal rates (and so equal totals) are common.
    accepted=st.integers(min_value=0, max_value=2),
    declined=st.integers(min_value=0, max_value=2),
    withdrawn=st.integers(min_value=0, max_value=1),
    response_seconds=st.sampled_from([0, SLA // 2, SLA, 3 * SLA]),
    joined=st.sampled_from(JOINED),
)


def _tied(answered_one: bool, joined: datetime) -> Drawn:
    """A candidate whose total is the same either way (with the weights of
    ``routing()``), its acceptance rate not: one answer, accepted in half
    the SLA, and half its room taken, or no answer yet and all its room."""
    return Drawn(
        status=PartnerStatus.ACTIVE,
        tier="gold",
        in_territory=True,
        capabilities=tuple(PRODUCTS),
        capacity=2,
        open_leads=1 if answered_one else 0,
        accepted=1 if answered_one else 0,
        declined=0,
        withdrawn=0,
        response_seconds=SLA // 2 if answered_one else 0,
        joined=joined,
    )


_partner = st.one_of(_any_partner, st.builds(_tied, st.booleans(), st.sampled_from(JOINED)))


def expected_reason(drawn: Drawn) -> str | None:
    if drawn.status != PartnerStatus.ACTIVE:
        return f"partner {drawn.status}"
    if min(drawn.open_leads, drawn.capacity) >= drawn.capacity:
        return "at capacity"
    missing = sorted(set(PRODUCTS) - set(drawn.capabilities))
    if missing:
        return "without the capability: " + ", ".join(missing)
    if drawn.tier is not None and drawn.tier not in CONFIG.tier_grades:
        return f"tier {drawn.tier} has no grade"
    return None


def expected_scores(drawn: Drawn) -> dict[str, int]:
    open_leads = min(drawn.open_leads, drawn.capacity)
    offers = drawn.accepted + drawn.declined + drawn.withdrawn
    answered = drawn.accepted + drawn.declined
    return {
        "territory": 1000 if drawn.in_territory else 0,
        "capability": 1000,
        "tier": CONFIG.untiered_grade if drawn.tier is None else CONFIG.tier_grades[drawn.tier],
        "capacity": 1000 * (drawn.capacity - open_leads) // drawn.capacity,
        "acceptance_rate": 1000 * drawn.accepted // offers if offers else NEUTRAL,
        "response_time": (
            1000 * max(SLA * answered - drawn.response_seconds, 0) // (SLA * answered)
            if answered
            else NEUTRAL
        ),
    }


async def _partner_of(
    session: AsyncSession, program: Program, new_partner: NewPartner, drawn: Drawn
) -> Partner:
    partner = await new_partner(
        program, status=drawn.status, tier=drawn.tier, created_at=drawn.joined
    )
    session.add(
        PartnerLeadProfile(
            program_id=program.id,
            partner_id=partner.id,
            territories=["ZA-WC", "ZA-GP"] if drawn.in_territory else ["ZA-GP"],
            capabilities=list(drawn.capabilities),
            capacity=drawn.capacity,
            open_leads=min(drawn.open_leads, drawn.capacity),
            offers_accepted=drawn.accepted,
            offers_declined=drawn.declined,
            offers_withdrawn=drawn.withdrawn,
            response_seconds=drawn.response_seconds,
        )
    )
    await session.commit()
    return partner


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=st.lists(_partner, min_size=1, max_size=10), seed=st.integers(0, 2**16))
async def test_a_decision_follows_the_rules_and_ranks_again_from_what_it_stores(
    session: AsyncSession,
    new_program: NewProgram,
    new_partner: NewPartner,
    drawn: list[Drawn],
    seed: int,
) -> None:
    program = await new_program()
    registrant = await new_partner(program)
    await configure_routing(session, program, offer_sla_seconds=SLA)
    session.add(
        PartnerLeadProfile(
            program_id=program.id,
            partner_id=registrant.id,
            territories=["ZA-WC"],
            capabilities=PRODUCTS,
            capacity=5,
        )
    )
    await session.commit()
    partners = [await _partner_of(session, program, new_partner, d) for d in drawn]

    lead = await register(session, program, registrant, NOW, shared=True, products=PRODUCTS)
    decision = await session.scalar(
        select(LeadRoutingDecision).where(LeadRoutingDecision.lead_id == uuid.UUID(lead.id))
    )
    assert decision is not None

    reasons = {p.id: expected_reason(d) for p, d in zip(partners, drawn, strict=True)}
    assert dict(stored_exclusions(decision)) == {
        registrant.id: "the partner that shared it",
        **{partner_id: reason for partner_id, reason in reasons.items() if reason is not None},
    }
    expected = sorted(
        (
            (sum(getattr(CONFIG.weights, k) * v for k, v in s.items()), s, d.joined, p.id)
            for p, d in zip(partners, drawn, strict=True)
            if reasons[p.id] is None
            for s in [expected_scores(d)]
        ),
        key=lambda e: (-e[0], -e[1]["acceptance_rate"], e[2], e[3]),
    )
    stored = stored_candidates(decision)
    assert [(c.partner_id, c.scores, c.registered_at) for c in stored] == [
        (partner_id, scores, joined) for _, scores, joined, partner_id in expected
    ]
    assert decision.criteria == list(CRITERIA)
    # Reproducible: the stored scores and weights, shuffled, rank the same.
    shuffled = list(stored)
    random.Random(seed).shuffle(shuffled)
    again = rank(shuffled, decision.weights)
    assert [c.partner_id for c in again] == [c.partner_id for c in stored]
    assert [c.total for c in again] == [total for total, *_ in expected]
    offered = await session.scalar(
        select(LeadOffer.partner_id).where(LeadOffer.lead_id == uuid.UUID(lead.id))
    )
    assert lead.status == ("offered" if stored else "unrouted")
    assert offered == (stored[0].partner_id if stored else None)
