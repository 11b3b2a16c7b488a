"""Leads over HTTP: a partner registers and shares, the operator
configures and reads why a lead went where it went, the partner offered it
accepts and reports the win, the referrer hears of it by API and webhook
and is rewarded once. Conflicts name no one; bad input writes nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.settings import Settings
from core.codes import AccountCode, money_account_id
from ledger import Ledger
from tests.api.conftest import ADMIN_TOKEN, AUTH, SIGNING_SECRET, assert_problem, open_program
from tests.api.test_partner_coalition import firm
from tests.partners.tokens import api_partner_bearer

Client = AsyncTestClient[Litestar]

WEIGHTS = {
    "territory": 4,
    "capability": 1,
    "tier": 2,
    "capacity": 1,
    "acceptance_rate": 1,
    "response_time": 1,
}
ROUTING: dict[str, Any] = {
    "weights": WEIGHTS,
    "tier_grades": {"gold": 1000},
    "untiered_grade": 400,
    "offer_sla_seconds": 3600,
    "exclusivity_days": 60,
}


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        signing_secret=SIGNING_SECRET,
        sweep_interval=0,
        partner_rate_limit=1_000_000,
        token_rate_limit=100_000,
        webhook_private_targets=True,
    )
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        client.headers.update(AUTH)
        yield client


def lead(**fields: Any) -> dict[str, Any]:
    number = uuid.uuid4().hex[:10]
    return {
        "reference": f"lead-{number}",
        "company": {"name": f"Company {number}", "domain": f"c{number}.example"},
        "contact": {"name": "Thandi M", "email": "thandi@example.com"},
        "estimated_value_minor": 500_000,
        "currency": "ZAR",
        "territory": "ZA-WC",
        "products": ["fleet"],
        "lawful_basis": "legitimate_interest",
    } | fields


async def post(client: Client, path: str, token: dict[str, str], body: Any = None) -> Any:
    return await client.post(
        path, json=body, headers={**token, "Idempotency-Key": str(uuid.uuid4())}
    )


async def written(pool: asyncpg.Pool, program: str) -> tuple[int, int]:
    leads = await pool.fetchval(
        "SELECT count(*) FROM leads l JOIN programs g ON g.id = l.program_id WHERE g.slug = $1",
        program,
    )
    audit = await pool.fetchval("SELECT count(*) FROM audit_events")
    return int(leads), int(audit)


async def test_a_conflict_answers_the_same_whoever_holds_it(
    client: Client, pool: asyncpg.Pool
) -> None:
    program = await open_program(client)
    holders = [await firm(client, program) for _ in range(2)]
    asker = await firm(client, program)
    tokens = {p: await api_partner_bearer(client, program, p) for p in [*holders, asker]}
    companies = []
    for holder in holders:
        body = lead()
        made = await post(client, "/partner/leads", tokens[holder], body)
        assert made.status_code == 201, made.text
        assert (await post(client, "/partner/leads", tokens[holder], body)).status_code == 200
        companies.append(body["company"])
    before = await written(pool, program)
    answers = []
    for company in companies:
        refused = await post(client, "/partner/leads", tokens[asker], lead(company=company))
        body = assert_problem(refused, 409, "lead-registration-conflict")
        answers.append(body)
    # By the name alone (normalised), against the second holder's.
    by_name = {"name": companies[1]["name"].upper() + " Ltd", "domain": "elsewhere.example"}
    answers.append(
        assert_problem(
            await post(client, "/partner/leads", tokens[asker], lead(company=by_name)),
            409,
            "lead-registration-conflict",
        )
    )
    assert all(a == answers[0] for a in answers), answers
    for holder in holders:
        assert holder not in str(answers[0])
    assert await written(pool, program) == before


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"company": {"name": "X", "domain": "not a domain"}}, 400),
        ({"estimated_value_minor": -1}, 400),
        ({"products": []}, 400),
        ({"notes": "a\x00b"}, 400),
        ({"lawful_basis": "consent"}, 422),
        ({"expected_close": "0001-01-01"}, 422),
        ({"shared": True}, 409),  # no routing configuration yet
    ],
)
async def test_bad_registrations_are_problems_and_write_nothing(
    client: Client, pool: asyncpg.Pool, change: dict[str, Any], status: int
) -> None:
    program = await open_program(client)
    partner = await firm(client, program)
    token = await api_partner_bearer(client, program, partner)
    before = await written(pool, program)
    refused = await post(client, "/partner/leads", token, lead(**change))
    assert refused.status_code == status, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert await written(pool, program) == before


async def test_an_unreachable_routing_configuration_is_refused_at_save(
    client: Client, pool: asyncpg.Pool
) -> None:
    program = await open_program(client)
    await firm(client, program, tier="silver")
    bad = ROUTING | {"weights": WEIGHTS | {"capacity": 0}}
    refused = await client.post(f"/programs/{program}/leads/routing-versions", json=bad)
    body = assert_problem(refused, 422, "routing-configuration-refused")
    assert "weights.capacity is 0" in body["detail"]
    assert "tier silver" in body["detail"]
    versions = await client.get(f"/programs/{program}/leads/routing-versions")
    assert versions.status_code == 200 and versions.json() == []


async def test_a_shared_lead_is_routed_accepted_won_and_rewarded_once(
    client: Client, pool: asyncpg.Pool, ledger: Ledger
) -> None:
    program = await open_program(client)
    referrer = await firm(client, program)
    best = await firm(client, program, tier="gold")
    other = await firm(client, program)
    base = f"/programs/{program}"
    assert (await client.post(f"{base}/leads/routing-versions", json=ROUTING)).status_code == 201
    terms = {"reward": "money", "basis": "share", "share_bps": 500}
    assert (await client.put(f"{base}/leads/referral-terms", json=terms)).status_code == 200
    profile = {"territories": ["ZA-WC"], "capabilities": ["fleet"], "capacity": 3}
    for partner in (referrer, best, other):
        saved = await client.put(f"{base}/partners/{partner}/lead-profile", json=profile)
        assert saved.status_code == 200, saved.text
    tokens = {p: await api_partner_bearer(client, program, p) for p in (referrer, best, other)}
    hook = await post(
        client,
        "/partner/webhook-endpoints",
        tokens[referrer],
        {"url": "http://127.0.0.1:9/hook", "event_types": ["lead.status_changed"]},
    )
    assert hook.status_code == 201, hook.text
    shared = await post(client, "/partner/leads", tokens[referrer], lead(shared=True))
    assert shared.status_code == 201, shared.text
    lead_id = shared.json()["id"]
    assert shared.json()["status"] == "offered"
    # Why it went where it went.
    decision = await client.get(f"{base}/leads/{lead_id}/routing")
    assert decision.status_code == 200, decision.text
    found = decision.json()
    assert [c["partner"] for c in found["candidates"]] == [best, other]
    assert found["candidates"][0]["offer_status"] == "offered"
    assert {e["partner"]: e["reason"] for e in found["excluded"]} == {
        referrer: "the partner that shared it"
    }
    assert found["excluded_counts"] == {"the partner that shared it": 1}
    for candidate in found["candidates"]:
        assert candidate["total"] == sum(
            found["weights"][k] * v for k, v in candidate["scores"].items()
        )
    # other is offered nothing; best sees the offer without the contact.
    assert (await client.get("/partner/lead-offers", headers=tokens[other])).json()["items"] == []
    [offer] = (await client.get("/partner/lead-offers", headers=tokens[best])).json()["items"]
    assert offer["contact"] is None and referrer not in str(offer)
    accepted = await post(client, f"/partner/lead-offers/{offer['id']}/acceptance", tokens[best])
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["contact"]["name"] == "Thandi M"
    win = {"status": "won", "won_amount_minor": 1_000_000}
    for replay in (False, True):
        reported = await post(
            client, f"/partner/lead-offers/{offer['id']}/status", tokens[best], win
        )
        assert reported.status_code == 200, reported.text
        assert reported.json()["replayed"] is replay
    # The referrer reads the outcome and its reward: 5% of 1,000,000.
    mine = await client.get(f"/partner/leads/{lead_id}", headers=tokens[referrer])
    assert mine.json()["status"] == "won" and mine.json()["won_amount_minor"] == 1_000_000
    assert mine.json()["reward"]["amount"] == 50_000
    row = await pool.fetchrow(
        "SELECT g.id AS program_id, p.id AS partner_id FROM programs g JOIN partners p"
        " ON p.program_id = g.id WHERE g.slug = $1 AND p.slug = $2",
        program,
        referrer,
    )
    assert row is not None
    payable = money_account_id(
        row["program_id"], "ZAR", AccountCode.PARTNER_PAYABLE, row["partner_id"]
    )
    [account] = await ledger.lookup_accounts([payable])
    assert account.credits_posted == 50_000
    # And by webhook: the drain makes the referrer's endpoint a delivery of each move.
    drained = await client.post("/jobs/drain-outbox/runs")
    assert drained.status_code == 200, drained.text
    deliveries = await pool.fetch(
        "SELECT body FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY created_at",
        uuid.UUID(hook.json()["id"]),
    )
    statuses = [d["body"] for d in deliveries]
    assert len(statuses) == 2 and '"won"' in statuses[-1] and lead_id in statuses[-1]
    # The other partner cannot read the lead, the operator can.
    assert (await client.get(f"/partner/leads/{lead_id}", headers=tokens[other])).status_code == 404
    assert (await client.get(f"{base}/leads/{lead_id}")).json()["status"] == "won"


async def test_extensions_are_approved_by_the_operator(client: Client) -> None:
    program = await open_program(client)
    partner = await firm(client, program)
    token = await api_partner_bearer(client, program, partner)
    made = await post(client, "/partner/leads", token, lead())
    lead_id, until = made.json()["id"], made.json()["exclusive_until"]
    asked = await post(
        client, f"/partner/leads/{lead_id}/extensions", token, {"days": 30, "reason": "RFP"}
    )
    assert asked.status_code == 201, asked.text
    again = await post(
        client, f"/partner/leads/{lead_id}/extensions", token, {"days": 30, "reason": "RFP"}
    )
    assert_problem(again, 409, "lead-extension-closed")
    pending = await client.get(
        f"/programs/{program}/leads/extensions", params={"status": "pending"}
    )
    assert [e["id"] for e in pending.json()["items"]] == [asked.json()["id"]]
    approved = await client.post(
        f"/programs/{program}/leads/extensions/{asked.json()['id']}/approval", json={"note": "ok"}
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["exclusive_until"] > until


# Unshared registrations of concurrent requests are written a batch at a time
# (api.lead_intake): one company is registered once, a reference twice at
# once is one registration and replays, each has its audit line.


async def test_one_company_registered_at_once_by_many_is_held_by_one(
    client: Client, pool: asyncpg.Pool
) -> None:
    program = await open_program(client)
    partners = [await firm(client, program) for _ in range(6)]
    tokens = [await api_partner_bearer(client, program, p) for p in partners]
    domain = f"c{uuid.uuid4().hex[:10]}.example"
    answers = await asyncio.gather(
        *(
            post(
                client, "/partner/leads", token, lead(company={"name": f"Co {n}", "domain": domain})
            )
            for n, token in enumerate(tokens)
        )
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 409, 409, 409, 409, 409], [a.text for a in answers]
    conflicts = [a.json() for a in answers if a.status_code == 409]
    assert all(c["type"].endswith("/lead-registration-conflict") for c in conflicts)
    held = await pool.fetchval("SELECT count(*) FROM leads WHERE domain_key = $1", domain)
    assert held == 1
    made = next(a.json() for a in answers if a.status_code == 201)
    lines = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'leads.registered'"
        " AND details->>'lead' = $1",
        made["id"],
    )
    assert lines == 1


async def test_a_reference_sent_twice_at_once_is_one_registration_and_a_replay(
    client: Client, pool: asyncpg.Pool
) -> None:
    program = await open_program(client)
    token = await api_partner_bearer(client, program, await firm(client, program))
    body = lead()
    answers = await asyncio.gather(*(post(client, "/partner/leads", token, body) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    rows = await pool.fetchval("SELECT count(*) FROM leads WHERE reference = $1", body["reference"])
    assert rows == 1


async def test_many_companies_at_once_are_each_registered_and_scored(
    client: Client, pool: asyncpg.Pool
) -> None:
    program = await open_program(client)
    token = await api_partner_bearer(client, program, await firm(client, program))
    bodies = [lead() for _ in range(20)]
    answers = await asyncio.gather(*(post(client, "/partner/leads", token, b) for b in bodies))
    assert [a.status_code for a in answers] == [201] * 20
    for body, answer in zip(bodies, answers, strict=True):
        view = answer.json()
        assert view["reference"] == body["reference"]
        assert view["company"]["domain"] == body["company"]["domain"]
        assert view["status"] == "registered"
    stored = await pool.fetch(
        "SELECT reference, contact, products, exclusive_until > now() AS held FROM leads"
        " WHERE reference = ANY($1::text[])",
        [b["reference"] for b in bodies],
    )
    assert len(stored) == 20
    assert all(row["held"] for row in stored)
