"""The partner isolation matrix: every route of the partner API (under
``/partner``, walked from the app itself: a new route joins on its own),
tried with another partner's token on partner A's real ids.

- B (another firm of A's program) and C (a firm of another program), each
  with a token of every scope, on A's ids: 404 not-found, exactly as for
  ids that exist nowhere, and nothing of A's changes (its rows in every
  table with a ``partner_id``, the audit trail's length).
- A route that names nothing (a list, the caller's own position) is tried
  with B's token: it answers, and names none of A's ids.
- A's own token on A's ids is not refused (the case is a real request).

A route with no case here fails the test. To add one, put the objects its
case needs in ``SETUPS`` (a function making them for a side, through the
API, with that side's token, and keeping their ids in ``side.ids``), and
the case in ``CASES``.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.settings import Settings
from core.codes import AccountCode, TransferCode, partner_account_id
from ledger import Ledger, Transfer
from partners.webhook_schemas import delivery_id
from tests.api.conftest import ADMIN_TOKEN, AUTH, PROBLEM_JSON, PROBLEMS, SIGNING_SECRET
from tests.api.test_tenant_isolation import CONTRACT, app_routes
from tests.partners.settlement_helpers import label, months_back
from tests.partners.tokens import api_partner_bearer

Client = AsyncTestClient[Litestar]
_fresh = itertools.count(1)


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(_fresh)}-{uuid.uuid4().hex[:6]}"


@dataclass
class Side:
    """A partner firm, its token (every partner scope), and ids of its objects."""

    program: str
    partner: str
    partner_id: str
    token: dict[str, str]
    pool: asyncpg.Pool | None = None
    ledger: Ledger | None = None
    #: What ``SETUPS`` made for it, by a name its cases know.
    ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class World:
    #: Whose objects the others try.
    a: Side
    #: Another firm of A's program.
    b: Side
    #: A firm of another program.
    c: Side


@dataclass(frozen=True)
class Case:
    #: The request (path under ``/partner``, JSON body or None) naming the
    #: side's own objects; write bodies carry fresh ids, so that the same
    #: request on A's own objects succeeds.
    request: Callable[[Side], tuple[str, Any]]
    #: The route names nothing: it answers the token's own data only.
    own_only: bool = False


#: Make a side's objects (through the API, with ``side.token``), keeping
#: their ids in ``side.ids``. Run for A, B and C alike.
SETUPS: list[Callable[[Client, Side], Awaitable[None]]] = []

#: (method, path as the app declares it) -> its case.
CASES: dict[tuple[str, str], Case] = {}


def _own(path: str) -> Case:
    return Case(request=lambda side: (path, None), own_only=True)


async def _posted(client: Client, path: str, side: Side, body: Any = None) -> dict[str, Any]:
    made = await client.post(
        f"/partner{path}", json=body, headers={**side.token, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert made.status_code == 201, made.text
    answer: dict[str, Any] = made.json()
    return answer


async def _webhook_endpoints(client: Client, side: Side) -> None:
    """Two endpoints (one for the delete case alone) and a dead delivery."""
    spec = {"url": "http://127.0.0.1:9/hook", "description": "isolation"}
    side.ids["endpoint"] = (await _posted(client, "/webhook-endpoints", side, spec))["id"]
    side.ids["doomed"] = (await _posted(client, "/webhook-endpoints", side, spec))["id"]
    test_event = f"/webhook-endpoints/{side.ids['endpoint']}/test-events"
    side.ids["delivery"] = (await _posted(client, test_event, side))["id"]
    # Dead-lettered, so that it can be replayed (a pending one is sent anyway).
    assert side.pool is not None
    await side.pool.execute(
        "UPDATE webhook_deliveries SET status = 'dead', next_attempt_at = NULL WHERE id = $1",
        delivery_id(side.ids["delivery"]),
    )


async def _statement(client: Client, side: Side) -> None:
    """An issued statement of two months ago with one line: a contract in
    force since then (moved back, as the first version may start no earlier
    than the firm) and points issued then, straight on the ledger."""
    assert side.pool is not None and side.ledger is not None
    base = f"/programs/{side.program}/partners/{side.partner}"
    member = fresh("m")
    enrolled = await client.post(f"/programs/{side.program}/members", json={"external_id": member})
    assert enrolled.status_code == 201, enrolled.text
    assert (await client.post(f"{base}/contracts", json=CONTRACT)).status_code == 201
    published = await client.post(
        f"{base}/contracts/1/publication", json={"effective_from": datetime.now(UTC).isoformat()}
    )
    assert published.status_code in (200, 201), published.text
    funded = await client.post(
        f"{base}/funding", json={"reference": fresh("block"), "points": 1000, "amount_minor": 1500}
    )
    assert funded.status_code in (200, 201), funded.text
    start = months_back(2)[0]
    partner_id = uuid.UUID(side.partner_id)
    await side.pool.execute(
        "UPDATE partners SET created_at = $2 WHERE id = $1", partner_id, start - timedelta(days=30)
    )
    await side.pool.execute(
        "UPDATE partner_contracts SET effective_from = $2 WHERE partner_id = $1", partner_id, start
    )
    row = await side.pool.fetchrow(
        "SELECT g.id, g.ledger_id, m.wallet_account_id FROM programs g JOIN members m"
        " ON m.program_id = g.id WHERE g.slug = $1 AND m.external_id = $2",
        side.program,
        member,
    )
    assert row is not None
    [outcome] = await side.ledger.create_transfers(
        [
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=partner_account_id(
                    row["id"], partner_id, AccountCode.PARTNER_ISSUANCE
                ),
                credit_account_id=row["wallet_account_id"],
                amount=100,
                ledger=row["ledger_id"],
                code=TransferCode.PARTNER_ISSUANCE,
                effective_at=start + timedelta(days=1),
            )
        ]
    )
    assert outcome.ok, outcome
    issued = await client.post(f"{base}/statements", json={"period": label(2)})
    assert issued.status_code in (200, 201), issued.text
    side.ids["statement"] = issued.json()["id"]


async def _coalition_points(client: Client, side: Side) -> None:
    """A member with points the side issued (its contract and funding come
    from ``_statement``), an issuance, and three holds: one to show and
    capture, one to release, one captured to refund."""
    member = fresh("m")
    enrolled = await client.post(f"/programs/{side.program}/members", json={"external_id": member})
    assert enrolled.status_code == 201, enrolled.text
    side.ids["member"] = member
    issued = await _posted(
        client, "/issuances", side, {"transaction_id": fresh("t"), "member": member, "points": 300}
    )
    side.ids["issuance"] = issued["id"]
    for name in ("hold", "to_release", "captured"):
        hold = {"checkout_id": fresh("c"), "member": member, "points": 20}
        side.ids[name] = (await _posted(client, "/holds", side, hold))["id"]
    captured = await client.post(
        f"/partner/holds/{side.ids['captured']}/capture",
        json={},
        headers={**side.token, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert captured.status_code == 200, captured.text


async def _funding_purchase(client: Client, side: Side) -> None:
    """A block the side bought through Stripe, paid already (its funding the
    one ``_statement`` recorded): these setups run without Stripe, and
    asking for a paid purchase again answers it without asking Stripe."""
    assert side.pool is not None
    side.ids["purchase"] = fresh("block")
    made = await side.pool.execute(
        "INSERT INTO partner_funding_purchases (id, program_id, partner_id, purchase_id, points,"
        " amount_minor, currency, contract_version, status, payment_method_id,"
        " payment_intent_id, funding_id, completed_at)"
        " SELECT $1, program_id, partner_id, $3, 100, 150, 'ZAR', 1, 'succeeded', 'pm_card_visa',"
        " $4, id, now() FROM partner_fundings WHERE partner_id = $2 LIMIT 1",
        uuid.uuid4(),
        uuid.UUID(side.partner_id),
        side.ids["purchase"],
        f"pi_{uuid.uuid4().hex}",
    )
    assert made == "INSERT 0 1", made


def _at(path: str, body: Callable[[], Any] | None = None) -> Case:
    """A case naming the side's objects in ``path`` (``{endpoint}`` and the
    like, from ``side.ids``), with a fresh body per request."""
    return Case(request=lambda side: (path.format(**side.ids), body() if body else None))


SETUPS.extend([_webhook_endpoints, _statement, _coalition_points, _funding_purchase])
_SINCE = "2020-01-01T00:00:00Z"
CASES |= {
    ("GET", "/partner/balance"): _own("/balance"),
    ("GET", "/partner/issuances"): _own("/issuances"),
    ("POST", "/partner/issuances"): Case(
        request=lambda side: (
            "/issuances",
            {"transaction_id": fresh("t"), "member": side.ids["member"], "points": 1},
        ),
        own_only=True,
    ),
    ("GET", "/partner/issuances/{issuance_id}"): _at("/issuances/{issuance}"),
    ("POST", "/partner/holds"): Case(
        request=lambda side: (
            "/holds",
            {"checkout_id": fresh("c"), "member": side.ids["member"], "points": 1},
        ),
        own_only=True,
    ),
    ("GET", "/partner/holds"): _own("/holds"),
    ("GET", "/partner/holds/{hold_id}"): _at("/holds/{hold}"),
    ("POST", "/partner/holds/{hold_id}/capture"): _at("/holds/{hold}/capture", lambda: {}),
    ("POST", "/partner/holds/{hold_id}/release"): _at("/holds/{to_release}/release"),
    ("POST", "/partner/holds/{hold_id}/refunds"): _at(
        "/holds/{captured}/refunds", lambda: {"refund_id": fresh("r"), "points": 1}
    ),
    ("GET", "/partner/funding/purchases"): _own("/funding/purchases"),
    ("POST", "/partner/funding/purchases"): Case(
        # The caller's own paid purchase again: answered, Stripe not asked.
        request=lambda side: (
            "/funding/purchases",
            {"purchase_id": side.ids["purchase"], "points": 100},
        ),
        own_only=True,
    ),
    ("GET", "/partner/funding/purchases/{purchase_id}"): _at("/funding/purchases/{purchase}"),
    ("GET", "/partner/position"): _own("/position"),
    ("GET", "/partner/statements"): _own("/statements"),
    ("GET", "/partner/statements/{statement_id}"): _at("/statements/{statement}"),
    ("GET", "/partner/statements/{statement_id}/lines/{line}/transfers"): _at(
        "/statements/{statement}/lines/1/transfers"
    ),
    ("GET", "/partner/webhook-endpoints"): _own("/webhook-endpoints"),
    ("POST", "/partner/webhook-endpoints"): Case(
        request=lambda side: ("/webhook-endpoints", {"url": "http://127.0.0.1:9/new"}),
        own_only=True,
    ),
    ("GET", "/partner/webhook-endpoints/{endpoint_id}"): _at("/webhook-endpoints/{endpoint}"),
    ("PATCH", "/partner/webhook-endpoints/{endpoint_id}"): _at(
        "/webhook-endpoints/{endpoint}", lambda: {"description": fresh("changed")}
    ),
    ("DELETE", "/partner/webhook-endpoints/{endpoint_id}"): _at("/webhook-endpoints/{doomed}"),
    ("GET", "/partner/webhook-endpoints/{endpoint_id}/deliveries"): _at(
        "/webhook-endpoints/{endpoint}/deliveries"
    ),
    ("POST", "/partner/webhook-endpoints/{endpoint_id}/replays"): _at(
        "/webhook-endpoints/{endpoint}/replays", lambda: {"since": _SINCE}
    ),
    ("POST", "/partner/webhook-endpoints/{endpoint_id}/secret-rotations"): _at(
        "/webhook-endpoints/{endpoint}/secret-rotations", lambda: {"overlap_seconds": 0}
    ),
    ("POST", "/partner/webhook-endpoints/{endpoint_id}/test-events"): _at(
        "/webhook-endpoints/{endpoint}/test-events"
    ),
    ("GET", "/partner/webhook-deliveries/{message_id}"): _at("/webhook-deliveries/{delivery}"),
    ("POST", "/partner/webhook-deliveries/{message_id}/replays"): _at(
        "/webhook-deliveries/{delivery}/replays"
    ),
}


@pytest.fixture(scope="module")
def app(database_url: str) -> Litestar:
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        signing_secret=SIGNING_SECRET,
        sweep_interval=0,
        partner_rate_limit=1_000_000,
        token_rate_limit=100_000,
        webhook_private_targets=True,
    )
    return create_app(settings, database_url=database_url)


@pytest.fixture(scope="module")
async def client(app: Litestar) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=app) as client:
        client.headers.update(AUTH)
        yield client


async def _program(client: Client) -> str:
    slug = fresh("coalition")
    opened = await client.post(
        "/programs",
        json={"slug": slug, "name": "Coalition", "currency": "ZAR", "point_value_minor": "1"},
    )
    assert opened.status_code == 201, opened.text
    return slug


async def _side(client: Client, pool: asyncpg.Pool, ledger: Ledger, program: str) -> Side:
    slug = fresh("firm")
    made = await client.post(
        f"/programs/{program}/partners",
        json={
            "slug": slug,
            "name": "Fuel & Go",
            "legal_name": "Fuel & Go Ltd",
            "country": "ZA",
            "status": "active",
        },
    )
    assert made.status_code == 201, made.text
    partner_id = await pool.fetchval(
        "SELECT p.id FROM partners p JOIN programs g ON g.id = p.program_id"
        " WHERE g.slug = $1 AND p.slug = $2",
        program,
        slug,
    )
    token = await api_partner_bearer(client, program, slug)
    side = Side(
        program=program,
        partner=slug,
        partner_id=str(partner_id),
        token=token,
        pool=pool,
        ledger=ledger,
    )
    for setup in SETUPS:
        await setup(client, side)
    return side


@pytest.fixture(scope="module")
async def world(client: Client, pool: asyncpg.Pool, ledger: Ledger) -> World:
    program, elsewhere = await _program(client), await _program(client)
    return World(
        a=await _side(client, pool, ledger, program),
        b=await _side(client, pool, ledger, program),
        c=await _side(client, pool, ledger, elsewhere),
    )


def partner_routes(app: Litestar) -> set[tuple[str, str]]:
    return {route for route in app_routes(app) if route[1].startswith("/partner/")}


def test_every_partner_route_has_an_isolation_case(app: Litestar) -> None:
    routes = partner_routes(app)
    missing = sorted(routes - set(CASES))
    assert not missing, f"partner routes without an isolation case: {missing}"
    stale = sorted(set(CASES) - routes)
    assert not stale, f"cases of routes the app no longer has: {stale}"


async def snapshot(pool: asyncpg.Pool, side: Side) -> dict[str, Any]:
    """All that is the side's: its rows in every table with a partner_id
    (its firm's), and the length of the audit trail."""
    tables = await pool.fetch(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND column_name = 'partner_id' ORDER BY table_name"
    )
    found: dict[str, Any] = {}
    for (table,) in tables:
        found[table] = await pool.fetch(
            f"SELECT to_jsonb(t)::text AS row FROM {table} t WHERE partner_id = $1 ORDER BY 1",
            uuid.UUID(side.partner_id),
        )
    found["partners"] = await pool.fetch(
        "SELECT to_jsonb(t)::text FROM partners t WHERE id = $1", uuid.UUID(side.partner_id)
    )
    found["all audit lines"] = await pool.fetchval("SELECT count(*) FROM audit_events")
    return found


async def send(client: Client, method: str, path: str, body: Any, token: dict[str, str]) -> Any:
    headers = {**token, "Idempotency-Key": str(uuid.uuid4())}
    return await client.request(method, f"/partner{path}", json=body, headers=headers)


def _nowhere(real: str) -> str:
    """An id of the same form as ``real`` that exists nowhere."""
    prefix, _, _ = real.rpartition("_")
    return f"{prefix}_{uuid.uuid4().hex}" if prefix else str(uuid.uuid4())


def assert_not_found(response: Any) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.json()["type"] == PROBLEMS + "not-found"


@pytest.mark.parametrize("route", sorted(CASES), ids=" ".join)
async def test_another_partners_token_finds_nothing_of_a(
    client: Client, pool: asyncpg.Pool, world: World, route: tuple[str, str]
) -> None:
    method, _ = route
    case = CASES[route]
    for other in (world.b, world.c):
        before = await snapshot(pool, world.a)
        if case.own_only:
            path, body = case.request(other)
            answer = await send(client, method, path, body, other.token)
            assert answer.status_code < 300, answer.text
            leaked = [v for v in [world.a.partner_id, *world.a.ids.values()] if v in answer.text]
            assert not leaked, f"{route} answered A's ids to another partner: {leaked}"
        else:
            path, body = case.request(world.a)
            across = await send(client, method, path, body, other.token)
            assert_not_found(across)
            # Exactly what ids that exist nowhere answer.
            nowhere = Side(
                program=world.a.program,
                partner=world.a.partner,
                partner_id=str(uuid.uuid4()),
                token=other.token,
                ids={name: _nowhere(value) for name, value in world.a.ids.items()},
            )
            path_nowhere, body_nowhere = case.request(nowhere)
            missing = await send(client, method, path_nowhere, body_nowhere, other.token)
            assert missing.status_code == across.status_code, missing.text
        after = await snapshot(pool, world.a)
        if case.own_only:
            # A write of the caller's own adds its own audit line; A's rows
            # are what must stay.
            before.pop("all audit lines"), after.pop("all audit lines")
        assert after == before, f"{route} changed A's data"
    if not case.own_only:
        path, body = case.request(world.a)
        own = await send(client, method, path, body, world.a.token)
        assert own.status_code < 300, own.text


async def test_a_partner_token_opens_no_operator_route(
    client: Client, pool: asyncpg.Pool, world: World
) -> None:
    before = await snapshot(pool, world.a)
    a = world.a
    for method, path in (
        ("GET", f"/programs/{a.program}/partners/{a.partner}"),
        ("GET", f"/programs/{a.program}/partners/{a.partner}/clients"),
        ("POST", f"/programs/{a.program}/partners/{a.partner}/clients"),
        ("POST", "/partner-signing-keys/rotations"),
    ):
        refused = await client.request(
            method, path, json={"name": "x", "scopes": ["points:issue"]}, headers=a.token
        )
        assert refused.status_code == 401, (method, path, refused.text)
    assert await snapshot(pool, world.a) == before
