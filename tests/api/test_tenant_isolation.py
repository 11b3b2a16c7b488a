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
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.modules import JOBS, SCOPES
from api.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, AUTH, PROBLEM_JSON, PROBLEMS, count_writes

SECRET = "an-isolation-secret-of-32-chars!!"
AUDIENCE = "coalition-members"
_fresh = itertools.count(1)

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
async def tenants(client: Client) -> tuple[Tenant, Tenant]:
    return await make_tenant(client, "a"), await make_tenant(client, "b")


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
        {"code": fresh("t"), "name": "Tier", "rank": next(_fresh) + 10, "threshold": 1},
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
}

#: Routes of the platform as a whole: a key bound to a program gets 403,
#: whatever the path names (values for their path parameters below).
PLATFORM_PREFIXES = ("/ledger/", "/jobs/")
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
}

#: Routes with no isolation case, and why none is needed.
_OWN = "a member token's own member only: the path names nothing, the token its program"
EXEMPT: dict[tuple[str, str], str] = {
    ("GET", "/health"): "names no tenant's data",
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
    missing = {r for r in routes - covered if not is_platform(r[1])}
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
    for table in ("partner_status_changes", "partner_users"):
        found[table] = await pool.fetch(
            f"SELECT to_jsonb(r)::text AS row FROM {table} r JOIN partners p"
            " ON p.id = r.partner_id WHERE p.program_id = $1 ORDER BY 1",
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
    assert await snapshot(pool, b.slug) == before
    # B's own member releases it.
    mine = await client.post(f"/me/holds/{b.holds[2]}/release", headers=member_token(b.slug, "m"))
    assert mine.status_code == 200, mine.text
