"""A burst of invalid requests across every endpoint family, with operator
and member tokens: each is a 4xx problem, none a 5xx, and no table changed."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, AUTH, PROBLEM_JSON, Book, open_program, purchase

SECRET = "a-burst-test-secret-of-32-chars!!"
AUDIENCE = "coalition-members"

NUL = "a\x00b"
BIG = 2**63  # one past BIGINT
HUGE = 10**30
INT_OVER = 2**31  # one past INTEGER
TOO_EARLY = "0001-01-01T00:00:00+14:00"  # year 0 once in UTC
TOO_LATE = "9999-12-31T23:59:59-14:00"  # year 10000 once in UTC
NAIVE = "2025-01-01T00:00:00"


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


#: A body nested 5,000 deep, as raw JSON (too deep for any encoder to build).
DEEP_BODY = b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}"


@dataclass
class Bad:
    method: str
    path: str
    body: Any = None
    raw: bytes | None = None
    member: str | None = None
    #: Whether a member's request carries an ``Idempotency-Key``.
    idempotency_key: bool = True


@dataclass
class World:
    slug: str
    book: Book
    hold_id: str
    #: An API key's name, taken.
    key_name: str = ""
    now: str = field(default_factory=lambda: datetime.now(UTC).isoformat())


def member_token(program: str, member: str) -> str:
    claims = {"sub": member, "program": program, "aud": AUDIENCE, "exp": int(time.time()) + 600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
async def burst_client(database_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        member_jwt_secret=SECRET,
        member_rate_limit=100_000,
        sweep_interval=0,
    )
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        yield client


@pytest.fixture
async def world(burst_client: AsyncTestClient[Litestar]) -> World:
    """Demo-like records: a ledger with accounts, a program with rules, two
    members with points, a catalog reward and an open hold."""
    client = burst_client
    # Far from the ids other tests count up from.
    book = Book(2_000_000_000 + uuid.uuid4().int % 100_000_000)
    created = await client.post(
        "/ledger/ledgers", json={"id": book.ledger, "name": f"burst-{book.ledger}"}, headers=AUTH
    )
    assert created.status_code == 201, created.text
    accounts = await client.post(
        "/ledger/accounts", json={"accounts": book.accounts()}, headers=AUTH
    )
    assert accounts.status_code == 200, accounts.text
    client.headers.update(AUTH)
    try:
        slug = await open_program(client)
        for member in ("ann", "ben"):
            enrolled = await client.post(f"/programs/{slug}/members", json={"external_id": member})
            assert enrolled.status_code == 201, enrolled.text
        bought = await client.post(
            f"/programs/{slug}/purchases", json=purchase("B-1", 50_000, "ann")
        )
        assert bought.status_code == 201, bought.text
        funded = await client.post(
            f"/programs/{slug}/members/ann/adjustments",
            json={"adjustment_id": "fund", "points": 1000, "reason": "funding"},
        )
        assert funded.status_code == 201, funded.text
        reward = await client.post(
            f"/programs/{slug}/rewards", json={"sku": "MUG", "name": "Mug", "points_price": 10}
        )
        assert reward.status_code == 201, reward.text
        key_name = f"burst-{uuid.uuid4().hex[:8]}"
        key = await client.post("/api-keys", json={"name": key_name, "scopes": ["ledger:read"]})
        assert key.status_code == 201, key.text
    finally:
        for name in AUTH:
            del client.headers[name]
    hold = await client.post(
        "/me/holds",
        json={"order_ref": "O-1", "amount_minor": 100},
        headers={
            "Authorization": f"Bearer {member_token(slug, 'ann')}",
            "Idempotency-Key": "hold-1",
        },
    )
    assert hold.status_code == 201, hold.text
    return World(slug=slug, book=book, hold_id=hold.json()["id"], key_name=key_name)


def ledger_requests(w: World) -> Iterator[Bad]:
    fields: dict[str, Any]
    b = w.book
    good_ledger = {"id": 7, "name": "x"}
    for ledger in (
        {"id": 7, "name": NUL},
        {"id": 7, "name": "n" * 101},
        {"id": 0, "name": "zero"},
        {"id": INT_OVER, "name": "big"},
        {"id": "7", "name": "string id"},
        {"id": 7, "name": "x", "asset_scale": 19},
        {"id": 7, "name": "x", "asset_scale": "2"},
        good_ledger | {"colour": "red"},
    ):
        yield Bad("POST", "/ledger/ledgers", ledger)

    def account(**fields: Any) -> dict[str, Any]:
        return {"accounts": [{"id": str(uuid.uuid4()), "ledger": b.ledger, "code": 10, **fields}]}

    for fields in (
        {"flags": 4},
        {"flags": -1},
        {"flags": 1 << 16},
        {"flags": "1"},
        {"code": INT_OVER},
        {"code": 0},
        {"code": "10"},
        {"ledger": 2**40},
        {"metadata": {"note": NUL}},
        {"metadata": {NUL: 1}},
        {"metadata": {"list": ["ok", NUL]}},
        {"metadata": deep(20)},
        {"metadata": {"blob": "x" * 20_000}},
        {"metadata": "not an object"},
        {"colour": "red"},
        {"id": "not-a-uuid"},
    ):
        yield Bad("POST", "/ledger/accounts", account(**fields))
    yield Bad("POST", "/ledger/accounts", {"accounts": account()["accounts"], "extra": 1})
    yield Bad("POST", "/ledger/accounts", raw=b'{"accounts": [{"metadata": ' + DEEP_BODY + b"}]}")

    def transfer(**fields: Any) -> dict[str, Any]:
        return {"transfers": [b.transfer(b.issuance, b.alice, 5) | fields]}

    for fields in (
        {"amount": "10"},
        {"amount": BIG},
        {"amount": HUGE},
        {"amount": -1},
        {"amount": 1.5},
        {"flags": 16},
        {"flags": 1 << 16},
        {"flags": -1},
        {"flags": "2"},
        {"timeout": INT_OVER},
        {"timeout": -1},
        {"ledger": 2**40},
        {"code": INT_OVER},
        {"code": "1"},
        {"metadata": {"order": NUL}},
        {"metadata": {NUL: "x"}},
        {"metadata": deep(17)},
        {"metadata": {"blob": "y" * 20_000}},
        {"effective_at": TOO_EARLY},
        {"effective_at": TOO_LATE},
        {"effective_at": NAIVE},
        {"effective_at": "yesterday"},
        {"effective_at": "1899-12-31T23:59:59Z"},
        {"pending_id": "not-a-uuid"},
        {"colour": "red"},
    ):
        yield Bad("POST", "/ledger/transfers", transfer(**fields))
    yield Bad("POST", "/ledger/transfers", raw=DEEP_BODY)
    yield Bad("POST", "/ledger/transfers", raw=b'{"transfers": [{"metadata": ' + DEEP_BODY + b"}]}")
    yield Bad("POST", "/ledger/transfers", transfer() | {"dry_run": True})

    for ledger_id in (2**40, 0, -1, INT_OVER):
        yield Bad("GET", f"/ledger/ledgers/{ledger_id}/totals")
    for as_of in (TOO_EARLY, TOO_LATE, NAIVE, "%00", "1899-01-01T00:00:00Z"):
        yield Bad("GET", f"/ledger/accounts/{b.alice}?as_of={as_of.replace('+', '%2B')}")
    for query in (
        f"cursor={2**64}",
        f"cursor={2**63}",
        "cursor=%00",
        "cursor=" + "9" * 40,
        f"limit={2**40}",
        "limit=ten",
    ):
        yield Bad("GET", f"/ledger/accounts/{b.alice}/transfers?{query}")
    yield Bad("GET", "/ledger/transfers/not-a-uuid")


def program_requests(w: World) -> Iterator[Bad]:
    fields: dict[str, Any]
    body: dict[str, Any]
    s = f"/programs/{w.slug}"
    spec = {"slug": "burst", "name": "Burst", "currency": "ZAR", "point_value_minor": "1"}
    for fields in (
        {"slug": "a\x00b"},
        {"name": NUL},
        {"name": "n" * 201},
        {"currency": "Z\x00R"},
        {"point_value_minor": "10000000000000"},
        {"point_value_minor": "NaN"},
        {"minor_per_major": "100"},
        {"return_window_days": 2**40},
        {"expiry_months": "24"},
        # Settable since programs got their calendar (issue 9): bad values
        # and an unknown field instead.
        {"tier_grace_days": -1},
        {"time_zone": "Mars/Olympus"},
        {"time_zone": "../zoneinfo/UTC"},
        {"tier_grace_period": 30},
    ):
        yield Bad("POST", "/programs", spec | fields)
    yield Bad("POST", "/programs", raw=DEEP_BODY)
    for slug in ("a%00b", "UPPER", "x" * 80):
        yield Bad("GET", f"/programs/{slug}")

    for draft in (
        {"rules": {"points_per_unit": "1", "category_multipliers": {NUL: "2"}}},
        {"rules": {"points_per_unit": NUL}},
        {"rules": deep(20)},
        {"rules": {"points_per_unit": "1"}, "note": NUL},
        {"rules": {"points_per_unit": "1"}, "note": "n" * 501},
        {"rules": {"points_per_unit": "1"}, "author": "me"},
        {"rules": {"points_per_unit": "1", "min_spend_minor": BIG}},
        {"rules": {"points_per_unit": "1", "excluded_skus": [NUL]}},
        {
            "rules": {
                "points_per_unit": "1",
                "bonuses": [
                    {
                        "name": "early",
                        "multiplier": "2",
                        "starts_at": TOO_EARLY,
                        "ends_at": "2025-01-01T00:00:00Z",
                    }
                ],
            }
        },
        {"rules": {"points_per_unit": "1", "events": {"gym": {"points": BIG}}}},
    ):
        yield Bad("POST", f"{s}/rules", draft)

    for path, body in (
        (f"{s}/rules/{2**40}/publish", {"effective_from": w.now}),
        (f"{s}/rules/0/publish", {"effective_from": w.now}),
        (f"{s}/rules/1/publish", {"effective_from": TOO_EARLY}),
        (f"{s}/rules/1/publish", {"effective_from": TOO_LATE}),
        (f"{s}/rules/1/publish", {"effective_from": NAIVE}),
        (f"{s}/rules/1/publish", {"effective_from": w.now, "force": True}),
    ):
        yield Bad("POST", path, body)

    for enrolment in (
        {"external_id": NUL},
        {"external_id": "e" * 201},
        {"external_id": "new-1", "email": "e" * 321},
        {"external_id": "new-1", "phone": "1" * 33},
        {"external_id": "new-1", "email": NUL},
        {"external_id": "new-1", "consents": {"email": "yes"}},
        {"external_id": "new-1", "consents": {NUL: True}},
        {"external_id": "new-1", "nickname": "x"},
        {"external_id": 12345},
    ):
        yield Bad("POST", f"{s}/members", enrolment)
    for external_id in ("a%00b", "e" * 201):
        yield Bad("GET", f"{s}/members/{external_id}")
        yield Bad("GET", f"{s}/members/{external_id}/export")
        yield Bad("POST", f"{s}/members/{external_id}/erase")

    for fields in (
        {"member": NUL},
        {"order_id": NUL},
        {"order_id": "o" * 201},
        {"amount_minor": BIG},
        {"amount_minor": HUGE},
        {"amount_minor": "100"},
        {"amount_minor": -1},
        {"currency": NUL},
        {"occurred_at": TOO_EARLY},
        {"occurred_at": TOO_LATE},
        {"occurred_at": NAIVE},
        {"items": [{"sku": NUL, "amount_minor": 1}]},
        {"items": [{"sku": "S", "category": NUL, "amount_minor": 1}]},
        {"items": [{"sku": "S", "amount_minor": BIG}]},
        {"items": [{"sku": "S", "amount_minor": 1, "colour": "red"}]},
        {"items": [{"sku": "S", "amount_minor": 1}] * 1001},
        {"channel": "web"},
    ):
        yield Bad("POST", f"{s}/purchases", purchase(f"P-{uuid.uuid4()}", 100, "ann") | fields)
    yield Bad("POST", f"{s}/purchases", raw=DEEP_BODY)

    for order, body in (
        ("a%00b", {"return_id": "R-1", "amount_minor": 1}),
        ("B-1", {"return_id": NUL, "amount_minor": 1}),
        ("B-1", {"return_id": "R-1", "amount_minor": BIG}),
        ("B-1", {"return_id": "R-1", "amount_minor": 0}),
        ("B-1", {"return_id": "R-1", "amount_minor": "5"}),
        ("B-1", {"return_id": "R-1", "amount_minor": 1, "reason": "x"}),
    ):
        yield Bad("POST", f"{s}/purchases/{order}/returns", body)

    reward = {"sku": "CUP", "name": "Cup", "points_price": 10}
    for fields in (
        {"sku": NUL},
        {"name": NUL},
        {"points_price": BIG},
        {"points_price": 0},
        {"points_price": "10"},
        {"stock": INT_OVER},
        {"stock": 2**40},
        {"stock": -1},
        {"valid_until": TOO_EARLY},
        {"valid_from": NAIVE},
        {"fulfilling_partner": NUL},
        {"colour": "red"},
    ):
        yield Bad("POST", f"{s}/rewards", reward | fields)

    for body in ({"points": BIG}, {"points": "5"}, {"points": 0}, {"points": 1, "note": "x"}):
        yield Bad("POST", f"{s}/holds/{w.hold_id}/capture", body)
    yield Bad("POST", f"{s}/holds/not-a-uuid/capture", {})
    yield Bad("POST", f"{s}/holds/not-a-uuid/release")

    tier = {"code": "gold", "name": "Gold", "rank": 1, "threshold": 100}
    for fields in (
        {"code": "go\x00ld"},
        {"code": "UP"},
        {"name": NUL},
        {"threshold": BIG},
        {"threshold": "100"},
        {"rank": 101},
        {"perks": [NUL]},
        {"perks": ["p"] * 51},
        {"colour": "gold"},
    ):
        yield Bad("POST", f"{s}/tiers", tier | fields)

    threshold = {"code": "big-spender", "amount_minor": 1000, "bonus_points": 50}
    for fields in (
        {"amount_minor": BIG},
        {"bonus_points": BIG},
        {"bonus_points": "5"},
        {"code": NUL},
        {"window": "year"},
    ):
        yield Bad("POST", f"{s}/thresholds", threshold | fields)

    event = {"member": "ann", "event_id": "E-1", "event": "gym", "occurred_at": w.now}
    for fields in (
        {"member": NUL},
        {"event_id": NUL},
        {"event": NUL},
        {"occurred_at": TOO_EARLY},
        {"occurred_at": NAIVE},
        {"points": 5},
    ):
        yield Bad("POST", f"{s}/events", event | fields)

    adjustment = {"adjustment_id": "A-1", "points": 5, "reason": "goodwill"}
    for fields in (
        {"adjustment_id": NUL},
        {"points": "5"},
        {"points": BIG},
        {"points": 0},
        {"reason": NUL},
        {"reason": "r" * 501},
        {"approved_by": "me"},
    ):
        yield Bad("POST", f"{s}/members/ann/adjustments", adjustment | fields)
    yield Bad("POST", f"{s}/members/a%00b/adjustments", adjustment)

    for query in (
        f"rules/{2**40}/simulate",
        f"rules/1/simulate?days={2**40}",
        "rules/1/simulate?days=x",
    ):
        yield Bad("POST", f"{s}/{query}")


def member_requests(w: World) -> Iterator[Bad]:
    body: dict[str, Any]
    for query in (f"cursor={2**64}", f"cursor={2**63}", "cursor=%00", f"limit={2**40}"):
        yield Bad("GET", f"/me/transactions?{query}", member="ann")
    for body in (
        {"sku": NUL},
        {"sku": "MUG", "quantity": "1"},
        {"sku": "MUG", "quantity": 2**40},
        {"sku": "MUG", "gift_wrap": True},
    ):
        yield Bad("POST", "/me/redemptions", body, member="ann")
    yield Bad("POST", "/me/redemptions", {"sku": "MUG"}, member="ann", idempotency_key=False)
    for body in (
        {"to": NUL, "points": 1},
        {"to": "ben", "points": BIG},
        {"to": "ben", "points": "5"},
        {"to": "ben", "points": 1, "message": "hi"},
    ):
        yield Bad("POST", "/me/gifts", body, member="ann")
    for body in (
        {"order_ref": NUL, "amount_minor": 100},
        {"order_ref": "O-2", "amount_minor": HUGE},
        {"order_ref": "O-2", "amount_minor": BIG},
        {"order_ref": "O-2", "amount_minor": "100"},
        {"order_ref": "O-2", "amount_minor": 100, "timeout_seconds": 2**40},
        {"order_ref": "O-2", "amount_minor": 100, "tip": 1},
    ):
        yield Bad("POST", "/me/holds", body, member="ann")
    yield Bad("POST", "/me/holds", raw=DEEP_BODY, member="ann")
    yield Bad("POST", "/me/holds/not-a-uuid/release", member="ann")
    for body in ({"points": "5"}, {"points": BIG}, {"points": 5, "coupon": "x"}):
        yield Bad("POST", "/me/points-purchases", body, member="ann")


def operations_requests(w: World) -> Iterator[Bad]:
    fields: dict[str, Any]
    for name in ("settle-everything", "a%00b", "j" * 101, "Settle-Due-Earnings"):
        yield Bad("POST", f"/jobs/{name}/runs")
    key = {"name": "burst-new", "scopes": ["ledger:read"]}
    for fields in (
        # A taken name with other scopes (the very request that issued it,
        # repeated a moment later, re-issues the key instead).
        {"name": w.key_name, "scopes": ["programs:read"]},
        {"scopes": []},
        {"scopes": ["root"]},
        {"scopes": ["*"]},
        {"scopes": ["ledger:read", NUL]},
        {"scopes": ["ledger:read"] * 65},
        {"scopes": "ledger:read"},
        {"name": NUL},
        {"name": "n" * 101},
        {"name": "with space"},
        {"name": ""},
        {"name": 7},
        {"expires_at": w.now},
    ):
        yield Bad("POST", "/api-keys", key | fields)
    yield Bad("POST", "/api-keys", {"scopes": ["ledger:read"]})
    yield Bad("POST", "/api-keys", raw=DEEP_BODY)
    for name in ("no-such-key", "a%00b", "-dash", "k" * 101):
        yield Bad("DELETE", f"/api-keys/{name}")


async def table_counts(pool: asyncpg.Pool) -> dict[str, int]:
    tables = await pool.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
    )
    counts = {}
    for (name,) in tables:
        counts[name] = await pool.fetchval(f'SELECT count(*) FROM "{name}"')
    return counts


async def test_a_burst_of_invalid_requests_is_refused_and_writes_nothing(
    burst_client: AsyncTestClient[Litestar], world: World, pool: asyncpg.Pool
) -> None:
    requests = [
        *ledger_requests(world),
        *program_requests(world),
        *member_requests(world),
        *operations_requests(world),
    ]
    assert len(requests) >= 150
    before = await table_counts(pool)
    assert before["transfers"] > 0 and before["purchases"] > 0  # the fixtures wrote

    wrong = []
    for n, bad in enumerate(requests):
        if bad.member:
            headers = {"Authorization": f"Bearer {member_token(world.slug, bad.member)}"}
            if bad.idempotency_key:
                headers["Idempotency-Key"] = f"burst-{n}"
        else:
            headers = dict(AUTH)
        content = bad.raw
        if content is None and bad.body is not None:
            content = json.dumps(bad.body).encode()
        if content is not None:
            headers["Content-Type"] = "application/json"
        response = await burst_client.request(
            bad.method, bad.path, content=content, headers=headers
        )
        problem = response.headers.get("content-type", "").startswith(PROBLEM_JSON)
        if not (400 <= response.status_code < 500 and problem):
            wrong.append(
                (
                    bad.method,
                    bad.path,
                    str(bad.body)[:120],
                    response.status_code,
                    response.text[:200],
                )
            )

    assert wrong == [], "\n".join(map(str, wrong))
    assert await table_counts(pool) == before
