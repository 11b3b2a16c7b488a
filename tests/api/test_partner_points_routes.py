"""The partner API's coalition points over HTTP, with real partner tokens:
issuing (idempotent by transaction id and by Idempotency-Key, refused by
the ledger beyond the funding), holds at a checkout (capture, release,
refund) and what each refusal answers: problem+json, nothing written."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, AUTH, SIGNING_SECRET, assert_problem, open_program
from tests.api.test_partner_coalition import firm, ok, published
from tests.api.test_partner_isolation import fresh
from tests.partners.tokens import api_partner_bearer

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        signing_secret=SIGNING_SECRET,
        sweep_interval=0,
        partner_rate_limit=1_000_000,
        token_rate_limit=100_000,
    )
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        client.headers.update(AUTH)
        yield client


class Coalition:
    """A program, a prepaid firm holding ``funded`` points, a member, and
    the firm's token with every partner scope."""

    def __init__(self, program: str, partner: str, member: str, token: dict[str, str]) -> None:
        self.program, self.partner, self.member, self.token = program, partner, member, token

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {**self.token, "Idempotency-Key": key or str(uuid.uuid4())}


async def coalition(client: Client, *, funded: int = 1000) -> Coalition:
    program = await open_program(client)
    partner = await firm(client, program)
    await published(client, program, partner)
    await ok(
        await client.post(
            f"/programs/{program}/partners/{partner}/funding",
            json={"reference": fresh("block"), "points": funded, "amount_minor": funded * 2},
        )
    )
    member = fresh("m")
    await ok(await client.post(f"/programs/{program}/members", json={"external_id": member}))
    return Coalition(program, partner, member, await api_partner_bearer(client, program, partner))


async def balance_of(client: Client, side: Coalition) -> int:
    body = await ok(await client.get(f"/programs/{side.program}/members/{side.member}"))
    points: int = body["balance"]["available"]
    return points


async def issuances(pool: asyncpg.Pool, side: Coalition) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM partner_issuances i JOIN programs p ON p.id = i.program_id"
        " WHERE p.slug = $1",
        side.program,
    )
    return count


async def issue(
    client: Client, side: Coalition, body: dict[str, Any], key: str | None = None
) -> Any:
    return await client.post("/partner/issuances", json=body, headers=side.headers(key))


async def test_an_issuance_is_credited_once_however_often_it_is_sent(
    client: Client, pool: asyncpg.Pool
) -> None:
    side = await coalition(client)
    body = {"transaction_id": fresh("t"), "member": side.member, "points": 120}
    first = await issue(client, side, body, key="k-1")
    assert first.status_code == 201, first.text
    made = first.json()
    assert (made["points"], made["partner"], made["replayed"]) == (120, side.partner, False)

    # The same Idempotency-Key: the stored answer, nothing run again.
    again = await issue(client, side, body, key="k-1")
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (201, "true")
    assert again.json() == made
    # Another key, the same transaction id: the first issuance, replayed.
    replay = await issue(client, side, body)
    assert replay.status_code == 200, replay.text
    assert (replay.json()["id"], replay.json()["replayed"]) == (made["id"], True)
    # The same transaction id with other points: a conflict, nothing written.
    other = await issue(client, side, body | {"points": 121})
    assert_problem(other, 409, "idempotency-conflict")

    assert await balance_of(client, side) == 120
    assert await issuances(pool, side) == 1
    shown = await client.get(f"/partner/issuances/{made['id']}", headers=side.token)
    assert shown.status_code == 200 and shown.json()["transaction_id"] == body["transaction_id"]
    listed = await client.get("/partner/issuances", headers=side.token)
    assert [i["id"] for i in listed.json()["items"]] == [made["id"]]
    remaining = await client.get("/partner/balance", headers=side.token)
    assert remaining.status_code == 200, remaining.text


async def test_beyond_its_prepaid_points_the_ledger_refuses_and_nothing_is_written(
    client: Client, pool: asyncpg.Pool
) -> None:
    side = await coalition(client, funded=100)
    ok_body = {"transaction_id": fresh("t"), "member": side.member, "points": 80}
    assert (await issue(client, side, ok_body)).status_code == 201
    refused = await issue(
        client, side, {"transaction_id": fresh("t"), "member": side.member, "points": 21}
    )
    assert_problem(refused, 409, "partner-funding-exhausted")
    assert await balance_of(client, side) == 80
    assert await issuances(pool, side) == 1
    # What is left may still be issued.
    rest = {"transaction_id": fresh("t"), "member": side.member, "points": 20}
    assert (await issue(client, side, rest)).status_code == 201
    assert await balance_of(client, side) == 100


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"points": 0}, 400),
        ({"points": -5}, 400),
        ({"points": "ten"}, 400),
        ({"points": None, "purchase_amount_minor": None}, 400),
        ({"identifier": "card-1"}, 400),
        ({"surprise": 1}, 400),
        ({"member": "nobody-here"}, 404),
    ],
    ids=["zero", "negative", "text", "no-amount", "member-and-identifier", "unknown", "nobody"],
)
async def test_a_bad_issuance_is_a_problem_and_writes_nothing(
    client: Client, pool: asyncpg.Pool, fields: dict[str, Any], status: int
) -> None:
    side = await coalition(client)
    body = {"transaction_id": fresh("t"), "member": side.member, "points": 10} | fields
    answer = await issue(client, side, {k: v for k, v in body.items() if v is not None})
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert await issuances(pool, side) == 0
    assert await balance_of(client, side) == 0


async def test_a_token_without_the_scope_is_403_and_writes_nothing(
    client: Client, pool: asyncpg.Pool
) -> None:
    side = await coalition(client)
    reader = await api_partner_bearer(
        client, side.program, side.partner, scopes=["statements:read"]
    )
    body = {"transaction_id": fresh("t"), "member": side.member, "points": 10}
    refused = await client.post(
        "/partner/issuances", json=body, headers={**reader, "Idempotency-Key": "k"}
    )
    assert refused.status_code == 403, refused.text
    hold = {"checkout_id": fresh("c"), "member": side.member, "points": 1}
    held = await client.post(
        "/partner/holds", json=hold, headers={**reader, "Idempotency-Key": "h"}
    )
    assert held.status_code == 403, held.text
    forged = await client.post(
        "/partner/issuances",
        json=body,
        headers={"Authorization": "Bearer not.a.token", "Idempotency-Key": "k"},
    )
    assert forged.status_code == 401, forged.text
    assert await issuances(pool, side) == 0


async def test_a_checkout_holds_captures_part_and_refunds(client: Client) -> None:
    side = await coalition(client)
    body = {"transaction_id": fresh("t"), "member": side.member, "points": 200}
    assert (await issue(client, side, body)).status_code == 201

    hold_body = {"checkout_id": fresh("c"), "member": side.member, "points": 150}
    held = await client.post("/partner/holds", json=hold_body, headers=side.headers())
    assert held.status_code == 201, held.text
    hold = held.json()
    assert (hold["status"], hold["points"]) == ("held", 150)
    assert await balance_of(client, side) == 50
    again = await client.post("/partner/holds", json=hold_body, headers=side.headers())
    assert (again.status_code, again.json()["id"]) == (200, hold["id"])

    too_much = await client.post(
        "/partner/holds",
        json={"checkout_id": fresh("c"), "member": side.member, "points": 51},
        headers=side.headers(),
    )
    assert_problem(too_much, 422, "insufficient-points")

    base = f"/partner/holds/{hold['id']}"
    over = await client.post(f"{base}/capture", json={"points": 151}, headers=side.headers())
    assert_problem(over, 422, "capture-exceeds-hold")
    captured = await client.post(f"{base}/capture", json={"points": 100}, headers=side.headers())
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "captured"
    # The 50 not taken went back.
    assert await balance_of(client, side) == 100
    closed = await client.post(f"{base}/release", headers=side.headers())
    assert_problem(closed, 409, "hold-closed")

    refund = {"refund_id": fresh("r"), "points": 40}
    refunded = await client.post(f"{base}/refunds", json=refund, headers=side.headers())
    assert refunded.status_code == 201, refunded.text
    assert await balance_of(client, side) == 140
    beyond = await client.post(
        f"{base}/refunds", json={"refund_id": fresh("r"), "points": 61}, headers=side.headers()
    )
    assert_problem(beyond, 422, "refund-exceeds-capture")
    assert await balance_of(client, side) == 140


async def test_a_released_hold_gives_every_point_back(client: Client) -> None:
    side = await coalition(client)
    body = {"transaction_id": fresh("t"), "member": side.member, "points": 30}
    assert (await issue(client, side, body)).status_code == 201
    hold_body = {"checkout_id": fresh("c"), "member": side.member, "points": 30}
    hold = (await client.post("/partner/holds", json=hold_body, headers=side.headers())).json()
    assert await balance_of(client, side) == 0
    released = await client.post(f"/partner/holds/{hold['id']}/release", headers=side.headers())
    assert released.status_code == 200, released.text
    assert released.json()["status"] == "released"
    assert await balance_of(client, side) == 30
    shown = await client.get(f"/partner/holds/{hold['id']}", headers=side.token)
    assert shown.json()["status"] == "released"


async def test_holds_are_listed_newest_first_a_page_at_a_time(client: Client) -> None:
    side = await coalition(client)
    body = {"transaction_id": fresh("t"), "member": side.member, "points": 30}
    assert (await issue(client, side, body)).status_code == 201
    made = []
    for _ in range(3):
        hold = {"checkout_id": fresh("c"), "member": side.member, "points": 5}
        made.append((await client.post("/partner/holds", json=hold, headers=side.headers())).json())
    first = await client.get("/partner/holds", params={"limit": 2}, headers=side.token)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [h["id"] for h in page["items"]] == [made[2]["id"], made[1]["id"]]
    rest = await client.get(
        "/partner/holds", params={"limit": 2, "cursor": page["next_cursor"]}, headers=side.token
    )
    assert [h["id"] for h in rest.json()["items"]] == [made[0]["id"]]
    assert rest.json()["next_cursor"] is None
    other = await coalition(client)
    assert (await client.get("/partner/holds", headers=other.token)).json()["items"] == []
