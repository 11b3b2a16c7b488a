"""Routing of shared leads: each eligible partner is scored on explicit
criteria, ranked, and offered the lead in turn (``offers``).

A partner's score on a criterion is 0-1000; its total is the sum of weight
times score. The decision stores every candidate's scores, the weights and
the tie rule, so the ranking is reproducible from what is stored
(``rank``). Never a candidate: a partner not active (suspended,
offboarded, invited), the registrant itself, one at capacity, one without
every product of the lead, one whose tier has no grade.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import NotFound
from core.models import Program
from core.principal import Principal
from ledger import new_id
from partners.leads.errors import RoutingConfigurationRefused
from partners.leads.models import (
    Lead,
    LeadOffer,
    LeadRoutingDecision,
    LeadRoutingVersion,
    PartnerLeadProfile,
)
from partners.leads.schemas import (
    Candidate,
    Excluded,
    PartnerProfile,
    ProfileView,
    RoutingConfiguration,
    RoutingDecisionView,
    RoutingVersionView,
)
from partners.leads.versions import next_version, recent_versions
from partners.models import Partner, PartnerStatus
from rewards.connections import session_connection

CRITERIA = ("territory", "capability", "tier", "capacity", "acceptance_rate", "response_time")
TIE_RULE = (
    "higher total; then the higher acceptance_rate score; then the partner registered"
    " earlier in the program; then the lower partner id"
)
#: A partner's score on acceptance and response before its first answer.
NEUTRAL = 500
_JSON = msgspec.json.Encoder()


def rank(
    candidates: Sequence[Mapping[str, Any]], weights: Mapping[str, int]
) -> list[dict[str, Any]]:
    """Candidates (``partner_id``, ``registered_at``, ``scores``) with their
    totals, best first by ``TIE_RULE``: the same stored scores and weights
    always give the same order."""
    totalled = [
        {**c, "total": sum(weights[name] * c["scores"][name] for name in CRITERIA)}
        for c in candidates
    ]
    totalled.sort(
        key=lambda c: (
            -c["total"],
            -c["scores"]["acceptance_rate"],
            c["registered_at"],
            c["partner_id"],
        )
    )
    return [{**c, "rank": number} for number, c in enumerate(totalled, start=1)]


#: Every partner of the program with a lead profile: why it is left out
#: (NULL: a candidate), and its score on each criterion (0-1000), in one
#: statement ($1 program, $2 registrant, $3 products, $4 tier grades,
#: $5 territory, $6 untiered grade, $7 offer SLA in seconds).
_PROSPECTS = """
SELECT p.id, p.slug, p.created_at,
  CASE
    WHEN p.id = $2 THEN 'the partner that shared it'
    WHEN p.status <> 'active' THEN 'partner ' || p.status
    WHEN f.open_leads >= f.capacity THEN 'at capacity'
    WHEN NOT f.capabilities @> $3::jsonb THEN 'without the capability: ' || (
      SELECT string_agg(x, ', ' ORDER BY x) FROM jsonb_array_elements_text($3::jsonb) x
      WHERE NOT f.capabilities ? x)
    WHEN p.tier IS NOT NULL AND NOT $4::jsonb ? p.tier THEN 'tier ' || p.tier || ' has no grade'
  END AS reason,
  CASE WHEN f.territories ? $5 THEN 1000 ELSE 0 END AS territory,
  CASE WHEN p.tier IS NULL THEN $6 ELSE COALESCE(($4::jsonb ->> p.tier)::int, 0) END AS tier,
  1000 * GREATEST(f.capacity - f.open_leads, 0) / f.capacity AS capacity,
  CASE WHEN f.offers_accepted + f.offers_declined + f.offers_withdrawn > 0
    THEN 1000 * f.offers_accepted
      / (f.offers_accepted + f.offers_declined + f.offers_withdrawn)
    ELSE $8 END AS acceptance_rate,
  CASE WHEN f.offers_accepted + f.offers_declined > 0
    THEN (1000 * GREATEST($7::bigint * (f.offers_accepted + f.offers_declined)
      - f.response_seconds, 0) / ($7::bigint * (f.offers_accepted + f.offers_declined)))::int
    ELSE $8 END AS response_time
FROM partner_lead_profiles f JOIN partners p ON p.id = f.partner_id
WHERE f.program_id = $1
"""


async def decide(
    session: AsyncSession, lead: Lead, config: RoutingConfiguration
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Ranked candidates (their scores by criterion) and the partners left
    out, with why: scored in SQL, ranked by ``rank``."""
    connection = await session_connection(session)
    rows = await connection.fetch(
        _PROSPECTS,
        lead.program_id,
        lead.partner_id,
        json.dumps(list(lead.products)),
        json.dumps(config.tier_grades),
        lead.territory,
        config.untiered_grade,
        config.offer_sla_seconds,
        NEUTRAL,
    )
    candidates: list[dict[str, Any]] = []
    excluded: list[dict[str, Any]] = []
    for row in rows:
        if row["reason"] is not None:
            excluded.append(
                {"partner_id": str(row["id"]), "slug": row["slug"], "reason": row["reason"]}
            )
            continue
        candidates.append(
            {
                "partner_id": str(row["id"]),
                "slug": row["slug"],
                "registered_at": row["created_at"].astimezone(UTC).isoformat(),
                "scores": {
                    "territory": row["territory"],
                    "capability": 1000,
                    "tier": row["tier"],
                    "capacity": row["capacity"],
                    "acceptance_rate": row["acceptance_rate"],
                    "response_time": row["response_time"],
                },
            }
        )
    return rank(candidates, msgspec.to_builtins(config.weights)), excluded


async def record_decision(
    session: AsyncSession,
    lead: Lead,
    routing_version: int,
    config: RoutingConfiguration,
    now: datetime,
) -> LeadRoutingDecision:
    """Decide where the (new) shared lead goes, by ``config`` (version
    ``routing_version``), and store why."""
    candidates, excluded = await decide(session, lead, config)
    decision = LeadRoutingDecision(
        id=new_id(),
        program_id=lead.program_id,
        lead_id=lead.id,
        routing_version=routing_version,
        weights=msgspec.to_builtins(config.weights),
        candidates=candidates,
        excluded=excluded,
        tie_rule=TIE_RULE,
        decided_at=now,
    )
    # Written on the session's connection with its documents encoded once
    # (a thousand partners make a document of ~100 kB): the lead's row
    # must be flushed first.
    connection = await session_connection(session)
    await connection.execute(
        "INSERT INTO lead_routing_decisions (id, program_id, lead_id, routing_version, weights,"
        " candidates, excluded, tie_rule, decided_at)"
        " VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb, $7::text::jsonb, $8, $9)",
        decision.id,
        decision.program_id,
        decision.lead_id,
        routing_version,
        _JSON.encode(decision.weights).decode(),
        _JSON.encode(candidates).decode(),
        _JSON.encode(excluded).decode(),
        TIE_RULE,
        now,
    )
    return decision


def configuration_of(version: LeadRoutingVersion) -> RoutingConfiguration:
    return msgspec.convert(version.config, RoutingConfiguration)


async def latest_routing_version(
    session: AsyncSession, program_id: uuid.UUID
) -> LeadRoutingVersion | None:
    return await session.scalar(
        select(LeadRoutingVersion)
        .where(LeadRoutingVersion.program_id == program_id)
        .order_by(LeadRoutingVersion.version.desc())
        .limit(1)
    )


async def configuration_problems(
    session: AsyncSession, program: Program, config: RoutingConfiguration
) -> list[str]:
    """What in the configuration would leave a partner unreachable by
    accident: a weight of 0, a grade of 0, a tier of the program's partners
    with no grade."""
    problems = [
        f"weights.{name} is 0: give every criterion a weight of 1 to 1000"
        for name in CRITERIA
        if getattr(config.weights, name) == 0
    ]
    problems += [
        f"tier_grades.{tier} is 0: a partner of that tier would never rank"
        for tier, grade in sorted(config.tier_grades.items())
        if grade == 0
    ]
    if config.untiered_grade == 0:
        problems.append("untiered_grade is 0: untiered partners would never rank")
    tiers = await session.scalars(
        select(Partner.tier)
        .where(
            Partner.program_id == program.id,
            Partner.tier.is_not(None),
            Partner.status != PartnerStatus.OFFBOARDED,
        )
        .distinct()
    )
    problems += [
        f"tier_grades has no grade for tier {tier}, which partners of this program hold"
        for tier in sorted(t for t in tiers if t is not None)
        if tier not in config.tier_grades
    ]
    return problems


async def save_routing_version(
    session: AsyncSession, program: Program, config: RoutingConfiguration, *, principal: Principal
) -> RoutingVersionView:
    """A new version of the routing configuration, audited; refused with
    every problem listed, writing nothing, if it would leave a partner
    unreachable by accident."""
    principal.require("leads:write")
    problems = await configuration_problems(session, program, config)
    if problems:
        raise RoutingConfigurationRefused(problems)
    version = LeadRoutingVersion(
        program_id=program.id,
        version=await next_version(session, LeadRoutingVersion, program),
        config=msgspec.to_builtins(config),
    )
    session.add(version)
    await session.flush()
    await audit.record(
        session,
        principal,
        "leads.routing_version",
        f"program:{program.slug}:lead-routing:{version.version}",
        config,
    )
    return routing_view(version)


async def routing_versions(
    session: AsyncSession, program: Program, *, principal: Principal
) -> list[RoutingVersionView]:
    principal.require("leads:read")
    found = await recent_versions(session, LeadRoutingVersion, program)
    return [routing_view(v) for v in found]


def routing_view(version: LeadRoutingVersion) -> RoutingVersionView:
    return RoutingVersionView(
        version=version.version,
        configuration=configuration_of(version),
        created_at=version.created_at,
    )


async def save_profile(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    profile: PartnerProfile,
    *,
    principal: Principal,
) -> ProfileView:
    """Set what routing knows of the partner (its answers so far are kept)."""
    principal.require("leads:write")
    found = await session.scalar(
        select(PartnerLeadProfile)
        .where(PartnerLeadProfile.partner_id == partner.id)
        .with_for_update()
    )
    if found is None:
        found = PartnerLeadProfile(
            program_id=program.id,
            partner_id=partner.id,
            open_leads=0,
            offers_accepted=0,
            offers_declined=0,
            offers_withdrawn=0,
            response_seconds=0,
        )
        session.add(found)
    found.territories = sorted(set(profile.territories))
    found.capabilities = sorted(set(profile.capabilities))
    found.capacity = profile.capacity
    await session.flush()
    await audit.record(
        session,
        principal,
        "leads.partner_profile",
        f"program:{program.slug}:partner:{partner.slug}:lead-profile",
        profile,
    )
    return profile_view(partner, found)


async def get_profile(
    session: AsyncSession, partner: Partner, *, principal: Principal
) -> ProfileView:
    principal.require("leads:read")
    found = await session.scalar(
        select(PartnerLeadProfile).where(PartnerLeadProfile.partner_id == partner.id)
    )
    if found is None:
        raise NotFound(f"partner {partner.slug!r} has no lead profile")
    return profile_view(partner, found)


def profile_view(partner: Partner, found: PartnerLeadProfile) -> ProfileView:
    return ProfileView(
        partner=partner.slug,
        profile=PartnerProfile(
            territories=list(found.territories),
            capabilities=list(found.capabilities),
            capacity=found.capacity,
        ),
        open_leads=found.open_leads,
        offers_accepted=found.offers_accepted,
        offers_declined=found.offers_declined,
        offers_withdrawn=found.offers_withdrawn,
    )


async def decision_view(
    session: AsyncSession, program: Program, lead_id: uuid.UUID, *, principal: Principal
) -> RoutingDecisionView:
    """Why the lead went where it went: every candidate's scores, in rank."""
    principal.require("leads:read")
    decision = await session.scalar(
        select(LeadRoutingDecision).where(
            LeadRoutingDecision.lead_id == lead_id, LeadRoutingDecision.program_id == program.id
        )
    )
    if decision is None:
        raise NotFound(f"no routing decision for lead {lead_id}")
    found = await session.execute(
        select(LeadOffer.partner_id, LeadOffer.status).where(LeadOffer.lead_id == lead_id)
    )
    offers = {row[0]: row[1] for row in found.all()}
    return RoutingDecisionView(
        lead_id=str(lead_id),
        routing_version=decision.routing_version,
        weights=dict(decision.weights),
        tie_rule=decision.tie_rule,
        decided_at=decision.decided_at,
        candidates=[
            Candidate(
                partner=c["slug"],
                partner_id=c["partner_id"],
                rank=c["rank"],
                scores=c["scores"],
                total=c["total"],
                offer_status=offers.get(uuid.UUID(c["partner_id"])),
            )
            for c in decision.candidates
        ],
        excluded=[
            Excluded(partner=e["slug"], partner_id=e["partner_id"], reason=e["reason"])
            for e in decision.excluded
        ],
    )
