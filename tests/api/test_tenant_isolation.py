"""The tenant isolation matrix: every route of the app, walked from the
Litestar app itself (a new endpoint joins on its own), tried with an API key
bound to program A against program B's slug and B's real ids.

- A route under ``/programs/{slug}`` answers 404 ``no program 'b'``, exactly
  as it does for a slug that does not exist, and writes nothing to B (its
  rows, its audit lines, its ledger); with A's key on A's own ids it does
  not answer 404.
- Opening a program, and the API keys, are scoped by the caller's tenant.
- What belongs to the platform as a whole (jobs, the raw ledger) refuses a
  key bound to a program (403), whatever it names.
- A member token of A reaches nothing of B's (the member API takes no slug:
  the token names the program).

A route with no case here and no exemption (with its reason) fails the test.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import jwt
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.app import create_app
from api.modules import JOBS, SCOPES
from api.settings import Settings
from core.codes import AccountCode, TransferCode, partner_account_id
from core.models import Program
from core.principal import Principal, PrincipalKind
from finance.reconciliation import ALERT_TOPIC
from ledger import Ledger, Transfer
from partners.mdf.activities import request_activity
from partners.mdf.claims import draft_claim
from partners.mdf.schemas import ActivityRequest, ClaimDraft, Proof
from partners.webhook_endpoints import create_endpoint
from partners.webhook_schemas import EndpointSpec
from partners.webhook_targets import TargetPolicy
from tests.api.conftest import ADMIN_TOKEN, AUTH, PROBLEM_JSON, PROBLEMS, count_writes
from tests.partners.settlement_helpers import label as month_label
from tests.partners.settlement_helpers import months_back

SECRET = "an-isolation-secret-of-32-chars!!"
AUDIENCE = "coalition-members"
_fresh = itertools.count(1)
#: Tier ranks go up to 100, above the tenants' own tiers: a counter of their own.
_ranks = itertools.count(11)

Client = AsyncTestClient[Litestar]


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(_fresh)}-{uuid.uuid4().hex[:6]}"


def member_token(program: str, member: str) -> dict[str, str]:
    claims = {"sub": member, "program": program, "aud": AUDIENCE, "exp": int(time.time()) + 600}
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


@dataclass
class Tenant:
    """A program and real objects of it, made through the API."""

    slug: str
    key_name: str = ""
    key: dict[str, str] = field(default_factory=dict)
    holds: list[str] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)
    #: Ids of users of its partner firm ``p`` (one to remove, one to change).
    partner_users: list[str] = field(default_factory=list)
    #: Client ids of OAuth clients of its partner firm ``p`` (one to rotate,
    #: one to revoke).
    partner_clients: list[str] = field(default_factory=list)
    #: Ids of webhook endpoints of its partner firm ``p``.
    webhook_endpoints: list[str] = field(default_factory=list)
    #: An exchange agreement another program proposed to it (version 1 to
    #: accept), and the slug of a program it may propose one to.
    exchange_agreement: str = ""
    exchange_peer: str = ""
    #: Joint campaigns the operator proposed to its partner ``p`` (one to stop).
    campaign: str = ""
    campaign_to_stop: str = ""
    #: Leads of its firm ``p`` (a kept one, a shared one) and extension
    #: requests (one to approve, one to refuse), by name.
    leads: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def app(database_url: str) -> Litestar:
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        member_jwt_secret=SECRET,
        member_rate_limit=100_000,
        sweep_interval=0,
    )
    return create_app(settings, database_url=database_url)


@pytest.fixture(scope="module")
async def client(app: Litestar) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=app) as client:
        client.headers.update(AUTH)
        yield client


async def ok(response: Any, *statuses: int) -> dict[str, Any]:
    assert response.status_code in (statuses or (200, 201)), response.text
    body: dict[str, Any] = response.json()
    return body


async def make_tenant(client: Client, name: str) -> Tenant:
    tenant = Tenant(slug=fresh(name))
    tenant.spec = {
        "slug": tenant.slug,
        "name": f"Program {name}",
        "currency": "ZAR",
        "point_value_minor": "1",
        "return_window_days": 30,
    }
    base = f"/programs/{tenant.slug}"
    await ok(await client.post("/programs", json=tenant.spec))
    for _ in range(2):  # version 1 and a draft version 2
        await ok(await client.post(f"{base}/rules", json={"rules": {"points_per_unit": "1"}}))
    for member in ("m", "erasable"):
        await ok(await client.post(f"{base}/members", json={"external_id": member}))
    await ok(
        await client.post(
            f"{base}/members/m/adjustments",
            json={"adjustment_id": "funding", "points": 100_000, "reason": "to spend"},
        )
    )
    await ok(await client.post(f"{base}/purchases", json=purchase("O-1", 5_000)))
    for n in range(3):
        hold = await ok(
            await client.post(
                "/me/holds",
                json={"order_ref": f"cart-{n}", "amount_minor": 100, "timeout_seconds": 3600},
                headers={**member_token(tenant.slug, "m"), "Idempotency-Key": f"hold-{n}"},
            )
        )
        tenant.holds.append(hold["id"])
    await ok(await client.post(f"{base}/partners", json=partner_firm("p", status="active")))
    for role in ("sales", "finance"):
        user = await ok(
            await client.post(
                f"{base}/partners/p/users",
                json={"email": f"{role}@p.example", "name": role.title(), "role": role},
            )
        )
        tenant.partner_users.append(user["id"])
    for use in ("rotate", "revoke"):
        made = await ok(
            await client.post(
                f"{base}/partners/p/clients", json={"name": use, "scopes": ["points:issue"]}
            )
        )
        tenant.partner_clients.append(made["client_id"])
    tenant.key_name = fresh(f"key-{name}")
    issued = await ok(
        await client.post(
            "/api-keys",
            json={"name": tenant.key_name, "scopes": sorted(SCOPES), "program": tenant.slug},
        )
    )
    assert issued["program"] == tenant.slug
    tenant.key = {"Authorization": f"Bearer {issued['key']}"}
    return tenant


def purchase(order: str, amount: int, member: str = "m") -> dict[str, Any]:
    return {
        "member": member,
        "order_id": order,
        "amount_minor": amount,
        "currency": "ZAR",
        "occurred_at": datetime.now(UTC).isoformat(),
    }


def partner_firm(slug: str, **fields: Any) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": "Fuel & Go",
        "legal_name": "Fuel & Go Ltd",
        "country": "ZA",
    } | fields


@pytest.fixture(scope="module")
async def tenants(
    client: Client, engine: AsyncEngine, pool: asyncpg.Pool, ledger: Ledger
) -> tuple[Tenant, Tenant]:
    made = await make_tenant(client, "a"), await make_tenant(client, "b")
    for tenant in made:
        await add_webhook_endpoint(engine, tenant)
        await add_contracts(client, tenant)
        await add_statements(client, pool, ledger, tenant)
        await add_funding_purchase(pool, tenant)
        await add_exchange_agreement(client, tenant)
        await add_departure(client, pool, tenant)
        await add_campaigns(client, tenant)
        await add_leads(client, engine, tenant)
        await add_mdf(client, engine, tenant)
        await add_lot_operations(client, tenant)
        await add_periods(pool, tenant)
        await add_revenue_run(client, tenant)
        await add_reconciliation_run(client, tenant)
        await add_segments(client, tenant)
        await add_program_webhooks(client, pool, tenant)
    return made


def campaign_proposal() -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "reference": fresh("campaign"),
        "name": "Isolation",
        "starts_at": (now + timedelta(days=1)).isoformat(),
        "ends_at": (now + timedelta(days=8)).isoformat(),
        "participants": [{"partner": "p", "share_bp": 10000}],
        "segment": {"kind": "all"},
        "rules": {"points_per_currency_unit": 1},
        "budget_points": 100,
    }


async def add_campaigns(client: Client, tenant: Tenant) -> None:
    base = f"/programs/{tenant.slug}/campaigns"
    tenant.campaign = (await ok(await client.post(base, json=campaign_proposal())))["id"]
    tenant.campaign_to_stop = (await ok(await client.post(base, json=campaign_proposal())))["id"]


EXCHANGE_TERMS = {"outbound": {"give": 1, "receive": 2, "daily_cap": 1000}}


async def add_exchange_agreement(client: Client, tenant: Tenant) -> None:
    """A program that proposes an exchange agreement to the tenant, and one
    the tenant may propose to (made with the admin token)."""
    for peer in ("from", "to"):
        spec = {"slug": fresh(f"peer-{peer}"), "name": "Peer", "currency": "ZAR"}
        await ok(await client.post("/programs", json=spec | {"point_value_minor": "1"}))
        if peer == "from":
            proposed = await ok(
                await client.post(
                    f"/programs/{spec['slug']}/exchange-agreements",
                    json={"counterparty": tenant.slug, "terms": EXCHANGE_TERMS},
                )
            )
            tenant.exchange_agreement = proposed["id"]
        else:
            tenant.exchange_peer = spec["slug"]


CONTRACT = {
    "roles": "both",
    "issue_price_per_point": "1.5",
    "redemption_rate_per_point": "1",
    "funding_model": "prepaid",
}


async def add_contracts(client: Client, tenant: Tenant) -> None:
    """Version 1 of the firm ``p``'s contract in force, a draft version 2."""
    base = f"/programs/{tenant.slug}/partners/p/contracts"
    for rate in ("1", "2"):
        await ok(await client.post(base, json=CONTRACT | {"redemption_rate_per_point": rate}))
    # The first version may start in the past (not before the firm's creation).
    await ok(
        await client.post(
            f"{base}/1/publication", json={"effective_from": datetime.now(UTC).isoformat()}
        )
    )


async def add_statements(
    client: Client, pool: asyncpg.Pool, ledger: Ledger, tenant: Tenant
) -> None:
    """Statements 1 (the program owes 150) and 2 (the firm ``p`` owes 150),
    its contract's version 1 moved back to start two months ago and its
    points moved then, straight on the ledger with their business time."""
    two_back, one_back = months_back(2)[0], months_back(1)[0]
    row = await pool.fetchrow(
        "SELECT g.id AS program_id, g.ledger_id, p.id AS partner_id, m.wallet_account_id"
        " FROM programs g JOIN partners p ON p.program_id = g.id AND p.slug = 'p'"
        " JOIN members m ON m.program_id = g.id AND m.external_id = 'm' WHERE g.slug = $1",
        tenant.slug,
    )
    assert row is not None
    await pool.execute(
        "UPDATE partners SET created_at = $2 WHERE id = $1",
        row["partner_id"],
        two_back - timedelta(days=30),
    )
    await pool.execute(
        "UPDATE partner_contracts SET effective_from = $2 WHERE partner_id = $1 AND version = 1",
        row["partner_id"],
        two_back,
    )
    base = f"/programs/{tenant.slug}/partners/p"
    await ok(
        await client.post(
            f"{base}/funding",
            json={"reference": fresh("block"), "points": 1000, "amount_minor": 1500},
        )
    )
    issuance = partner_account_id(
        row["program_id"], row["partner_id"], AccountCode.PARTNER_ISSUANCE
    )
    acceptance = partner_account_id(
        row["program_id"], row["partner_id"], AccountCode.PARTNER_ACCEPTANCE
    )
    wallet = row["wallet_account_id"]
    moves = [
        (issuance, wallet, 100, TransferCode.PARTNER_ISSUANCE, two_back + timedelta(days=1)),
        (wallet, acceptance, 300, TransferCode.PARTNER_ACCEPTANCE, two_back + timedelta(days=2)),
        (issuance, wallet, 100, TransferCode.PARTNER_ISSUANCE, one_back + timedelta(days=1)),
    ]
    outcomes = await ledger.create_transfers(
        [
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=debit,
                credit_account_id=credit,
                amount=amount,
                ledger=row["ledger_id"],
                code=code,
                effective_at=at,
            )
            for debit, credit, amount, code, at in moves
        ]
    )
    assert all(o.ok for o in outcomes), outcomes
    for period in (month_label(2), month_label(1)):
        await ok(await client.post(f"{base}/statements", json={"period": period}))
    await ok(await client.put(f"{base}/payment-method", json={"payment_method_id": "pm_card_visa"}))
    # Statement 2 collected already: asking again answers it, Stripe not asked.
    await pool.execute(
        "INSERT INTO partner_collections (id, program_id, partner_id, statement_id, status,"
        " attempts, items_created, payment_intent_id)"
        " SELECT $1, program_id, partner_id, id, 'succeeded', 1, true, 'pi_isolation'"
        " FROM partner_statements WHERE partner_id = $2 AND number = 2",
        uuid.uuid4(),
        row["partner_id"],
    )


async def add_funding_purchase(pool: asyncpg.Pool, tenant: Tenant) -> None:
    """A block the firm ``p`` bought through Stripe, paid already (its
    funding the one ``add_statements`` recorded): asking again answers it,
    Stripe not asked."""
    await pool.execute(
        "INSERT INTO partner_funding_purchases (id, program_id, partner_id, purchase_id, points,"
        " amount_minor, currency, contract_version, status, payment_method_id,"
        " payment_intent_id, funding_id, completed_at)"
        " SELECT $1, f.program_id, f.partner_id, 'isolation-block', 100, 150, 'ZAR', 1,"
        " 'succeeded', 'pm_card_visa', 'pi_isolation_block', f.id, now()"
        " FROM partner_fundings f JOIN programs g ON g.id = f.program_id"
        " WHERE g.slug = $2 LIMIT 1",
        uuid.uuid4(),
        tenant.slug,
    )


def departed_days() -> dict[str, str]:
    """The days of firm ``q``'s departure: all the last day of last month."""
    day = (months_back(1)[1] - timedelta(days=1)).date().isoformat()
    return {"last_issuing_day": day, "last_accepting_day": day, "valuation_date": day}


async def add_departure(client: Client, pool: asyncpg.Pool, tenant: Tenant) -> None:
    """A firm ``q`` that left at the end of last month: its contract in
    force from the start of last month, its departure recorded (days to
    come, as the API asks), then moved back into last month, and its final
    statement issued."""
    base = f"/programs/{tenant.slug}/partners/q"
    await ok(await client.post(f"/programs/{tenant.slug}/partners", json=partner_firm("q")))
    await ok(await client.post(f"{base}/status", json={"status": "active"}))
    await ok(await client.post(f"{base}/contracts", json=CONTRACT))
    await ok(
        await client.post(
            f"{base}/contracts/1/publication",
            json={"effective_from": datetime.now(UTC).isoformat()},
        )
    )
    later = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    days = {"last_issuing_day": later, "last_accepting_day": later, "valuation_date": later}
    await ok(await client.put(f"{base}/departure", json=days))
    start, end = months_back(1)
    partner_id = await pool.fetchval(
        "SELECT p.id FROM partners p JOIN programs g ON g.id = p.program_id"
        " WHERE g.slug = $1 AND p.slug = 'q'",
        tenant.slug,
    )
    await pool.execute(
        "UPDATE partners SET created_at = $2 WHERE id = $1", partner_id, start - timedelta(days=1)
    )
    await pool.execute(
        "UPDATE partner_contracts SET effective_from = $2 WHERE partner_id = $1", partner_id, start
    )
    day = date.fromisoformat(departed_days()["valuation_date"])
    await pool.execute(
        "UPDATE partner_departures SET last_issuing_day = $2, last_accepting_day = $2,"
        " valuation_date = $2, issuing_ends_at = $3, accepting_ends_at = $3, valuation_at = $3"
        " WHERE partner_id = $1",
        partner_id,
        day,
        end,
    )
    await ok(await client.post(f"{base}/departure/final-statement"), 201)


async def add_webhook_endpoint(engine: AsyncEngine, tenant: Tenant) -> None:
    """An endpoint of the firm ``p``, as its partner client adds it (the
    operator API reads and disables endpoints, it does not add them)."""
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        firm = (
            await session.execute(
                text(
                    "SELECT p.id, p.program_id FROM partners p JOIN programs g"
                    " ON g.id = p.program_id WHERE g.slug = :slug AND p.slug = 'p'"
                ),
                {"slug": tenant.slug},
            )
        ).one()
        client = Principal(
            kind=PrincipalKind.PARTNER,
            actor="partner:isolation",
            program_id=firm.program_id,
            partner_id=firm.id,
            partner_ids=frozenset({firm.id}),
        )
        endpoint = await create_endpoint(
            session,
            EndpointSpec(url="https://hooks.example.com/p"),
            principal=client,
            targets=TargetPolicy(),
        )
    tenant.webhook_endpoints.append(str(endpoint.id))


LEAD_ROUTING = {
    "weights": {
        "territory": 1,
        "capability": 1,
        "tier": 1,
        "capacity": 1,
        "acceptance_rate": 1,
        "response_time": 1,
    },
    # The PATCH case of partners makes ``p`` gold: a tier with no grade is refused.
    "tier_grades": {"gold": 1000},
    "untiered_grade": 500,
    "offer_sla_seconds": 3600,
    "exclusivity_days": 90,
}
LEAD_PROFILE = {"territories": ["ZA-WC"], "capabilities": ["fleet"], "capacity": 5}


async def add_leads(client: Client, engine: AsyncEngine, tenant: Tenant) -> None:
    """Routing, referral terms, lead profiles of ``p`` and a peer firm; leads
    registered by ``p`` (two kept, each with an extension request, and one
    shared, routed to the peer), as its partner client registers them."""
    import msgspec

    from partners.leads.registration import register_lead, request_extension
    from partners.leads.schemas import ExtensionRequest, LeadRegistration

    base = f"/programs/{tenant.slug}"
    await ok(await client.post(f"{base}/partners", json=partner_firm("lead-peer", status="active")))
    await ok(await client.post(f"{base}/leads/routing-versions", json=LEAD_ROUTING))
    await ok(
        await client.put(
            f"{base}/leads/referral-terms",
            json={"reward": "points", "basis": "fixed", "amount": 100},
        )
    )
    for slug in ("p", "lead-peer"):
        await ok(await client.put(f"{base}/partners/{slug}/lead-profile", json=LEAD_PROFILE))
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        row = (
            await session.execute(
                text(
                    "SELECT p.id, p.program_id FROM partners p JOIN programs g"
                    " ON g.id = p.program_id WHERE g.slug = :slug AND p.slug = 'p'"
                ),
                {"slug": tenant.slug},
            )
        ).one()
        from partners.models import Partner

        program = await session.get_one(Program, row.program_id)
        firm = await session.get_one(Partner, row.id)
        principal = Principal(
            kind=PrincipalKind.PARTNER,
            actor="partner:isolation",
            scopes=frozenset({"leads:share"}),
            program_id=row.program_id,
            partner_id=row.id,
            partner_ids=frozenset({row.id}),
        )
        now = datetime.now(UTC)
        for name, shared in (("lead", False), ("other_lead", False), ("shared", True)):
            lead = await register_lead(
                session,
                program,
                firm,
                msgspec.convert(
                    {
                        "reference": fresh(name),
                        "shared": shared,
                        "company": {"name": fresh("Company"), "domain": f"{fresh('c')}.example"},
                        "contact": {"name": "Thandi"},
                        "estimated_value_minor": 1000,
                        "currency": "ZAR",
                        "territory": "ZA-WC",
                        "products": ["fleet"],
                        "lawful_basis": "contract",
                    },
                    LeadRegistration,
                ),
                now,
                principal=principal,
            )
            tenant.leads[name] = lead.id
        for name, lead_name in (("to_approve", "lead"), ("to_refuse", "other_lead")):
            asked = await request_extension(
                session,
                uuid.UUID(tenant.leads[lead_name]),
                ExtensionRequest(days=10, reason="procurement"),
                now,
                principal=principal,
            )
            tenant.leads[name] = asked.id


#: A request of a program-scoped route, against a tenant's own ids: (path
#: under /programs/{slug}, body). Write bodies carry fresh ids, so that the
#: same request on A's own program succeeds.
Case = Callable[[Tenant], tuple[str, Any]]


def _later() -> str:
    return (datetime.now(UTC) + timedelta(days=30)).isoformat()


PROGRAM_CASES: dict[tuple[str, str], Case] = {
    ("GET", "/programs/{slug}"): lambda t: ("", None),
    ("GET", "/programs/{slug}/settings"): lambda t: ("/settings", None),
    ("PATCH", "/programs/{slug}/settings"): lambda t: (
        "/settings",
        # The default, so that A's program still matches the spec it was opened with.
        {"gift_daily_limit": 10_000},
    ),
    ("GET", "/programs/{slug}/rules"): lambda t: ("/rules", None),
    ("POST", "/programs/{slug}/rules"): lambda t: (
        "/rules",
        {"rules": {"points_per_unit": "2"}, "note": fresh("note")},
    ),
    ("POST", "/programs/{slug}/rules/{version}/publish"): lambda t: (
        "/rules/2/publish",
        {"effective_from": _later()},
    ),
    ("POST", "/programs/{slug}/rules/{version}/simulate"): lambda t: ("/rules/1/simulate", None),
    ("POST", "/programs/{slug}/members"): lambda t: ("/members", {"external_id": fresh("new")}),
    ("GET", "/programs/{slug}/members/{external_id}"): lambda t: ("/members/m", None),
    ("GET", "/programs/{slug}/members/{external_id}/export"): lambda t: ("/members/m/export", None),
    ("POST", "/programs/{slug}/members/{external_id}/erase"): lambda t: (
        "/members/erasable/erase",
        None,
    ),
    ("POST", "/programs/{slug}/members/{external_id}/adjustments"): lambda t: (
        "/members/m/adjustments",
        {"adjustment_id": fresh("adj"), "points": 5, "reason": "goodwill"},
    ),
    ("POST", "/programs/{slug}/purchases"): lambda t: ("/purchases", purchase(fresh("O"), 1000)),
    ("POST", "/programs/{slug}/purchases/{order_id}/returns"): lambda t: (
        "/purchases/O-1/returns",
        {"return_id": fresh("R"), "amount_minor": 100},
    ),
    ("POST", "/programs/{slug}/rewards"): lambda t: (
        "/rewards",
        {"sku": fresh("SKU"), "name": "Mug", "points_price": 10},
    ),
    ("POST", "/programs/{slug}/tiers"): lambda t: (
        "/tiers",
        {"code": fresh("t"), "name": "Tier", "rank": next(_ranks), "threshold": 1},
    ),
    ("POST", "/programs/{slug}/thresholds"): lambda t: (
        "/thresholds",
        {"code": fresh("th"), "amount_minor": 1000, "bonus_points": 5},
    ),
    ("POST", "/programs/{slug}/events"): lambda t: (
        "/events",
        {
            "member": "m",
            "event_id": fresh("E"),
            "event": "gym",
            "occurred_at": datetime.now(UTC).isoformat(),
        },
    ),
    ("POST", "/programs/{slug}/holds/{hold_id}/capture"): lambda t: (
        f"/holds/{t.holds[0]}/capture",
        {},
    ),
    ("POST", "/programs/{slug}/holds/{hold_id}/release"): lambda t: (
        f"/holds/{t.holds[1]}/release",
        None,
    ),
    # Partner firms (a firm ``p`` and its users).
    ("GET", "/programs/{slug}/partners"): lambda t: ("/partners", None),
    ("POST", "/programs/{slug}/partners"): lambda t: (
        "/partners",
        partner_firm(fresh("firm"), parent="p"),
    ),
    ("GET", "/programs/{slug}/partners/{partner}"): lambda t: ("/partners/p", None),
    ("PATCH", "/programs/{slug}/partners/{partner}"): lambda t: ("/partners/p", {"tier": "gold"}),
    ("POST", "/programs/{slug}/partners/{partner}/status"): lambda t: (
        # A's firm is active already: the same move, which answers 200.
        "/partners/p/status",
        {"status": "active"},
    ),
    ("GET", "/programs/{slug}/partners/{partner}/status-history"): lambda t: (
        "/partners/p/status-history",
        None,
    ),
    ("GET", "/programs/{slug}/partners/{partner}/users"): lambda t: ("/partners/p/users", None),
    ("POST", "/programs/{slug}/partners/{partner}/users"): lambda t: (
        "/partners/p/users",
        {"email": f"{fresh('user')}@p.example", "name": "New", "role": "marketing"},
    ),
    ("PATCH", "/programs/{slug}/partners/{partner}/users/{user_id}"): lambda t: (
        f"/partners/p/users/{t.partner_users[1]}",
        {"role": "admin"},
    ),
    ("DELETE", "/programs/{slug}/partners/{partner}/users/{user_id}"): lambda t: (
        f"/partners/p/users/{t.partner_users[0]}",
        None,
    ),
    # The OAuth clients of the firm ``p``.
    ("GET", "/programs/{slug}/partners/{partner}/clients"): lambda t: ("/partners/p/clients", None),
    ("POST", "/programs/{slug}/partners/{partner}/clients"): lambda t: (
        "/partners/p/clients",
        {"name": fresh("client"), "scopes": ["statements:read"], "reach": "group"},
    ),
    ("POST", "/programs/{slug}/partners/{partner}/clients/{client_id}/secret-rotations"): (
        lambda t: (f"/partners/p/clients/{t.partner_clients[0]}/secret-rotations", {})
    ),
    ("DELETE", "/programs/{slug}/partners/{partner}/clients/{client_id}"): lambda t: (
        f"/partners/p/clients/{t.partner_clients[1]}",
        None,
    ),
    # The webhook endpoints of the firm ``p`` (the operator's view).
    ("GET", "/programs/{slug}/partners/{partner}/webhook-endpoints"): lambda t: (
        "/partners/p/webhook-endpoints",
        None,
    ),
    ("GET", "/programs/{slug}/partners/{partner}/webhook-endpoints/{endpoint_id}"): lambda t: (
        f"/partners/p/webhook-endpoints/{t.webhook_endpoints[0]}",
        None,
    ),
    (
        "POST",
        "/programs/{slug}/partners/{partner}/webhook-endpoints/{endpoint_id}/disable",
    ): lambda t: (f"/partners/p/webhook-endpoints/{t.webhook_endpoints[0]}/disable", {}),
    (
        "POST",
        "/programs/{slug}/partners/{partner}/webhook-endpoints/{endpoint_id}/enable",
    ): lambda t: (f"/partners/p/webhook-endpoints/{t.webhook_endpoints[0]}/enable", {}),
    # The coalition terms of the firm ``p`` (version 1 in force, a draft 2).
    ("POST", "/programs/{slug}/partners/{partner}/contracts"): lambda t: (
        "/partners/p/contracts",
        CONTRACT | {"note": fresh("terms")},
    ),
    ("GET", "/programs/{slug}/partners/{partner}/contracts"): lambda t: (
        "/partners/p/contracts",
        None,
    ),
    ("GET", "/programs/{slug}/partners/{partner}/contracts/{version}"): lambda t: (
        "/partners/p/contracts/1",
        None,
    ),
    ("POST", "/programs/{slug}/partners/{partner}/contracts/{version}/publication"): lambda t: (
        "/partners/p/contracts/2/publication",
        {"effective_from": _later()},
    ),
    ("POST", "/programs/{slug}/partners/{partner}/funding"): lambda t: (
        "/partners/p/funding",
        {"reference": fresh("payment"), "points": 100, "amount_minor": 150},
    ),
    ("POST", "/programs/{slug}/partners/{partner}/funding/purchases"): lambda t: (
        # Paid already: the same purchase again answers it, Stripe not asked.
        "/partners/p/funding/purchases",
        {"purchase_id": "isolation-block", "points": 100},
    ),
    ("GET", "/programs/{slug}/partners/{partner}/funding/purchases"): lambda t: (
        "/partners/p/funding/purchases",
        None,
    ),
    ("GET", "/programs/{slug}/partners/{partner}/funding/purchases/{purchase_id}"): lambda t: (
        "/partners/p/funding/purchases/isolation-block",
        None,
    ),
    ("GET", "/programs/{slug}/partners/{partner}/balance"): lambda t: (
        "/partners/p/balance",
        None,
    ),
    # Settlement of the firm ``p``: statement 1 (the program owes), 2 (p owes).
    ("GET", "/programs/{slug}/partners/{partner}/statements/draft"): lambda t: (
        "/partners/p/statements/draft",
        None,
    ),
    ("POST", "/programs/{slug}/partners/{partner}/statements"): lambda t: (
        # Issued already: the same period again answers it.
        "/partners/p/statements",
        {"period": month_label(1)},
    ),
    ("GET", "/programs/{slug}/partners/{partner}/statements"): lambda t: (
        "/partners/p/statements",
        None,
    ),
    ("GET", "/programs/{slug}/partners/{partner}/statements/{number}"): lambda t: (
        "/partners/p/statements/1",
        None,
    ),
    ("GET", "/programs/{slug}/partners/{partner}/statements/{number}/recomputation"): lambda t: (
        "/partners/p/statements/1/recomputation",
        None,
    ),
    (
        "GET",
        "/programs/{slug}/partners/{partner}/statements/{number}/lines/{line}/transfers",
    ): lambda t: ("/partners/p/statements/1/lines/1/transfers", None),
    ("POST", "/programs/{slug}/partners/{partner}/statements/{number}/payments"): lambda t: (
        "/partners/p/statements/2/payments",
        {"reference": fresh("payment"), "amount_minor": 1},
    ),
    ("PUT", "/programs/{slug}/partners/{partner}/payment-method"): lambda t: (
        "/partners/p/payment-method",
        {"payment_method_id": "pm_card_visa"},
    ),
    ("POST", "/programs/{slug}/partners/{partner}/statements/{number}/collection"): lambda t: (
        "/partners/p/statements/2/collection",
        None,
    ),
    ("POST", "/programs/{slug}/partners/{partner}/payouts"): lambda t: (
        "/partners/p/payouts",
        {"reference": fresh("payout"), "amount_minor": 1},
    ),
    ("GET", "/programs/{slug}/partners/{partner}/payouts"): lambda t: (
        "/partners/p/payouts",
        None,
    ),
    ("GET", "/programs/{slug}/partners/{partner}/position"): lambda t: (
        "/partners/p/position",
        None,
    ),
    ("GET", "/programs/{slug}/partner-positions"): lambda t: ("/partner-positions", None),
    # The departure of the firm ``q``, whose final statement is issued.
    ("PUT", "/programs/{slug}/partners/{partner}/departure"): lambda t: (
        # The same departure again: answered as it is.
        "/partners/q/departure",
        departed_days(),
    ),
    ("GET", "/programs/{slug}/partners/{partner}/departure"): lambda t: (
        "/partners/q/departure",
        None,
    ),
    ("GET", "/programs/{slug}/partners/{partner}/departure/report"): lambda t: (
        "/partners/q/departure/report",
        None,
    ),
    ("POST", "/programs/{slug}/partners/{partner}/departure/final-statement"): lambda t: (
        # Issued already: answered again.
        "/partners/q/departure/final-statement",
        None,
    ),
    # Exchange agreements with other programs (one proposed to the tenant).
    ("POST", "/programs/{slug}/exchange-agreements"): lambda t: (
        # Proposed again by A's own key: the same proposal answers 200.
        "/exchange-agreements",
        {"counterparty": t.exchange_peer, "terms": EXCHANGE_TERMS},
    ),
    ("GET", "/programs/{slug}/exchange-agreements"): lambda t: ("/exchange-agreements", None),
    ("GET", "/programs/{slug}/exchange-agreements/{agreement_id}"): lambda t: (
        f"/exchange-agreements/{t.exchange_agreement}",
        None,
    ),
    ("POST", "/programs/{slug}/exchange-agreements/{agreement_id}/versions"): lambda t: (
        f"/exchange-agreements/{t.exchange_agreement}/versions",
        {"terms": EXCHANGE_TERMS},
    ),
    (
        "POST",
        "/programs/{slug}/exchange-agreements/{agreement_id}/versions/{version}/accept",
    ): lambda t: (f"/exchange-agreements/{t.exchange_agreement}/versions/1/accept", None),
    ("GET", "/programs/{slug}/exchange-agreements/{agreement_id}/position"): lambda t: (
        f"/exchange-agreements/{t.exchange_agreement}/position",
        None,
    ),
    # Joint campaigns the operator proposed to its partner p.
    ("POST", "/programs/{slug}/campaigns"): lambda t: ("/campaigns", campaign_proposal()),
    ("GET", "/programs/{slug}/campaigns"): lambda t: ("/campaigns", None),
    ("GET", "/programs/{slug}/campaigns/{campaign_id}"): lambda t: (
        f"/campaigns/{t.campaign}",
        None,
    ),
    ("POST", "/programs/{slug}/campaigns/{campaign_id}/stop"): lambda t: (
        f"/campaigns/{t.campaign_to_stop}/stop",
        None,
    ),
    ("GET", "/programs/{slug}/campaigns/{campaign_id}/attribution"): lambda t: (
        f"/campaigns/{t.campaign}/attribution",
        None,
    ),
}

#: Routes of the platform as a whole: a key bound to a program gets 403,
#: whatever the path names (values for their path parameters below).
PLATFORM_PREFIXES = ("/ledger/", "/jobs/", "/partner-signing-keys")
PLATFORM_PARAMS = {
    "ledger_id": "1",
    "account_id": str(uuid.uuid4()),
    "transfer_id": str(uuid.uuid4()),
    "name": sorted(JOBS)[0],
}

#: Tried by their own tests below.
TENANT_SCOPED = {
    ("POST", "/programs"),
    ("GET", "/api-keys"),
    ("POST", "/api-keys"),
    ("DELETE", "/api-keys/{name}"),
    ("POST", "/me/holds/{hold_id}/release"),
    ("POST", "/me/gifts"),
    ("POST", "/me/exchanges"),
    ("GET", "/me/exchanges/quote"),
}

PROGRAM_CASES |= {
    ("POST", "/programs/{slug}/leads/scoring-versions"): lambda t: (
        "/leads/scoring-versions",
        {"criteria": [{"name": "territory", "weight": 1, "values": {"ZA-WC": 800}}]},
    ),
    ("GET", "/programs/{slug}/leads/scoring-versions"): lambda t: (
        "/leads/scoring-versions",
        None,
    ),
    ("POST", "/programs/{slug}/leads/routing-versions"): lambda t: (
        "/leads/routing-versions",
        LEAD_ROUTING,
    ),
    ("GET", "/programs/{slug}/leads/routing-versions"): lambda t: (
        "/leads/routing-versions",
        None,
    ),
    ("PUT", "/programs/{slug}/leads/referral-terms"): lambda t: (
        "/leads/referral-terms",
        {"reward": "points", "basis": "fixed", "amount": 100},
    ),
    ("GET", "/programs/{slug}/leads/referral-terms"): lambda t: ("/leads/referral-terms", None),
    ("GET", "/programs/{slug}/leads/extensions"): lambda t: ("/leads/extensions", None),
    ("POST", "/programs/{slug}/leads/extensions/{extension_id}/approval"): lambda t: (
        f"/leads/extensions/{t.leads['to_approve']}/approval",
        {},
    ),
    ("POST", "/programs/{slug}/leads/extensions/{extension_id}/refusal"): lambda t: (
        f"/leads/extensions/{t.leads['to_refuse']}/refusal",
        {"note": "no"},
    ),
    ("GET", "/programs/{slug}/leads/{lead_id}"): lambda t: (f"/leads/{t.leads['lead']}", None),
    ("GET", "/programs/{slug}/leads/{lead_id}/routing"): lambda t: (
        f"/leads/{t.leads['shared']}/routing",
        None,
    ),
    ("PUT", "/programs/{slug}/partners/{partner}/lead-profile"): lambda t: (
        "/partners/p/lead-profile",
        LEAD_PROFILE,
    ),
    ("GET", "/programs/{slug}/partners/{partner}/lead-profile"): lambda t: (
        "/partners/p/lead-profile",
        None,
    ),
}

#: Ids of each tenant's market development fund objects, by tenant slug.
MDF_IDS: dict[str, dict[str, str]] = {}


def mdf_fund_body() -> dict[str, Any]:
    today = datetime.now(UTC).date()
    return {
        "reference": fresh("mdf"),
        "partner": "p",
        "name": "Isolation fund",
        "period_start": (today - timedelta(days=1)).isoformat(),
        "period_end": (today + timedelta(days=30)).isoformat(),
        "unit": "points",
        "amount": 100_000,
    }


async def add_mdf(client: Client, engine: AsyncEngine, tenant: Tenant) -> None:
    """A fund of firm ``p`` with activities to approve and refuse, an
    approved one with submitted claims to approve and refuse (the firm's
    requests and claims made through the use cases, as its client would)."""
    base = f"/programs/{tenant.slug}/mdf"
    ids = MDF_IDS.setdefault(tenant.slug, {})
    ids["fund"] = (await ok(await client.post(f"{base}/funds", json=mdf_fund_body())))["id"]
    today = datetime.now(UTC).date()
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        firm = (
            await session.execute(
                text(
                    "SELECT p.id, p.program_id FROM partners p JOIN programs g"
                    " ON g.id = p.program_id WHERE g.slug = :slug AND p.slug = 'p'"
                ),
                {"slug": tenant.slug},
            )
        ).one()
        client_principal = Principal(
            kind=PrincipalKind.PARTNER,
            actor="partner:isolation",
            program_id=firm.program_id,
            partner_id=firm.id,
            partner_ids=frozenset({firm.id}),
        )
        request = ActivityRequest(
            title="Isolation", plan="A plan", starts_on=today, ends_on=today, amount=1000
        )
        for name in ("to_approve", "to_refuse", "claimed"):
            made = await request_activity(
                session,
                uuid.UUID(ids["fund"]),
                request,
                datetime.now(UTC),
                principal=client_principal,
            )
            ids[name] = made.id
    await ok(await client.post(f"{base}/activities/{ids['claimed']}/approval", json={}))
    proof = [Proof(url="https://files.example.com/proof.pdf", description="Invoice")]
    async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
        program = await session.scalar(select(Program).where(Program.slug == tenant.slug))
        for name in ("claim_to_approve", "claim_to_refuse"):
            claim = await draft_claim(
                session,
                uuid.UUID(ids["claimed"]),
                ClaimDraft(amount=10, description="Spent", proof=proof, submit=True),
                datetime.now(UTC),
                principal=client_principal,
                program=program,
            )
            ids[name] = claim.id


PROGRAM_CASES |= {
    ("POST", "/programs/{slug}/mdf/funds"): lambda t: ("/mdf/funds", mdf_fund_body()),
    ("GET", "/programs/{slug}/mdf/funds"): lambda t: ("/mdf/funds", None),
    ("GET", "/programs/{slug}/mdf/funds/{fund_id}"): lambda t: (
        f"/mdf/funds/{MDF_IDS[t.slug]['fund']}",
        None,
    ),
    ("GET", "/programs/{slug}/mdf/funds/{fund_id}/reconciliation"): lambda t: (
        f"/mdf/funds/{MDF_IDS[t.slug]['fund']}/reconciliation",
        None,
    ),
    ("GET", "/programs/{slug}/mdf/funds/{fund_id}/activities"): lambda t: (
        f"/mdf/funds/{MDF_IDS[t.slug]['fund']}/activities",
        None,
    ),
    ("GET", "/programs/{slug}/mdf/activities/{activity_id}"): lambda t: (
        f"/mdf/activities/{MDF_IDS[t.slug]['claimed']}",
        None,
    ),
    ("POST", "/programs/{slug}/mdf/activities/{activity_id}/approval"): lambda t: (
        f"/mdf/activities/{MDF_IDS[t.slug]['to_approve']}/approval",
        {},
    ),
    ("POST", "/programs/{slug}/mdf/activities/{activity_id}/refusal"): lambda t: (
        f"/mdf/activities/{MDF_IDS[t.slug]['to_refuse']}/refusal",
        {"reason": "Not this time"},
    ),
    ("GET", "/programs/{slug}/mdf/activities/{activity_id}/claims"): lambda t: (
        f"/mdf/activities/{MDF_IDS[t.slug]['claimed']}/claims",
        None,
    ),
    ("GET", "/programs/{slug}/mdf/claims/{claim_id}"): lambda t: (
        f"/mdf/claims/{MDF_IDS[t.slug]['claim_to_refuse']}",
        None,
    ),
    ("POST", "/programs/{slug}/mdf/claims/{claim_id}/approval"): lambda t: (
        f"/mdf/claims/{MDF_IDS[t.slug]['claim_to_approve']}/approval",
        None,
    ),
    ("POST", "/programs/{slug}/mdf/claims/{claim_id}/refusal"): lambda t: (
        f"/mdf/claims/{MDF_IDS[t.slug]['claim_to_refuse']}/refusal",
        {"reason": "Blurry"},
    ),
}


async def add_periods(pool: asyncpg.Pool, tenant: Tenant) -> None:
    """The program started last month (UTC, its zone): that month has
    ended, and is the first that may close."""
    await pool.execute(
        "UPDATE programs SET started_at = $2 WHERE slug = $1",
        tenant.slug,
        months_back(1)[0] + timedelta(hours=1),
    )


PROGRAM_CASES |= {
    ("GET", "/programs/{slug}/finance/periods"): lambda t: ("/finance/periods", None),
    # Closed already the second time: answered as it is.
    ("POST", "/programs/{slug}/finance/periods/{month}/close"): lambda t: (
        f"/finance/periods/{month_label(1)}/close",
        None,
    ),
    ("POST", "/programs/{slug}/finance/periods/{month}/reopen"): lambda t: (
        f"/finance/periods/{month_label(1)}/reopen",
        {"reason": "isolation"},
    ),
}


async def add_revenue_run(client: Client, tenant: Tenant) -> None:
    """Revenue recognised for the month before last, for its read: a final
    run needs its period closed, and closing last month (the program's
    first, ``add_periods``) closes the ledger through both."""
    await ok(await client.post(f"/programs/{tenant.slug}/finance/periods/{month_label(1)}/close"))
    await ok(
        await client.post(
            f"/programs/{tenant.slug}/finance/revenue/recognitions",
            json={"period": month_label(2)},
        )
    )


PROGRAM_CASES |= {
    ("GET", "/programs/{slug}/finance/revenue/settings"): lambda t: (
        "/finance/revenue/settings",
        None,
    ),
    ("PUT", "/programs/{slug}/finance/revenue/settings"): lambda t: (
        "/finance/revenue/settings",
        {"default_breakage_rate": "0.25"},
    ),
    ("GET", "/programs/{slug}/finance/revenue/allocations"): lambda t: (
        "/finance/revenue/allocations",
        None,
    ),
    ("GET", "/programs/{slug}/finance/revenue/breakage-estimates"): lambda t: (
        "/finance/revenue/breakage-estimates",
        None,
    ),
    # Recognised already (add_revenue_run): answered as it is, whatever the
    # reopen case did to last month since.
    ("POST", "/programs/{slug}/finance/revenue/recognitions"): lambda t: (
        "/finance/revenue/recognitions",
        {"period": month_label(2)},
    ),
    ("GET", "/programs/{slug}/finance/revenue/recognitions/{period}"): lambda t: (
        f"/finance/revenue/recognitions/{month_label(2)}",
        None,
    ),
    ("GET", "/programs/{slug}/finance/journal"): lambda t: (
        f"/finance/journal?period={month_label(1)}",
        None,
    ),
    # Recorded already the second time: answered as it is.
    ("POST", "/programs/{slug}/finance/exchange-rates"): lambda t: (
        "/finance/exchange-rates",
        {"currency": "EUR", "rate": "18.25", "effective_on": "2026-01-01"},
    ),
    ("GET", "/programs/{slug}/finance/exchange-rates"): lambda t: (
        "/finance/exchange-rates",
        None,
    ),
}


#: Per tenant: the id of a reconciliation run, for its read.
RECONCILIATION_RUNS: dict[str, str] = {}


async def add_reconciliation_run(client: Client, tenant: Tenant) -> None:
    made = await ok(await client.post(f"/programs/{tenant.slug}/finance/reconciliations", json={}))
    RECONCILIATION_RUNS[tenant.slug] = made["run"]["id"]


PROGRAM_CASES |= {
    ("POST", "/programs/{slug}/finance/reconciliations"): lambda t: (
        "/finance/reconciliations",
        {},
    ),
    ("GET", "/programs/{slug}/finance/reconciliations"): lambda t: (
        "/finance/reconciliations",
        None,
    ),
    ("GET", "/programs/{slug}/finance/reconciliations/{run_id}"): lambda t: (
        f"/finance/reconciliations/{RECONCILIATION_RUNS[t.slug]}",
        None,
    ),
}


#: Per tenant: a redemption and a captured hold to cancel, a reinstatement,
#: the sunset scheduled (api.routes.lot_operations).
LOT_IDS: dict[str, dict[str, Any]] = {}


async def add_lot_operations(client: Client, tenant: Tenant) -> None:
    base = f"/programs/{tenant.slug}"
    ids = LOT_IDS.setdefault(tenant.slug, {})
    as_member = member_token(tenant.slug, "m")
    cup = {"sku": "CUP", "name": "Cup", "points_price": 10}
    await ok(await client.post(f"{base}/rewards", json=cup))
    await ok(
        await client.post(
            "/me/redemptions",
            json={"sku": "CUP"},
            headers={**as_member, "Idempotency-Key": "redeem-to-cancel"},
        )
    )
    history = await ok(await client.get("/me/transactions", headers=as_member))
    [redemption] = [m for m in history["movements"] if m["kind"] == "redemption"]
    ids["redemption"] = redemption["id"]
    hold = await ok(
        await client.post(
            "/me/holds",
            json={"order_ref": "cart-cancel", "amount_minor": 10, "timeout_seconds": 3600},
            headers={**as_member, "Idempotency-Key": "hold-to-cancel"},
        )
    )
    await ok(await client.post(f"{base}/holds/{hold['id']}/capture", json={}))
    ids["hold"] = hold["id"]
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    made = await ok(
        await client.post(f"{base}/reinstatements", json={"reference": "setup", "since": since})
    )
    ids["reinstatement"] = made["id"]
    ids["sunset"] = {
        "sunset_at": (datetime.now(UTC) + timedelta(days=120)).isoformat(),
        "notice_days": 90,
        "reason": "isolation",
    }
    await ok(await client.post(f"{base}/sunset", json=ids["sunset"]))


def _since() -> str:
    return (datetime.now(UTC) - timedelta(days=1)).isoformat()


PROGRAM_CASES |= {
    ("POST", "/programs/{slug}/members/{external_id}/redemptions/{transfer_id}/cancellation"): (
        lambda t: (
            f"/members/m/redemptions/{LOT_IDS[t.slug]['redemption']}/cancellation",
            {"cancellation_id": fresh("C"), "reason": "isolation"},
        )
    ),
    ("POST", "/programs/{slug}/holds/{hold_id}/cancellation"): lambda t: (
        f"/holds/{LOT_IDS[t.slug]['hold']}/cancellation",
        {"cancellation_id": fresh("C"), "reason": "isolation"},
    ),
    ("POST", "/programs/{slug}/reinstatements"): lambda t: (
        "/reinstatements",
        {"reference": fresh("R"), "since": _since()},
    ),
    ("GET", "/programs/{slug}/reinstatements"): lambda t: ("/reinstatements", None),
    ("GET", "/programs/{slug}/reinstatements/{reinstatement_id}"): lambda t: (
        f"/reinstatements/{LOT_IDS[t.slug]['reinstatement']}",
        None,
    ),
    ("GET", "/programs/{slug}/sunset"): lambda t: ("/sunset", None),
    # The setup's own sunset: found again while it stands, scheduled anew
    # once the DELETE case has cancelled it.
    ("POST", "/programs/{slug}/sunset"): lambda t: ("/sunset", LOT_IDS[t.slug]["sunset"]),
    ("DELETE", "/programs/{slug}/sunset"): lambda t: ("/sunset", None),
}


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


PROGRAM_CASES |= {
    ("GET", "/programs/{slug}/finance/liability"): lambda t: (
        f"/finance/liability?as_of={_today()}&by=partner",
        None,
    ),
    ("GET", "/programs/{slug}/finance/roll-forward"): lambda t: (
        f"/finance/roll-forward?first_day={_today()}&last_day={_today()}&partner=p&format=csv",
        None,
    ),
    ("GET", "/programs/{slug}/finance/trial-balance"): lambda t: (
        f"/finance/trial-balance?as_of={_today()}",
        None,
    ),
}


async def add_segments(client: Client, tenant: Tenant) -> None:
    """Saved segments: one to read, change, count and export, one to delete."""
    for name in ("kept", "to-delete"):
        await ok(
            await client.post(
                f"/programs/{tenant.slug}/segments", json={"name": name, "definition": {}}
            )
        )


PROGRAM_CASES |= {
    ("POST", "/programs/{slug}/segments"): lambda t: (
        "/segments",
        {"name": fresh("seg"), "definition": {"filter": "has_email or purchases > 0"}},
    ),
    ("GET", "/programs/{slug}/segments"): lambda t: ("/segments", None),
    ("GET", "/programs/{slug}/segments/{name}"): lambda t: ("/segments/kept", None),
    ("PUT", "/programs/{slug}/segments/{name}"): lambda t: (
        "/segments/kept",
        {"definition": {"recency": {"max_days": 30}}},
    ),
    ("DELETE", "/programs/{slug}/segments/{name}"): lambda t: ("/segments/to-delete", None),
    ("GET", "/programs/{slug}/segments/{name}/count"): lambda t: ("/segments/kept/count", None),
    ("GET", "/programs/{slug}/segments/{name}/export"): lambda t: (
        "/segments/kept/export?format=parquet",
        None,
    ),
    ("GET", "/programs/{slug}/analytics/members/{external_id}/value"): lambda t: (
        "/analytics/members/m/value",
        None,
    ),
    ("GET", "/programs/{slug}/analytics/redemption-curves"): lambda t: (
        f"/analytics/redemption-curves?period={month_label(1)}",
        None,
    ),
    ("GET", "/programs/{slug}/analytics/program-roi"): lambda t: (
        f"/analytics/program-roi?period={month_label(1)}",
        None,
    ),
    ("GET", "/programs/{slug}/analytics/partner-profitability"): lambda t: (
        f"/analytics/partner-profitability?period={month_label(2)}",
        None,
    ),
    ("GET", "/programs/{slug}/analytics/campaigns/{campaign_id}/roi"): lambda t: (
        f"/analytics/campaigns/{t.campaign}/roi",
        None,
    ),
}

#: Per tenant: the program's own webhook endpoints (one kept, one to delete)
#: and a dead-lettered test delivery of the kept one (api.routes.program_webhooks).
PROGRAM_WEBHOOKS: dict[str, dict[str, str]] = {}


async def add_program_webhooks(client: Client, pool: asyncpg.Pool, tenant: Tenant) -> None:
    base = f"/programs/{tenant.slug}/webhook-endpoints"
    ids = PROGRAM_WEBHOOKS.setdefault(tenant.slug, {})
    for use in ("kept", "doomed"):
        made = await ok(await client.post(base, json={"url": f"https://hooks.example.com/{use}"}))
        ids[use] = made["id"]
    test = await ok(await client.post(f"{base}/{ids['kept']}/test-events"))
    ids["delivery"] = test["id"]
    await pool.execute(
        "UPDATE webhook_deliveries SET status = 'dead', next_attempt_at = NULL, dead_at = now()"
        " WHERE id = $1",
        uuid.UUID(hex=test["id"].removeprefix("msg_")),
    )


def _own_endpoint(t: Tenant, use: str = "kept") -> str:
    return f"/webhook-endpoints/{PROGRAM_WEBHOOKS[t.slug][use]}"


PROGRAM_CASES |= {
    ("POST", "/programs/{slug}/webhook-endpoints"): lambda t: (
        "/webhook-endpoints",
        {"url": f"https://hooks.example.com/{fresh('new')}", "event_types": [ALERT_TOPIC]},
    ),
    ("GET", "/programs/{slug}/webhook-endpoints"): lambda t: ("/webhook-endpoints", None),
    ("GET", "/programs/{slug}/webhook-endpoints/{endpoint_id}"): lambda t: (
        _own_endpoint(t),
        None,
    ),
    ("PATCH", "/programs/{slug}/webhook-endpoints/{endpoint_id}"): lambda t: (
        _own_endpoint(t),
        {"description": fresh("ops")},
    ),
    ("DELETE", "/programs/{slug}/webhook-endpoints/{endpoint_id}"): lambda t: (
        _own_endpoint(t, "doomed"),
        None,
    ),
    ("POST", "/programs/{slug}/webhook-endpoints/{endpoint_id}/secret-rotations"): lambda t: (
        f"{_own_endpoint(t)}/secret-rotations",
        {"overlap_seconds": 60},
    ),
    ("GET", "/programs/{slug}/webhook-endpoints/{endpoint_id}/deliveries"): lambda t: (
        f"{_own_endpoint(t)}/deliveries",
        None,
    ),
    ("POST", "/programs/{slug}/webhook-endpoints/{endpoint_id}/replays"): lambda t: (
        f"{_own_endpoint(t)}/replays",
        {"since": "2020-01-01T00:00:00Z"},
    ),
    ("POST", "/programs/{slug}/webhook-endpoints/{endpoint_id}/test-events"): lambda t: (
        f"{_own_endpoint(t)}/test-events",
        None,
    ),
    ("GET", "/programs/{slug}/webhook-deliveries/{message_id}"): lambda t: (
        f"/webhook-deliveries/{PROGRAM_WEBHOOKS[t.slug]['delivery']}",
        None,
    ),
    ("POST", "/programs/{slug}/webhook-deliveries/{message_id}/replays"): lambda t: (
        f"/webhook-deliveries/{PROGRAM_WEBHOOKS[t.slug]['delivery']}/replays",
        None,
    ),
}

#: Routes with no isolation case, and why none is needed.
_OWN = "a member token's own member only: the path names nothing, the token its program"
#: The partner API's routes: the token names the program and the partner, and
#: tests/api/test_partner_isolation.py tries each with another partner's
#: token and ids (it fails on a /partner route without a case).
PARTNER_PREFIX = "/partner/"
EXEMPT: dict[tuple[str, str], str] = {
    ("GET", "/health"): "names no tenant's data",
    ("POST", "/oauth/token"): "no API key: a partner client's own credentials, which name"
    " its program and firm (tests/api/test_oauth.py)",
    ("GET", "/.well-known/jwks.json"): "the platform's public keys: no tenant's data",
    ("POST", "/webhooks/stripe"): "no API key: Stripe's signature authenticates it",
    ("GET", "/schema"): "the API's reference document",
    ("GET", "/schema/openapi.json"): "the API's reference document",
    ("GET", "/schema/{path}"): "the API's reference document",
    ("GET", "/schema/assets/{file_path}"): "the reference's static assets",
    ("HEAD", "/schema/assets/{file_path}"): "the reference's static assets",
    ("GET", "/me"): _OWN,
    ("GET", "/me/balance"): _OWN,
    ("GET", "/me/transactions"): _OWN,
    ("GET", "/me/rewards"): _OWN,
    ("GET", "/me/tier"): _OWN,
    ("GET", "/me/expiring"): _OWN,
    ("GET", "/me/export"): _OWN,
    ("POST", "/me/holds"): _OWN,
    ("POST", "/me/redemptions"): _OWN + " (a SKU is looked up in the token's program)",
    ("POST", "/me/points-purchases"): _OWN,
    ("GET", "/me/exchanges"): _OWN,
    ("GET", "/me/partner-links"): _OWN,
    ("PUT", "/me/partner-links/{partner}"): _OWN
    + " (the partner is looked up in the token's program)",
    ("DELETE", "/me/partner-links/{partner}"): _OWN
    + " (the partner is looked up in the token's program)",
    ("GET", "/me/data-sharing/consents"): _OWN,
    ("PUT", "/me/data-sharing/consents/{field}"): _OWN + " (a field name, no id)",
    ("GET", "/me/data-sharing/disclosures"): _OWN,
}


def app_routes(app: Litestar) -> set[tuple[str, str]]:
    """Every (method, path) the app answers, CORS preflights aside."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                for method in handler.http_methods:
                    if method != "OPTIONS":
                        found.add((method, route.path_format))
    return found


def is_platform(path: str) -> bool:
    return path.startswith(PLATFORM_PREFIXES)


def test_every_route_has_an_isolation_case_or_a_reason(app: Litestar) -> None:
    routes = app_routes(app)
    covered = set(PROGRAM_CASES) | TENANT_SCOPED | set(EXEMPT)
    missing = {
        r for r in routes - covered if not is_platform(r[1]) and not r[1].startswith(PARTNER_PREFIX)
    }
    assert not missing, f"routes without an isolation case: {sorted(missing)}"
    stale = covered - routes
    assert not stale, f"cases of routes the app no longer has: {sorted(stale)}"
    for method, path in routes:
        assert not (path.startswith("/programs/{slug}") and (method, path) not in PROGRAM_CASES)
    # The member API takes no program from the path: the token names it.
    assert not [p for _, p in routes if p.startswith("/me") and "{slug}" in p]


async def snapshot(pool: asyncpg.Pool, slug: str) -> dict[str, Any]:
    """All that is B's: its rows in every table keyed by program (and the
    two keyed through one), its audit lines, its ledger's writes and totals."""
    program = await pool.fetchrow("SELECT id, ledger_id FROM programs WHERE slug = $1", slug)
    assert program is not None
    tables = await pool.fetch(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND column_name = 'program_id' ORDER BY table_name"
    )
    found: dict[str, Any] = {}
    for (table,) in tables:
        found[table] = await pool.fetch(
            f"SELECT to_jsonb(t)::text AS row FROM {table} t WHERE program_id = $1 ORDER BY 1",
            program["id"],
        )
    found["programs"] = await pool.fetch(
        "SELECT to_jsonb(t)::text FROM programs t WHERE id = $1", program["id"]
    )
    found["purchase_returns"] = await pool.fetch(
        "SELECT to_jsonb(r)::text AS row FROM purchase_returns r JOIN purchases p"
        " ON p.id = r.purchase_id WHERE p.program_id = $1 ORDER BY 1",
        program["id"],
    )
    found["threshold_grants"] = await pool.fetch(
        "SELECT to_jsonb(g)::text AS row FROM threshold_grants g JOIN members m"
        " ON m.id = g.member_id WHERE m.program_id = $1 ORDER BY 1",
        program["id"],
    )
    found["webhook_attempts"] = await pool.fetch(
        "SELECT to_jsonb(a)::text AS row FROM webhook_attempts a JOIN webhook_deliveries d"
        " ON d.id = a.delivery_id WHERE d.program_id = $1 ORDER BY 1",
        program["id"],
    )
    for table in ("partner_status_changes", "partner_users"):
        found[table] = await pool.fetch(
            f"SELECT to_jsonb(r)::text AS row FROM {table} r JOIN partners p"
            " ON p.id = r.partner_id WHERE p.program_id = $1 ORDER BY 1",
            program["id"],
        )
    found["exchange_agreements"] = await pool.fetch(
        "SELECT to_jsonb(x)::text AS row FROM exchange_agreements x"
        " WHERE $1 IN (x.program_a_id, x.program_b_id) ORDER BY 1",
        program["id"],
    )
    found["exchange_rate_versions"] = await pool.fetch(
        "SELECT to_jsonb(v)::text AS row FROM exchange_rate_versions v JOIN exchange_agreements x"
        " ON x.id = v.agreement_id WHERE $1 IN (x.program_a_id, x.program_b_id) ORDER BY 1",
        program["id"],
    )
    found["audit"] = await pool.fetch(
        "SELECT id FROM audit_events WHERE subject = $1 OR subject LIKE $2 ORDER BY id",
        f"program:{slug}",
        f"program:{slug}:%",
    )
    found["all audit lines"] = await pool.fetchval("SELECT count(*) FROM audit_events")
    found["ledger writes"] = await count_writes(pool, program["ledger_id"])
    found["ledger totals"] = await pool.fetch(
        "SELECT to_jsonb(t)::text FROM ledger_account_balances t WHERE ledger = $1 ORDER BY 1",
        program["ledger_id"],
    )
    return found


async def send(client: Client, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return await client.request(
        method, path, json=body if body is not None else None, headers=headers
    )


def assert_no_program(response: Any, slug: str) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert (body["type"], body["status"]) == (PROBLEMS + "not-found", 404)
    assert body["detail"] == f"no program {slug!r}", body


@pytest.mark.parametrize("route", sorted(PROGRAM_CASES), ids=" ".join)
async def test_a_key_of_one_program_finds_no_other(
    client: Client, pool: asyncpg.Pool, tenants: tuple[Tenant, Tenant], route: tuple[str, str]
) -> None:
    a, b = tenants
    method, _ = route
    case = PROGRAM_CASES[route]
    suffix, body = case(b)
    before = await snapshot(pool, b.slug)

    across = await send(client, method, f"/programs/{b.slug}{suffix}", body, a.key)

    assert_no_program(across, b.slug)
    assert await snapshot(pool, b.slug) == before
    # Exactly what a program that does not exist answers.
    nowhere = fresh("nowhere")
    missing = await send(client, method, f"/programs/{nowhere}{suffix}", body, a.key)
    assert_no_program(missing, nowhere)
    # The same key on its own program, with its own ids, finds them.
    suffix, body = case(a)
    own = await send(client, method, f"/programs/{a.slug}{suffix}", body, a.key)
    assert own.status_code != 404, own.text
    assert own.status_code < 300, own.text


async def test_a_key_of_one_program_opens_no_other(
    client: Client, pool: asyncpg.Pool, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    before = await snapshot(pool, b.slug)

    across = await client.post("/programs", json=b.spec, headers=a.key)

    assert across.status_code == 403, across.text
    assert across.json()["type"] == PROBLEMS + "forbidden"
    assert await snapshot(pool, b.slug) == before
    # The same answer for a slug nobody holds: it tells nothing of B.
    nowhere = fresh("nowhere")
    missing = await client.post("/programs", json={**b.spec, "slug": nowhere}, headers=a.key)
    assert (missing.status_code, missing.json()["detail"]) == (403, across.json()["detail"])
    assert await pool.fetchval("SELECT count(*) FROM programs WHERE slug = $1", nowhere) == 0
    # Its own program, sent again: the open converges on it.
    again = await client.post("/programs", json=a.spec, headers=a.key)
    assert again.status_code == 200, again.text


async def test_keys_of_one_program_manage_only_that_programs_keys(
    client: Client, pool: asyncpg.Pool, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    before = await snapshot(pool, b.slug)

    listing = await client.get("/api-keys", headers=a.key)
    revoke = await client.delete(f"/api-keys/{b.key_name}", headers=a.key)
    issue_b = await client.post(
        "/api-keys",
        json={"name": fresh("x"), "scopes": ["programs:read"], "program": b.slug},
        headers=a.key,
    )
    nowhere = fresh("nowhere")
    issue_missing = await client.post(
        "/api-keys",
        json={"name": fresh("x"), "scopes": ["programs:read"], "program": nowhere},
        headers=a.key,
    )

    assert listing.status_code == 200
    assert {key["program"] for key in listing.json()} == {a.slug}
    assert a.key_name in {key["name"] for key in listing.json()}
    assert revoke.status_code == 404 and revoke.json()["type"] == PROBLEMS + "not-found"
    assert (await client.get(f"/programs/{b.slug}", headers=b.key)).status_code == 200
    assert issue_b.status_code == 422, issue_b.text
    assert issue_b.json()["detail"] == f"program: no program {b.slug!r}"
    assert [e["key"] for e in issue_b.json()["errors"]] == ["program"]
    assert issue_missing.json()["detail"] == f"program: no program {nowhere!r}"
    assert await snapshot(pool, b.slug) == before
    # Left out, the program is the issuer's own: no key reaches wider.
    own = await client.post(
        "/api-keys", json={"name": fresh("own"), "scopes": ["programs:read"]}, headers=a.key
    )
    assert (own.status_code, own.json()["program"]) == (201, a.slug), own.text
    bound = {"Authorization": f"Bearer {own.json()['key']}"}
    assert_no_program(await client.get(f"/programs/{b.slug}", headers=bound), b.slug)


async def test_a_key_of_one_program_may_not_use_the_platforms_routes(
    app: Litestar, client: Client, pool: asyncpg.Pool, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    platform = sorted(r for r in app_routes(app) if is_platform(r[1]))
    assert ("POST", "/jobs/{name}/runs") in platform and ("POST", "/ledger/transfers") in platform
    before = await snapshot(pool, b.slug)

    for method, path in platform:
        # A parameter this test has no value for fails here: give it one.
        concrete = path.format(**PLATFORM_PARAMS)
        refused = await client.request(method, concrete, json={}, headers=a.key)

        assert refused.status_code == 403, (method, path, refused.text)
        assert refused.headers["content-type"].startswith(PROBLEM_JSON)
        assert "one program only" in refused.json()["detail"]
    assert await snapshot(pool, b.slug) == before


async def test_a_member_token_of_one_program_reaches_nothing_of_another(
    client: Client, pool: asyncpg.Pool, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    await ok(await client.post(f"/programs/{b.slug}/members", json={"external_id": "b-only"}))
    before = await snapshot(pool, b.slug)
    as_member_of_a = member_token(a.slug, "m")

    release = await client.post(f"/me/holds/{b.holds[2]}/release", headers=as_member_of_a)
    gift = await client.post(
        "/me/gifts",
        json={"to": "b-only", "points": 1},
        headers={**as_member_of_a, "Idempotency-Key": fresh("gift")},
    )

    assert release.status_code == 404 and release.json()["type"] == PROBLEMS + "not-found"
    assert gift.status_code == 404 and gift.json()["type"] == PROBLEMS + "not-found"
    # A program without an exchange agreement with A is not one to convert into.
    exchange = await client.post(
        "/me/exchanges",
        json={"to_program": b.slug, "points": 1},
        headers={**as_member_of_a, "Idempotency-Key": fresh("exchange")},
    )
    quote = await client.get(
        "/me/exchanges/quote", params={"to": b.slug, "points": 1}, headers=as_member_of_a
    )
    for refused in (exchange, quote):
        assert refused.status_code == 404 and refused.json()["type"] == PROBLEMS + "not-found"
    assert await snapshot(pool, b.slug) == before
    # B's own member releases it.
    mine = await client.post(f"/me/holds/{b.holds[2]}/release", headers=member_token(b.slug, "m"))
    assert mine.status_code == 200, mine.text
