"""Overlap matching over HTTP: one partner uploads its list in the clear,
the other hashes its own with the agreement's key; counts and overlaps equal
the set intersection, with only the agreement's fields, and are logged; a
difference attack answers 409 problem+json; a partner not party to the
agreement finds nothing (404); bad input answers problem+json and writes
nothing."""

from __future__ import annotations

import hashlib
import hmac
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
from tests.api.conftest import ADMIN_TOKEN, AUTH, SIGNING_SECRET, assert_problem, open_program
from tests.api.test_partner_coalition import firm, ok
from tests.partners.tokens import api_partner_bearer

Client = AsyncTestClient[Litestar]
BASE = "/partner/data-sharing/agreements"
SCOPES = ("data:share", "data:match")


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    settings = Settings(admin_token=ADMIN_TOKEN, sweep_interval=0, signing_secret=SIGNING_SECRET)
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        client.headers.update(AUTH)
        yield client


async def posted(client: Client, path: str, who: dict[str, str], body: Any = None) -> Any:
    return await client.post(path, json=body, headers={**who, "Idempotency-Key": str(uuid.uuid4())})


async def world(client: Client) -> dict[str, Any]:
    program = await open_program(client)
    w: dict[str, Any] = {"program": program}
    for side in ("a", "b", "c"):
        slug = await firm(client, program, name=f"Firm {side.upper()}")
        w[side] = slug
        w[f"{side}_token"] = await api_partner_bearer(client, program, slug, scopes=SCOPES)
    proposal = {
        "counterparty": w["b"],
        "purpose": "Which customers we share",
        "direction": "both",
        "fields": ["email", "tier"],
        "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
    }
    agreement = await ok(await posted(client, BASE, w["a_token"], proposal))
    for who in ("a_token", "b_token"):
        await ok(await posted(client, f"{BASE}/{agreement['id']}/opt-in", w[who]))
    w["agreement"] = f"{BASE}/{agreement['id']}"
    w["agreement_id"] = agreement["id"]
    return w


def emails(start: int, stop: int) -> list[str]:
    return [f"Buyer.{i}@Example.com" for i in range(start, stop)]


async def count_rows(pool: asyncpg.Pool, table: str) -> int:
    found: int = await pool.fetchval(f"SELECT count(*) FROM {table}")
    return found


async def test_both_ways_of_hashing_match_and_results_are_shown_by_the_rules(
    client: Client, pool: asyncpg.Pool
) -> None:
    w = await world(client)
    mine = emails(0, 300)
    made = await ok(
        await posted(
            client,
            f"{w['agreement']}/overlap-uploads",
            w["a_token"],
            {"identifier_kind": "email", "records": [{"identifier": e} for e in mine]},
        )
    )
    assert made["records"] == 300 and made["hashed_by"] == "platform"
    shown = await ok(
        await client.get(f"{w['agreement']}/overlap-uploads/{made['id']}", headers=w["a_token"])
    )
    assert shown == made

    # B hashes its own list with the agreement's key: the platform never sees it.
    key = await ok(await client.get(f"{w['agreement']}/overlap-key", headers=w["b_token"]))
    secret = bytes.fromhex(key["hmac_key"])
    theirs = [e.lower() for e in emails(200, 400)]
    records = [
        {
            "identifier": hmac.new(secret, e.encode(), hashlib.sha256).hexdigest(),
            "fields": {"tier": f"tier-{i}"},
        }
        for i, e in enumerate(theirs)
    ]
    await ok(
        await posted(
            client,
            f"{w['agreement']}/overlap-uploads",
            w["b_token"],
            {
                "identifier_kind": "email",
                "hashed_by": "partner",
                "key_epoch": key["key_epoch"],
                "records": records,
            },
        )
    )
    expected = len({e.lower() for e in mine} & set(theirs))
    counts = await ok(await posted(client, f"{w['agreement']}/overlap-runs", w["a_token"], {}))
    assert counts["counts"]["total"] == expected == 100
    overlaps = await ok(
        await posted(client, f"{w['agreement']}/overlap-runs", w["a_token"], {"result": "overlaps"})
    )
    matches = overlaps["overlaps"]["matches"]
    assert [m["position"] for m in matches] == list(range(200, 300))
    assert all(m["fields"] == {"tier": f"tier-{m['position'] - 200}"} for m in matches)
    logged = await pool.fetchval(
        "SELECT count(*) FROM data_disclosures WHERE reference = $1",
        f"overlap-run:{overlaps['id']}",
    )
    assert logged == 100
    again = await ok(
        await client.get(f"{w['agreement']}/overlap-runs/{overlaps['id']}", headers=w["a_token"])
    )
    assert again["overlaps"] == overlaps["overlaps"]
    assert await pool.fetchval(
        "SELECT count(*) FROM data_disclosures WHERE reference = $1",
        f"overlap-run:{overlaps['id']}",
    ) == 200  # fmt: skip

    # PSI counts the same.
    psi = await ok(
        await posted(client, f"{w['agreement']}/overlap-runs", w["a_token"], {"mode": "psi"})
    )
    assert psi["counts"]["total"] == expected

    # The difference attack: the same list less one record.
    await ok(
        await posted(
            client,
            f"{w['agreement']}/overlap-uploads",
            w["a_token"],
            {"identifier_kind": "email", "records": [{"identifier": e} for e in mine[:-1]]},
        )
    )
    runs = await count_rows(pool, "overlap_runs")
    refused = await posted(client, f"{w['agreement']}/overlap-runs", w["a_token"], {})
    assert_problem(refused, 409, "overlap-query-refused")
    assert await count_rows(pool, "overlap_runs") == runs


async def test_a_partner_not_party_finds_nothing(client: Client, pool: asyncpg.Pool) -> None:
    w = await world(client)
    body = {"identifier_kind": "email", "records": [{"identifier": e} for e in emails(0, 60)]}
    upload = await ok(await posted(client, f"{w['agreement']}/overlap-uploads", w["a_token"], body))
    await ok(await posted(client, f"{w['agreement']}/overlap-uploads", w["b_token"], body))
    run = await ok(await posted(client, f"{w['agreement']}/overlap-runs", w["a_token"], {}))
    assert run["counts"]["total"] == 60
    outsider = w["c_token"]
    uploads = await count_rows(pool, "overlap_uploads")
    for answer in (
        await client.get(f"{w['agreement']}/overlap-key", headers=outsider),
        await posted(client, f"{w['agreement']}/overlap-key/rotations", outsider),
        await posted(client, f"{w['agreement']}/overlap-uploads", outsider, body),
        await posted(client, f"{w['agreement']}/overlap-runs", outsider, {}),
    ):
        assert_problem(answer, 404, "not-found")
    assert_problem(
        await client.get(f"{w['agreement']}/overlap-runs/{run['id']}", headers=outsider),
        404,
        "not-found",
    )
    assert_problem(
        await client.get(f"{w['agreement']}/overlap-uploads/{upload['id']}", headers=outsider),
        404,
        "not-found",
    )
    # The other party does not see the caller's run.
    assert_problem(
        await client.get(f"{w['agreement']}/overlap-runs/{run['id']}", headers=w["b_token"]),
        404,
        "not-found",
    )
    assert await count_rows(pool, "overlap_uploads") == uploads


@pytest.mark.parametrize(
    ("body", "status", "slug"),
    [
        (
            {
                "identifier_kind": "email",
                "records": [{"identifier": "a@b.co", "fields": {"phone": "1"}}],
            },
            422,
            "invalid-overlap-list",
        ),
        (
            {
                "identifier_kind": "email",
                "hashed_by": "partner",
                "records": [{"identifier": "a@b.co"}],
            },
            422,
            "invalid-overlap-list",
        ),
        (
            {"identifier_kind": "email", "hashed_by": "partner", "key_epoch": 9, "records": []},
            422,
            "invalid-overlap-list",
        ),
    ],
)
async def test_bad_uploads_write_nothing(
    client: Client, pool: asyncpg.Pool, body: dict[str, Any], status: int, slug: str
) -> None:
    w = await world(client)
    uploads = await count_rows(pool, "overlap_uploads")
    answer = await posted(client, f"{w['agreement']}/overlap-uploads", w["a_token"], body)
    assert_problem(answer, status, slug)
    assert await count_rows(pool, "overlap_uploads") == uploads


async def test_malformed_bodies_are_problems(client: Client, pool: asyncpg.Pool) -> None:
    w = await world(client)
    uploads = await count_rows(pool, "overlap_uploads")
    for body in (
        {"identifier_kind": "fax", "records": []},
        {
            "identifier_kind": "email",
            "records": [{"identifier": "a@b.co", "fields": {"colour": "red"}}],
        },
        {"identifier_kind": "email", "records": [{"identifier": "a\u0000@b.co"}]},
    ):
        answer = await posted(client, f"{w['agreement']}/overlap-uploads", w["a_token"], body)
        assert 400 <= answer.status_code < 500, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
    assert await count_rows(pool, "overlap_uploads") == uploads
    answer = await posted(
        client,
        f"{w['agreement']}/overlap-runs",
        w["a_token"],
        {"mode": "psi", "result": "overlaps"},
    )
    assert_problem(answer, 422, "invalid-overlap-run")
