"""Market development funds over HTTP: the operator's routes and the
partner API's, a brand partner funding another, problem+json answers for
wrong transitions and bad input (which write nothing), and another firm's
token finding nothing."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, AUTH, PROBLEM_JSON, SIGNING_SECRET, assert_problem
from tests.api.conftest import open_program as opened_program
from tests.api.test_partner_coalition import firm
from tests.partners.tokens import api_partner_bearer

Client = AsyncTestClient[Litestar]
_refs = itertools.count(1)
PROOF = [{"url": "https://files.example.com/invoice.pdf", "description": "The invoice"}]


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


def day(offset: int) -> str:
    return (datetime.now(UTC).date() + timedelta(days=offset)).isoformat()


def fund_body(partner: str, amount: int = 1000, **fields: Any) -> dict[str, Any]:
    return {
        "reference": f"mdf-{next(_refs)}-{uuid.uuid4().hex[:6]}",
        "partner": partner,
        "name": "Q1 co-marketing",
        "period_start": day(-5),
        "period_end": day(60),
        "unit": "points",
        "amount": amount,
    } | fields


def activity_body(amount: int, **fields: Any) -> dict[str, Any]:
    return {
        "title": "Forecourt promotion",
        "plan": "Posters at 12 sites",
        "starts_on": day(0),
        "ends_on": day(7),
        "amount": amount,
    } | fields


async def post(client: Client, path: str, body: Any, token: dict[str, str]) -> Any:
    return await client.post(
        path, json=body, headers={**token, "Idempotency-Key": str(uuid.uuid4())}
    )


def created(response: Any, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def mdf_rows(pool: asyncpg.Pool) -> tuple[int, int, int]:
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM mdf_funds) AS f, (SELECT count(*) FROM mdf_activities) AS a,"
        " (SELECT count(*) FROM mdf_claims) AS c"
    )
    assert row is not None
    return row["f"], row["a"], row["c"]


async def test_an_operator_fund_from_allocation_to_a_paid_claim(client: Client) -> None:
    program = await opened_program(client)
    partner = await firm(client, program)
    token = await api_partner_bearer(client, program, partner)
    base = f"/programs/{program}/mdf"
    body = fund_body(partner)
    fund = created(await client.post(f"{base}/funds", json=body))
    again = created(await client.post(f"{base}/funds", json=body), 200)
    assert (again["id"], again["replayed"]) == (fund["id"], True)
    listed = await client.get("/partner/mdf/funds", headers=token)
    assert [f["id"] for f in listed.json()["items"]] == [fund["id"]]

    activity = created(
        await post(client, f"/partner/mdf/funds/{fund['id']}/activities", activity_body(600), token)
    )
    assert activity["status"] == "requested"
    approval = await client.post(f"{base}/activities/{activity['id']}/approval", json={})
    assert (approval.status_code, approval.json()["approved_amount"]) == (200, 600), approval.text
    claim = created(
        await post(
            client,
            f"/partner/mdf/activities/{activity['id']}/claims",
            {"amount": 100, "description": "Posters"},
            token,
        )
    )
    assert claim["status"] == "draft"
    changed = await client.patch(
        f"/partner/mdf/claims/{claim['id']}", json={"amount": 250, "proof": PROOF}, headers=token
    )
    assert (changed.status_code, changed.json()["amount"]) == (200, 250), changed.text
    sent = await post(client, f"/partner/mdf/claims/{claim['id']}/submission", None, token)
    assert (sent.status_code, sent.json()["status"]) == (200, "submitted"), sent.text
    paid = await client.post(f"{base}/claims/{claim['id']}/approval")
    paid_again = await client.post(f"{base}/claims/{claim['id']}/approval")

    assert (paid.status_code, paid.json()["status"]) == (200, "paid"), paid.text
    assert paid_again.json()["transfer_id"] == paid.json()["transfer_id"]
    for reconciliation in (
        await client.get(f"{base}/funds/{fund['id']}/reconciliation"),
        await client.get(f"/partner/mdf/funds/{fund['id']}/reconciliation", headers=token),
    ):
        figures = reconciliation.json()
        assert reconciliation.status_code == 200, reconciliation.text
        assert (figures["committed"], figures["claimed"], figures["paid"]) == (600, 250, 250)
        assert (figures["paid_in_ledger"], figures["remaining"], figures["ties"]) == (
            250,
            400,
            True,
        )
    claims = await client.get(f"/partner/mdf/activities/{activity['id']}/claims", headers=token)
    assert [c["status"] for c in claims.json()["items"]] == ["paid"]


async def test_a_brand_partner_funds_and_decides_and_others_find_nothing(
    client: Client,
) -> None:
    program = await opened_program(client)
    brand, partner, other = [await firm(client, program) for _ in range(3)]
    brand_token, token, other_token = [
        await api_partner_bearer(client, program, f) for f in (brand, partner, other)
    ]
    fund = created(
        await post(
            client,
            "/partner/mdf/funds",
            fund_body(partner, 50_000, unit="money", currency="ZAR"),
            brand_token,
        )
    )
    assert (fund["funder"], fund["partner"]) == (brand, partner)
    activity = created(
        await post(
            client, f"/partner/mdf/funds/{fund['id']}/activities", activity_body(20_000), token
        )
    )
    approval = f"/partner/mdf/activities/{activity['id']}/approval"
    assert_problem(await post(client, approval, {}, token), 403, "forbidden")
    assert_problem(await post(client, approval, {}, other_token), 404, "not-found")
    decided = await post(client, approval, {"amount": 10_000}, brand_token)
    assert decided.json()["approved_amount"] == 10_000, decided.text
    claim = created(
        await post(
            client,
            f"/partner/mdf/activities/{activity['id']}/claims",
            {"amount": 9_000, "description": "Radio spots", "proof": PROOF, "submit": True},
            token,
        )
    )
    assert claim["status"] == "submitted"
    for path in (
        f"/partner/mdf/funds/{fund['id']}",
        f"/partner/mdf/activities/{activity['id']}",
        f"/partner/mdf/claims/{claim['id']}",
    ):
        assert_problem(await client.get(path, headers=other_token), 404, "not-found")
        assert (await client.get(path, headers=brand_token)).status_code == 200
    paid = await post(client, f"/partner/mdf/claims/{claim['id']}/approval", None, brand_token)
    assert paid.json()["status"] == "paid", paid.text
    # Over the approved amount: refused, and the fund is never overdrawn.
    over = await post(
        client,
        f"/partner/mdf/activities/{activity['id']}/claims",
        {"amount": 1_001, "description": "More"},
        token,
    )
    assert_problem(over, 409, "mdf-activity-overclaimed")
    funded = await client.get("/partner/mdf/funds", headers=brand_token)
    assert [f["id"] for f in funded.json()["items"]] == [fund["id"]]
    assert (await client.get("/partner/mdf/funds", headers=other_token)).json()["items"] == []


async def test_wrong_transitions_are_409_problems(client: Client) -> None:
    program = await opened_program(client)
    partner = await firm(client, program)
    token = await api_partner_bearer(client, program, partner)
    base = f"/programs/{program}/mdf"
    fund = created(await client.post(f"{base}/funds", json=fund_body(partner, 500)))
    first, second = [
        created(
            await post(
                client, f"/partner/mdf/funds/{fund['id']}/activities", activity_body(300), token
            )
        )
        for _ in range(2)
    ]
    assert (await client.post(f"{base}/activities/{first['id']}/approval", json={})).is_success
    exhausted = await client.post(f"{base}/activities/{second['id']}/approval", json={})
    assert_problem(exhausted, 409, "mdf-fund-exhausted")
    refused = await client.post(
        f"{base}/activities/{second['id']}/refusal", json={"reason": "no budget"}
    )
    assert refused.json()["status"] == "refused"
    again = await client.post(f"{base}/activities/{second['id']}/approval", json={})
    assert_problem(again, 409, "mdf-wrong-state")
    claim = created(
        await post(
            client,
            f"/partner/mdf/activities/{first['id']}/claims",
            {"amount": 10, "description": "x"},
            token,
        )
    )
    assert_problem(
        await client.post(f"{base}/claims/{claim['id']}/approval"), 409, "mdf-wrong-state"
    )
    no_proof = await post(client, f"/partner/mdf/claims/{claim['id']}/submission", None, token)
    assert_problem(no_proof, 422, "invalid-mdf-request")


@pytest.mark.parametrize(
    "change",
    [
        {"unit": "points", "currency": "ZAR"},
        {"unit": "money"},
        {"amount": 0},
        {"amount": 10**16},
        {"period_end": day(-10)},
        {"name": "bad\u0000name"},
        {"surprise": True},
        {"partner": "nobody-at-all"},
        {"period_start": "10000-01-01"},
    ],
)
async def test_bad_fund_input_is_a_problem_and_writes_nothing(
    client: Client, pool: asyncpg.Pool, change: dict[str, Any]
) -> None:
    program = await opened_program(client)
    partner = await firm(client, program)
    before = await mdf_rows(pool)

    answer = await client.post(f"/programs/{program}/mdf/funds", json=fund_body(partner) | change)

    assert answer.status_code in (400, 422), answer.text
    assert answer.headers["content-type"].startswith(PROBLEM_JSON)
    assert await mdf_rows(pool) == before


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("activities", activity_body(10, ends_on=day(-30))),
        ("activities", activity_body(10, title="")),
        ("activities", activity_body(10_000)),
        (
            "claims",
            {
                "amount": 5,
                "description": "x",
                "proof": [{"url": "http://a.example/x", "description": "plain http"}],
            },
        ),
        ("claims", {"amount": 5, "description": "x", "proof": PROOF * 21}),
        ("claims", {"amount": -5, "description": "x"}),
    ],
)
async def test_bad_partner_input_is_a_problem_and_writes_nothing(
    client: Client, pool: asyncpg.Pool, path: str, body: dict[str, Any]
) -> None:
    program = await opened_program(client)
    partner = await firm(client, program)
    token = await api_partner_bearer(client, program, partner)
    base = f"/programs/{program}/mdf"
    fund = created(await client.post(f"{base}/funds", json=fund_body(partner, 500)))
    activity = created(
        await post(client, f"/partner/mdf/funds/{fund['id']}/activities", activity_body(100), token)
    )
    assert (await client.post(f"{base}/activities/{activity['id']}/approval", json={})).is_success
    before = await mdf_rows(pool)
    target = (
        f"/partner/mdf/funds/{fund['id']}/activities"
        if path == "activities"
        else f"/partner/mdf/activities/{activity['id']}/claims"
    )

    answer = await post(client, target, body, token)

    assert answer.status_code in (400, 409, 422), answer.text
    assert answer.headers["content-type"].startswith(PROBLEM_JSON)
    assert await mdf_rows(pool) == before
