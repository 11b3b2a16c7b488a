"""Migration 0044: routing decisions stored as documents (one object per
partner) become arrays, and the downgrade gives the documents back."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from api.database import downgrade, fresh_database, migrate
from partners.leads.routing_decisions import CRITERIA, TIE_RULE

BEFORE, AFTER = "0043_segments", "0044_lead_routing_compact"
WEIGHTS = {
    "territory": 5,
    "capability": 1,
    "tier": 3,
    "capacity": 2,
    "acceptance_rate": 2,
    "response_time": 1,
}
JOINED = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def _scores(n: int) -> dict[str, int]:
    return {name: (n * 137 + k * 211) % 1001 for k, name in enumerate(CRITERIA)}


async def _fetch(url: str, statement: str, *args: object) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(statement, *args)
    finally:
        await connection.close()


async def _old_decision(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A program with seven partners and a decision stored the old way:
    three candidates (in rank), four left out for two reasons."""
    connection = await asyncpg.connect(url)
    try:
        program = uuid.uuid4()
        await connection.execute(
            """INSERT INTO programs (id, slug, name, ledger_id, currency, minor_per_major,
                point_value_minor, return_window_days, issuance_account_id,
                redemption_account_id, breakage_account_id)
            VALUES ($1, 'routed', 'Routed', 9, 'ZAR', 100, 1, 30, $2, $3, $4)""",
            program,
            uuid.uuid4(),
            uuid.uuid4(),
            uuid.uuid4(),
        )
        partners = sorted(uuid.uuid4() for _ in range(7))
        for n, partner in enumerate(partners):
            await connection.execute(
                """INSERT INTO partners (id, program_id, slug, name, legal_name, country,
                    currency, status, status_changed_at)
                VALUES ($1, $2, $3, $3, $3, 'ZA', 'ZAR', 'active', now())""",
                partner,
                program,
                f"partner-{n}",
            )
        lead = uuid.uuid4()
        await connection.execute(
            """INSERT INTO leads (id, program_id, partner_id, reference, shared, company_name,
                company_domain, domain_key, name_key, contact, estimated_value_minor, currency,
                territory, products, lawful_basis, status, exclusive_until, score,
                score_details, status_changed_at)
            VALUES ($1, $2, $3, 'lead-1', true, 'Acme', 'acme.example', 'acme.example', 'acme',
                '{}', 1, 'ZAR', 'ZA-WC', '[]', 'contract', 'offered', now(), 0, '[]', now())""",
            lead,
            program,
            partners[6],
        )
        ranked = [partners[4], partners[1], partners[2]]
        candidates = [
            {
                "partner_id": str(partner),
                "slug": f"partner-{partners.index(partner)}",
                "registered_at": (JOINED + timedelta(microseconds=n * 250_001)).isoformat(),
                "scores": _scores(n),
                "total": sum(WEIGHTS[k] * v for k, v in _scores(n).items()),
                "rank": n + 1,
            }
            for n, partner in enumerate(ranked)
        ]
        reasons = {
            partners[6]: "the partner that shared it",
            partners[0]: "at capacity",
            partners[3]: "at capacity",
            partners[5]: "at capacity",
        }
        excluded = [
            {"partner_id": str(p), "slug": f"partner-{partners.index(p)}", "reason": reason}
            for p, reason in reasons.items()
        ]
        # Stored as the old code stored them: candidates out of rank order
        # are ordered by their rank.
        await connection.execute(
            """INSERT INTO lead_routing_decisions (id, program_id, lead_id, routing_version,
                weights, candidates, excluded, tie_rule, decided_at)
            VALUES ($1, $2, $3, 1, $4::text::jsonb, $5::text::jsonb, $6::text::jsonb, $7, now())""",
            uuid.uuid4(),
            program,
            lead,
            json.dumps(WEIGHTS),
            json.dumps(candidates[::-1]),
            json.dumps(excluded),
            TIE_RULE,
        )
        return candidates, excluded
    finally:
        await connection.close()


def test_old_decisions_are_converted_and_given_back(server_url: str) -> None:
    with fresh_database(server_url) as url:
        migrate(url, BEFORE)
        candidates, excluded = asyncio.run(_old_decision(url))
        migrate(url, AFTER)
        [row] = asyncio.run(_fetch(url, "SELECT * FROM lead_routing_decisions"))
        assert row["criteria"] == list(CRITERIA)
        assert row["candidate_ids"] == [uuid.UUID(c["partner_id"]) for c in candidates]
        assert row["candidate_registered_at"] == [
            datetime.fromisoformat(c["registered_at"]) for c in candidates
        ]
        assert row["candidate_scores"] == [[c["scores"][k] for k in CRITERIA] for c in candidates]
        assert list(zip(row["excluded_reasons"], row["excluded_counts"], strict=True)) == [
            ("at capacity", 3),
            ("the partner that shared it", 1),
        ]
        by_reason = sorted(excluded, key=lambda e: (e["reason"], uuid.UUID(e["partner_id"])))
        assert row["excluded_ids"] == [uuid.UUID(e["partner_id"]) for e in by_reason]

        downgrade(url, BEFORE)
        [back] = asyncio.run(
            _fetch(url, "SELECT candidates::text, excluded::text FROM lead_routing_decisions")
        )
        given_back = json.loads(back["candidates"])
        for c in [*given_back, *candidates]:
            c["registered_at"] = datetime.fromisoformat(c["registered_at"])
        assert given_back == candidates
        assert json.loads(back["excluded"]) == by_reason
