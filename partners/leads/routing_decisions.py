"""Routing decisions: where a shared lead goes, and why.

Every partner of the program with a lead profile is either left out, with
the reason, or a candidate scored 0-1000 on each criterion; a candidate's
total is the sum of weight times score, and the candidates are ranked by
``TIE_RULE``. Never a candidate: a partner not active (suspended,
offboarded, invited), the registrant itself, one at capacity, one without
every product of the lead, one whose tier has no grade.

The decision is made and stored by one statement in the database: a
thousand partners never travel to the application and back. What it stores
is compact (arrays, not a document per partner): the candidates' ids,
registration moments and scores in rank order, and the partners left out
by reason (each reason, how many, and their ids). The totals and ranks are
not stored: they follow from the stored scores and weights (``rank``,
which is how anyone re-checks a decision).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.models import Program
from core.principal import Principal
from ledger import new_id
from partners.leads.models import Lead, LeadOffer, LeadRoutingDecision
from partners.leads.schemas import (
    Candidate,
    Excluded,
    RoutingConfiguration,
    RoutingDecisionView,
)
from partners.models import Partner
from rewards.connections import session_connection

#: The criteria, in the order of a candidate's stored scores.
CRITERIA = ("territory", "capability", "tier", "capacity", "acceptance_rate", "response_time")
TIE_RULE = (
    "higher total; then the higher acceptance_rate score; then the partner registered"
    " earlier in the program; then the lower partner id"
)
#: A partner's score on acceptance and response before its first answer.
NEUTRAL = 500
_ENCODE = msgspec.json.Encoder()


class ScoredCandidate(NamedTuple):
    partner_id: uuid.UUID
    #: When the partner joined the program (the tie rule's third key).
    registered_at: datetime
    #: Criterion -> score (0-1000).
    scores: dict[str, int]


class RankedCandidate(NamedTuple):
    partner_id: uuid.UUID
    registered_at: datetime
    scores: dict[str, int]
    #: Sum of weight times score.
    total: int
    #: From 1, the order of offers.
    rank: int


def rank(
    candidates: Iterable[ScoredCandidate], weights: Mapping[str, int]
) -> list[RankedCandidate]:
    """The candidates with their totals, best first by ``TIE_RULE``: the
    same scores and weights always give the same order, whatever order the
    candidates come in. The database ranks by the same rule (``_DECIDE``);
    this is how a stored decision is re-checked."""
    totalled = [
        (sum(weights[name] * score for name, score in c.scores.items()), c) for c in candidates
    ]
    totalled.sort(
        key=lambda tc: (
            -tc[0],
            -tc[1].scores["acceptance_rate"],
            tc[1].registered_at,
            tc[1].partner_id,
        )
    )
    return [
        RankedCandidate(c.partner_id, c.registered_at, c.scores, total, number)
        for number, (total, c) in enumerate(totalled, start=1)
    ]


def stored_candidates(decision: LeadRoutingDecision) -> list[ScoredCandidate]:
    """The decision's candidates as stored, in their rank."""
    return [
        ScoredCandidate(partner_id, registered_at, dict(zip(decision.criteria, row, strict=True)))
        for partner_id, registered_at, row in zip(
            decision.candidate_ids,
            decision.candidate_registered_at,
            decision.candidate_scores,
            strict=True,
        )
    ]


def stored_exclusions(decision: LeadRoutingDecision) -> list[tuple[uuid.UUID, str]]:
    """Each partner left out (id, reason): the stored ids are grouped by
    reason, as many in each group as its count."""
    reasons = [
        reason
        for reason, count in zip(decision.excluded_reasons, decision.excluded_counts, strict=True)
        for _ in range(count)
    ]
    return list(zip(decision.excluded_ids, reasons, strict=True))


#: Score every partner of the program with a lead profile (or say why it is
#: left out), rank the candidates by ``TIE_RULE`` and store the decision,
#: in one statement. $1 program, $2 registrant, $3 the lead's products,
#: $4 tier grades, $5 territory, $6 untiered grade, $7 offer SLA in seconds,
#: $8 ``NEUTRAL``, $9 the weights in the order of ``CRITERIA``, $10 the
#: decision's id, $11 the lead, $12 the routing version, $13 the weights
#: (JSON), $14 the tie rule, $15 when, $16 ``CRITERIA``. Answers how many
#: candidates it ranked.
_DECIDE = """
WITH prospect AS (
  SELECT p.id, p.created_at, p.tier, f.territories, f.capacity, f.open_leads,
    f.offers_accepted AS accepted, f.offers_accepted + f.offers_declined AS answered,
    f.offers_accepted + f.offers_declined + f.offers_withdrawn AS offers, f.response_seconds,
    CASE
      WHEN p.id = $2 THEN 'the partner that shared it'
      WHEN p.status <> 'active' THEN 'partner ' || p.status
      WHEN f.open_leads >= f.capacity THEN 'at capacity'
      WHEN NOT f.capabilities @> $3::jsonb THEN 'without the capability: ' || (
        SELECT string_agg(x, ', ' ORDER BY x) FROM jsonb_array_elements_text($3::jsonb) x
        WHERE NOT f.capabilities ? x)
      WHEN p.tier IS NOT NULL AND NOT $4::jsonb ? p.tier THEN 'tier ' || p.tier || ' has no grade'
    END AS reason
  FROM partner_lead_profiles f JOIN partners p ON p.id = f.partner_id
  WHERE f.program_id = $1
), scored AS (
  SELECT id, created_at,
    CASE WHEN territories ? $5 THEN 1000 ELSE 0 END AS territory,
    1000 AS capability,
    CASE WHEN tier IS NULL THEN $6::int ELSE ($4::jsonb ->> tier)::int END AS tier,
    1000 * (capacity - open_leads) / capacity AS capacity,
    CASE WHEN offers > 0 THEN 1000 * accepted / offers ELSE $8::int END AS acceptance_rate,
    CASE WHEN answered > 0
      THEN (1000 * GREATEST($7::bigint * answered - response_seconds, 0)
        / ($7::bigint * answered))::int
      ELSE $8::int END AS response_time
  FROM prospect WHERE reason IS NULL
), candidate AS (
  SELECT id, created_at,
    ARRAY[territory, capability, tier, capacity, acceptance_rate, response_time] AS scores,
    row_number() OVER (ORDER BY
      ($9::int[])[1] * territory + ($9::int[])[2] * capability + ($9::int[])[3] * tier
        + ($9::int[])[4] * capacity + ($9::int[])[5] * acceptance_rate
        + ($9::int[])[6] * response_time DESC,
      acceptance_rate DESC, created_at, id) AS rank
  FROM scored
), ranked AS (
  SELECT array_agg(id ORDER BY rank) AS ids,
    array_agg(created_at ORDER BY rank) AS registered_at,
    array_agg(scores ORDER BY rank) AS scores
  FROM candidate
), excluded AS (
  SELECT array_agg(reason ORDER BY reason) AS reasons, array_agg(n ORDER BY reason) AS counts
  FROM (SELECT reason, count(*)::int AS n FROM prospect WHERE reason IS NOT NULL GROUP BY reason) r
)
INSERT INTO lead_routing_decisions (id, program_id, lead_id, routing_version, weights, tie_rule,
  decided_at, criteria, candidate_ids, candidate_registered_at, candidate_scores,
  excluded_reasons, excluded_counts, excluded_ids)
SELECT $10, $1, $11, $12, $13::text::jsonb, $14, $15, $16::text[],
  COALESCE(ranked.ids, '{}'), COALESCE(ranked.registered_at, '{}'),
  COALESCE(ranked.scores, '{}'), COALESCE(excluded.reasons, '{}'),
  COALESCE(excluded.counts, '{}'),
  COALESCE((SELECT array_agg(id ORDER BY reason, id) FROM prospect WHERE reason IS NOT NULL), '{}')
FROM ranked, excluded
RETURNING cardinality(candidate_ids)
"""


async def record_decision(
    session: AsyncSession,
    lead: Lead,
    routing_version: int,
    config: RoutingConfiguration,
    now: datetime,
) -> int:
    """Decide where the (new, flushed) shared lead goes, by ``config``
    (version ``routing_version``), and store why; answers how many
    candidates were ranked."""
    connection = await session_connection(session)
    weights = msgspec.to_builtins(config.weights)
    ranked: int = await connection.fetchval(
        _DECIDE,
        lead.program_id,
        lead.partner_id,
        _ENCODE.encode(list(lead.products)).decode(),
        _ENCODE.encode(config.tier_grades).decode(),
        lead.territory,
        config.untiered_grade,
        config.offer_sla_seconds,
        NEUTRAL,
        [weights[name] for name in CRITERIA],
        new_id(),
        lead.id,
        routing_version,
        _ENCODE.encode(weights).decode(),
        TIE_RULE,
        now,
        list(CRITERIA),
    )
    return ranked


async def decision_view(
    session: AsyncSession, program: Program, lead_id: uuid.UUID, *, principal: Principal
) -> RoutingDecisionView:
    """Why the lead went where it went: every candidate's scores, in rank,
    and every partner left out with why."""
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
    exclusions = stored_exclusions(decision)
    named = await session.execute(
        select(Partner.id, Partner.slug).where(
            Partner.program_id == program.id,
            Partner.id.in_([*decision.candidate_ids, *(e[0] for e in exclusions)]),
        )
    )
    slugs = {row[0]: row[1] for row in named.all()}
    weights = dict(decision.weights)
    return RoutingDecisionView(
        lead_id=str(lead_id),
        routing_version=decision.routing_version,
        weights=weights,
        tie_rule=decision.tie_rule,
        decided_at=decision.decided_at,
        candidates=[
            Candidate(
                partner=slugs[c.partner_id],
                partner_id=str(c.partner_id),
                rank=number,
                scores=c.scores,
                total=sum(weights[name] * score for name, score in c.scores.items()),
                offer_status=offers.get(c.partner_id),
            )
            for number, c in enumerate(stored_candidates(decision), start=1)
        ],
        excluded=[
            Excluded(partner=slugs[partner_id], partner_id=str(partner_id), reason=reason)
            for partner_id, reason in exclusions
        ],
        excluded_counts=dict(zip(decision.excluded_reasons, decision.excluded_counts, strict=True)),
    )
