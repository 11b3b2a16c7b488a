"""Coalition points over HTTP: the operator's contract versions and blocks
of points, members' links at partners, and the partner's name in a
member's history. (The partner API's own routes need a partner token:
``tests/api/test_partner_isolation.py`` walks them.)"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.settings import Settings
from core.principal import Principal, PrincipalKind
from ledger import Ledger
from partners.coalition_schemas import IssuanceRequest
from partners.issuance import issue_points
from tests.api.conftest import ADMIN_TOKEN, AUTH, PROBLEM_JSON, assert_problem, open_program
from tests.api.test_member_api import SECRET, bearer, token

Client = AsyncTestClient[Litestar]
_firms = itertools.count(1)

CONTRACT = {
    "roles": "both",
    "issue_price_per_point": "1.5",
    "redemption_rate_per_point": "0.8",
    "funding_model": "prepaid",
}


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    settings = Settings(admin_token=ADMIN_TOKEN, member_jwt_secret=SECRET, sweep_interval=0)
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        client.headers.update(AUTH)
        yield client


async def ok(response: Any, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200, 201)), response.text
    return response.json()


async def firm(client: Client, program: str, **fields: Any) -> str:
    slug = f"fuel-{next(_firms)}"
    body = {
        "slug": slug,
        "name": "Fuel & Go",
        "legal_name": "Fuel & Go Ltd",
        "country": "ZA",
        "status": "active",
    }
    await ok(await client.post(f"/programs/{program}/partners", json=body | fields))
    return slug


async def published(client: Client, program: str, partner: str, **terms: Any) -> dict[str, Any]:
    base = f"/programs/{program}/partners/{partner}/contracts"
    draft = await ok(await client.post(base, json=CONTRACT | terms))
    start = (datetime.now(UTC) - timedelta(milliseconds=1)).isoformat()
    body: dict[str, Any] = await ok(
        await client.post(f"{base}/{draft['version']}/publication", json={"effective_from": start})
    )
    return body


async def counts(pool: asyncpg.Pool, program: str) -> tuple[int, ...]:
    found = []
    for table in ("partner_contracts", "partner_fundings", "partner_member_links"):
        found.append(
            await pool.fetchval(
                f"SELECT count(*) FROM {table} t JOIN programs p ON p.id = t.program_id"
                " WHERE p.slug = $1",
                program,
            )
        )
    found.append(
        await pool.fetchval(
            "SELECT count(*) FROM audit_events WHERE subject LIKE $1", f"program:{program}:%"
        )
    )
    return tuple(found)


async def test_a_contract_is_drafted_published_and_read(client: Client) -> None:
    program = await open_program(client)
    partner = await firm(client, program)
    base = f"/programs/{program}/partners/{partner}/contracts"
    first = await client.post(base, json=CONTRACT)
    again = await client.post(base, json=CONTRACT)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert first.json()["issue_price_per_point"] == "1.5"
    assert first.json()["currency"] == "ZAR" and first.json()["status"] == "draft"
    start = (datetime.now(UTC) - timedelta(milliseconds=1)).isoformat()
    publication = await ok(
        await client.post(f"{base}/1/publication", json={"effective_from": start})
    )
    assert publication["status"] == "published"
    assert (await ok(await client.get(f"{base}/1")))["status"] == "published"
    page = await ok(await client.get(base, params={"limit": 1}))
    assert [v["version"] for v in page["items"]] == [1] and page["next_cursor"] is None
    assert_problem(await client.get(f"{base}/2"), 404, "not-found")
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert_problem(
        await client.post(f"{base}/1/publication", json={"effective_from": later}),
        409,
        "version-already-published",
    )


@pytest.mark.parametrize(
    "terms",
    [
        {"issue_price_per_point": 1.5},
        {"issue_price_per_point": "1.1234567"},
        {"issuance_share": "1.5"},
        {"roles": "seller"},
        {"currency": "zar"},
        {"credit_limit_points": -1},
        {"tax_codes": {"issuance": "\x00"}},
        {"unknown": 1},
    ],
    ids=repr,
)
async def test_bad_terms_are_refused_and_nothing_is_written(
    client: Client, pool: asyncpg.Pool, terms: dict[str, Any]
) -> None:
    program = await open_program(client)
    partner = await firm(client, program)
    before = await counts(pool, program)
    response = await client.post(
        f"/programs/{program}/partners/{partner}/contracts", json=CONTRACT | terms
    )
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert await counts(pool, program) == before


async def test_terms_that_do_not_hold_together_are_422(client: Client, pool: asyncpg.Pool) -> None:
    program = await open_program(client)
    partner = await firm(client, program)
    before = await counts(pool, program)
    base = f"/programs/{program}/partners/{partner}/contracts"
    assert_problem(
        await client.post(base, json=CONTRACT | {"credit_limit_points": 10}),
        422,
        "invalid-contract",
    )
    assert_problem(
        await client.post(base, json=CONTRACT | {"funding_model": "postpaid"}),
        422,
        "invalid-contract",
    )
    assert await counts(pool, program) == before


async def test_a_lower_credit_limit_than_the_headroom_left_is_409(
    client: Client, pool: asyncpg.Pool, ledger: Ledger
) -> None:
    program = await open_program(client)
    partner = await firm(client, program)
    await ok(await client.post(f"/programs/{program}/members", json={"external_id": "ann"}))
    await published(client, program, partner, funding_model="postpaid", credit_limit_points=100)
    await issue(
        pool, ledger, program, partner, IssuanceRequest(transaction_id="T", member="ann", points=80)
    )
    base = f"/programs/{program}/partners/{partner}"
    draft = await ok(
        await client.post(
            f"{base}/contracts",
            json=CONTRACT | {"funding_model": "postpaid", "credit_limit_points": 50},
        )
    )
    before = await counts(pool, program)
    # A credit line moves when its version is published, whatever its start.
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert_problem(
        await client.post(
            f"{base}/contracts/{draft['version']}/publication", json={"effective_from": later}
        ),
        409,
        "credit-line-in-use",
    )
    assert await counts(pool, program) == before
    balance = await ok(await client.get(f"{base}/balance"))
    assert (balance["issuable_points"], balance["credit_limit_points"]) == (20, 100)


async def test_a_block_of_points_is_recorded_once(client: Client, pool: asyncpg.Pool) -> None:
    program = await open_program(client)
    partner = await firm(client, program)
    base = f"/programs/{program}/partners/{partner}"
    assert_problem(
        await client.post(
            f"{base}/funding", json={"reference": "INV-0", "points": 1, "amount_minor": 1}
        ),
        409,
        "no-contract-in-force",
    )
    await published(client, program, partner)
    block = {"reference": "INV-1", "points": 10_000, "amount_minor": 15_000}
    first = await client.post(f"{base}/funding", json=block)
    again = await client.post(f"{base}/funding", json=block)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["replayed"] and again.json()["id"] == first.json()["id"]
    before = await counts(pool, program)
    assert_problem(
        await client.post(f"{base}/funding", json=block | {"points": 9_999}),
        409,
        "idempotency-conflict",
    )
    assert await counts(pool, program) == before
    balance = await ok(await client.get(f"{base}/balance"))
    assert balance == {
        "partner": partner,
        "funding_model": "prepaid",
        "issuable_points": 10_000,
        "credit_limit_points": 0,
        "accepted_points": 0,
    }


async def issue(
    pool: asyncpg.Pool, ledger: Ledger, program: str, partner: str, request: IssuanceRequest
) -> None:
    row = await pool.fetchrow(
        "SELECT p.id, p.program_id FROM partners p JOIN programs g ON g.id = p.program_id"
        " WHERE g.slug = $1 AND p.slug = $2",
        program,
        partner,
    )
    assert row is not None
    principal = Principal(
        kind=PrincipalKind.PARTNER,
        actor="partner:http-test",
        scopes=frozenset({"points:issue"}),
        program_id=row["program_id"],
        partner_id=row["id"],
        partner_ids=frozenset({row["id"]}),
    )
    await issue_points(pool, ledger, request, datetime.now(UTC), principal=principal)


async def test_a_member_links_a_card_and_sees_the_partner_in_their_history(
    client: Client, pool: asyncpg.Pool, ledger: Ledger
) -> None:
    program = await open_program(client)
    partner = await firm(client, program, name="Fuel & Go Sandton")
    for member in ("ann", "ben"):
        await ok(await client.post(f"/programs/{program}/members", json={"external_id": member}))
    ann, ben = bearer(token(program, "ann")), bearer(token(program, "ben"))
    assert_problem(
        await client.put(f"/me/partner-links/{partner}", json={"identifier": "C"}, headers=ann),
        409,
        "no-contract-in-force",
    )
    await published(client, program, partner)
    await ok(
        await client.post(
            f"/programs/{program}/partners/{partner}/funding",
            json={"reference": "INV-1", "points": 1000, "amount_minor": 1500},
        )
    )
    linked = await ok(
        await client.put(f"/me/partner-links/{partner}", json={"identifier": "CARD-1"}, headers=ann)
    )
    assert (linked["partner"], linked["identifier"]) == (partner, "CARD-1")
    assert_problem(
        await client.put(
            f"/me/partner-links/{partner}", json={"identifier": "CARD-1"}, headers=ben
        ),
        409,
        "already-exists",
    )
    assert_problem(
        await client.put("/me/partner-links/nobody", json={"identifier": "X"}, headers=ben),
        404,
        "not-found",
    )
    listed = await ok(await client.get("/me/partner-links", headers=ann))
    assert [link["identifier"] for link in listed] == ["CARD-1"]
    await issue(
        pool,
        ledger,
        program,
        partner,
        IssuanceRequest(transaction_id="T-1", identifier="CARD-1", points=40),
    )
    history = await ok(await client.get("/me/transactions", headers=ann))
    [movement] = history["movements"]
    assert (movement["points"], movement["kind"], movement["partner"]) == (
        40,
        "partner_earn",
        "Fuel & Go Sandton",
    )
    removed = await client.delete(f"/me/partner-links/{partner}", headers=ann)
    assert removed.status_code == 204, removed.text
    assert await ok(await client.get("/me/partner-links", headers=ann)) == []
    assert_problem(
        await client.delete(f"/me/partner-links/{partner}", headers=ann), 404, "not-found"
    )
    # The link's row is gone.
    assert not await pool.fetchval(
        "SELECT count(*) FROM partner_member_links l JOIN programs p ON p.id = l.program_id"
        " WHERE p.slug = $1",
        program,
    )
