"""The exchange between programs over HTTP: two operators agree, a member
quotes and converts, replays answer the first conversion, and a conversion
into a program without an agreement, or with bad input, is a 4xx problem
that writes nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, AUTH, assert_problem, count_writes

SECRET = "an-exchange-secret-of-32-chars!!"
Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        member_jwt_secret=SECRET,
        member_rate_limit=100_000,
        sweep_interval=0,
    )
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        client.headers.update(AUTH)
        yield client


def as_member(program: str, member: str, key: str | None = None) -> dict[str, str]:
    claims = {
        "sub": member,
        "program": program,
        "aud": "coalition-members",
        "exp": int(time.time()) + 600,
    }
    headers = {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}
    return headers | ({"Idempotency-Key": key} if key else {})


async def ok(response: Any, *statuses: int) -> dict[str, Any]:
    assert response.status_code in (statuses or (200, 201)), response.text
    body: dict[str, Any] = response.json()
    return body


async def open_program(client: Client, name: str, *members: str) -> str:
    slug = f"{name}-{uuid.uuid4().hex[:8]}"
    spec = {"slug": slug, "name": name, "currency": "ZAR", "point_value_minor": "1"}
    await ok(await client.post("/programs", json=spec))
    for external_id in members:
        await ok(await client.post(f"/programs/{slug}/members", json={"external_id": external_id}))
    return slug


async def fund(client: Client, slug: str, member: str, points: int) -> None:
    await ok(
        await client.post(
            f"/programs/{slug}/members/{member}/adjustments",
            json={"adjustment_id": uuid.uuid4().hex, "points": points, "reason": "to convert"},
        )
    )


@pytest.fixture
async def agreed(client: Client) -> tuple[str, str, str]:
    """Programs A and B with an active agreement (A's points into B's at 2
    for 1, up to 80 at once and 100 a day), and the agreement's id; ``m``
    and ``poor`` in both, ``m`` with 1000 points in A."""
    a = await open_program(client, "a", "m", "only-a", "poor")
    b = await open_program(client, "b", "m", "poor")
    await fund(client, a, "m", 1000)
    proposal = {
        "counterparty": b,
        "terms": {"outbound": {"give": 1, "receive": 2, "daily_cap": 100, "max_points": 80}},
    }
    proposed = await client.post(f"/programs/{a}/exchange-agreements", json=proposal)
    again = await client.post(f"/programs/{a}/exchange-agreements", json=proposal)
    assert (proposed.status_code, again.status_code) == (201, 200), proposed.text
    assert again.json() == proposed.json()
    agreement = proposed.json()["id"]
    own = await client.post(f"/programs/{a}/exchange-agreements/{agreement}/versions/1/accept")
    assert_problem(own, 409, "exchange-proposal-own")
    accepted = await ok(
        await client.post(f"/programs/{b}/exchange-agreements/{agreement}/versions/1/accept")
    )
    assert accepted["status"] == "accepted"
    return a, b, agreement


async def test_a_member_converts_points_and_both_programs_see_it(
    client: Client, agreed: tuple[str, str, str]
) -> None:
    a, b, agreement = agreed

    quote = await ok(
        await client.get(
            "/me/exchanges/quote", params={"to": b, "points": 30}, headers=as_member(a, "m")
        )
    )
    converted = await client.post(
        "/me/exchanges", json={"to_program": b, "points": 30}, headers=as_member(a, "m", "k1")
    )
    replay = await client.post(
        "/me/exchanges", json={"to_program": b, "points": 30}, headers=as_member(a, "m", "k1")
    )
    reused = await client.post(
        "/me/exchanges", json={"to_program": b, "points": 31}, headers=as_member(a, "m", "k1")
    )

    assert (quote["received_points"], quote["rate_version"], quote["converted_today"]) == (60, 1, 0)
    assert converted.status_code == 201, converted.text
    assert (converted.json()["received_points"], converted.json()["replayed"]) == (60, False)
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    assert replay.json()["id"] == converted.json()["id"]
    assert_problem(reused, 409, "idempotency-key-reused")
    balance_a = await ok(await client.get("/me/balance", headers=as_member(a, "m")))
    balance_b = await ok(await client.get("/me/balance", headers=as_member(b, "m")))
    assert (balance_a["available"], balance_b["available"]) == (970, 60)
    moved_a = (await ok(await client.get("/me/transactions", headers=as_member(a, "m"))))[
        "movements"
    ][0]
    moved_b = (await ok(await client.get("/me/transactions", headers=as_member(b, "m"))))[
        "movements"
    ][0]
    assert (moved_a["kind"], moved_a["points"], moved_b["kind"], moved_b["points"]) == (
        "exchange",
        -30,
        "exchange",
        60,
    )
    history = await ok(await client.get("/me/exchanges", headers=as_member(a, "m")))
    assert [e["id"] for e in history["items"]] == [converted.json()["id"]]
    position = await ok(await client.get(f"/programs/{a}/exchange-agreements/{agreement}/position"))
    assert (position["program"]["owed_points"], position["counterparty"]["owed_points"]) == (
        30,
        -60,
    )
    listed = await ok(await client.get(f"/programs/{b}/exchange-agreements"))
    [seen] = [item for item in listed["items"] if item["id"] == agreement]
    assert (seen["counterparty"], seen["status"], seen["version_in_force"]) == (a, "active", 1)
    assert seen["versions"][0]["terms"]["inbound"]["receive"] == 2
    # Over the daily cap (100): 30 converted, 80 more would be 110.
    capped = await client.post(
        "/me/exchanges", json={"to_program": b, "points": 80}, headers=as_member(a, "m", "k2")
    )
    assert_problem(capped, 422, "exchange-daily-cap-exceeded")


async def test_refused_and_bad_requests_write_nothing(
    client: Client, pool: asyncpg.Pool, agreed: tuple[str, str, str]
) -> None:
    a, b, _ = agreed
    c = await open_program(client, "c", "m")
    ledgers = await pool.fetch(
        "SELECT ledger_id FROM programs WHERE slug = ANY($1::text[]) ORDER BY slug", [a, b, c]
    )

    async def writes() -> tuple[Any, ...]:
        rows = await pool.fetchval("SELECT count(*) FROM exchanges")
        return (rows, *[await count_writes(pool, row["ledger_id"]) for row in ledgers])

    before = await writes()

    def post(body: Any, member: str = "m", key: str | None = "key") -> Any:
        return client.post("/me/exchanges", json=body, headers=as_member(a, member, key))

    assert_problem(await post({"to_program": c, "points": 10}), 404, "not-found")
    assert_problem(await post({"to_program": b, "points": 81}), 422, "exchange-out-of-bounds")
    assert_problem(
        await post({"to_program": b, "points": 10}, member="poor"), 422, "insufficient-points"
    )
    assert_problem(
        await post({"to_program": b, "points": 10}, member="only-a"),
        409,
        "exchange-member-not-enrolled",
    )
    for bad in (
        {"to_program": b, "points": 0},
        {"to_program": b, "points": "10"},
        {"to_program": "Not A Slug", "points": 10},
        {"to_program": b},
        {"to_program": b, "points": 10, "extra": 1},
    ):
        response = await post(bad)
        assert response.status_code == 400, (bad, response.text)
    assert (await post({"to_program": b, "points": 10}, key=None)).status_code == 400
    # B's members cannot convert into A: that direction is not open.
    into_a = await client.post(
        "/me/exchanges", json={"to_program": a, "points": 10}, headers=as_member(b, "m", "k")
    )
    assert_problem(into_a, 409, "exchange-closed")
    bad_terms = await client.post(
        f"/programs/{c}/exchange-agreements",
        json={"counterparty": a, "terms": {"outbound": {"give": 3, "receive": 1, "daily_cap": 5}}},
    )
    assert_problem(bad_terms, 422, "invalid-exchange-terms")
    assert await writes() == before
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM exchange_agreements x JOIN programs p"
            " ON p.id IN (x.program_a_id, x.program_b_id) WHERE p.slug = $1",
            c,
        )
        == 0
    )
