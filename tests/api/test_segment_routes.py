"""Saved segments over HTTP: save, read, change, count, export (CSV and
Parquet read back) and delete; scopes; bad definitions and bad moments
answered with problem+json (422) and nothing written."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import asyncpg
import pyarrow.parquet as pq
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.api.conftest import assert_problem, open_program, purchase

Client = AsyncTestClient[Litestar]


async def ok(response: Any, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200, 201)), response.text
    return response.json() if response.content else None


@pytest.fixture
async def shop(client: Client) -> str:
    """A program with five members, three of whom bought (1, 2 and 3 times)."""
    slug = await open_program(client)
    for n in range(5):
        await ok(await client.post(f"/programs/{slug}/members", json={"external_id": f"m-{n}"}))
    for n in range(1, 4):
        for k in range(n):
            body = purchase(f"o-{n}-{k}", 1_000 * n, member=f"m-{n}")
            await ok(await client.post(f"/programs/{slug}/purchases", json=body))
    return slug


async def written(pool: asyncpg.Pool, slug: str) -> tuple[int, int]:
    segments = await pool.fetchval(
        "SELECT count(*) FROM segments s JOIN programs p ON p.id = s.program_id WHERE p.slug = $1",
        slug,
    )
    audits = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE subject LIKE $1", f"program:{slug}:segment:%"
    )
    return int(segments), int(audits)


async def test_a_segment_saved_counted_exported_changed_deleted(client: Client, shop: str) -> None:
    base = f"/programs/{shop}/segments"
    saved = await ok(
        await client.post(
            base,
            json={
                "name": "buyers",
                "description": "bought twice or more",
                "definition": {"frequency": {"min_purchases": 2}},
            },
        ),
        201,
    )
    assert saved["name"] == "buyers" and saved["offered_to_partners"] is False
    assert (await ok(await client.get(f"{base}/buyers")))["definition"]["frequency"] == {
        "min_purchases": 2,
        "max_purchases": None,
    }
    listed = await ok(await client.get(base))
    assert [s["name"] for s in listed["items"]] == ["buyers"]
    counted = await ok(await client.get(f"{base}/buyers/count"))
    assert counted["members"] == 2

    # Before any purchase: nobody.
    early = await ok(
        await client.get(f"{base}/buyers/count", params={"as_of": "2001-01-01T00:00:00Z"})
    )
    assert early["members"] == 0

    response = await client.get(f"{base}/buyers/export")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {r["member"]: int(r["spend_minor"]) for r in rows} == {"m-2": 4_000, "m-3": 9_000}
    assert {r["member"]: int(r["purchases"]) for r in rows} == {"m-2": 2, "m-3": 3}

    response = await client.get(f"{base}/buyers/export", params={"format": "parquet"})
    assert response.status_code == 200
    table = pq.read_table(io.BytesIO(response.content))
    assert sorted(table.column("member").to_pylist()) == ["m-2", "m-3"]

    changed = await ok(
        await client.put(f"{base}/buyers", json={"definition": {"frequency": {"min_purchases": 1}}})
    )
    assert changed["definition"]["frequency"]["min_purchases"] == 1
    assert (await ok(await client.get(f"{base}/buyers/count")))["members"] == 3
    await ok(await client.delete(f"{base}/buyers"), 204)
    assert_problem(await client.get(f"{base}/buyers/count"), 404, "not-found")


@pytest.mark.parametrize(
    ("definition", "complaint"),
    [
        ({"filter": "tier = "}, "filter: at 8"),
        ({"filter": "spend_minor >= 'x' or"}, "expected an integer"),
        ({"tiers": ["platinum"]}, "no tier 'platinum'"),
        ({"partner": {"partners": ["nobody"]}}, "no partner 'nobody'"),
        ({"monetary": {"min_minor": 10, "max_minor": 1}}, "minimum is above"),
    ],
)
async def test_bad_definitions_answer_422_and_write_nothing(
    client: Client, pool: asyncpg.Pool, shop: str, definition: dict[str, Any], complaint: str
) -> None:
    before = await written(pool, shop)
    response = await client.post(
        f"/programs/{shop}/segments", json={"name": "bad", "definition": definition}
    )
    body = assert_problem(response, 422, "invalid-segment")
    assert complaint in body["detail"]
    assert await written(pool, shop) == before


async def test_malformed_bodies_and_moments_answer_problems(
    client: Client, pool: asyncpg.Pool, shop: str
) -> None:
    base = f"/programs/{shop}/segments"
    before = await written(pool, shop)
    for body in (
        {"name": "Bad Name", "definition": {}},
        {"name": "x", "definition": {"window_days": 0}},
        {"name": "x", "definition": {"unknown": 1}},
        {"name": "x", "definition": {"filter": "a" * 2001}},
        {"name": "x", "definition": {"rfm": {"recency": {"min_score": 6}}}},
    ):
        assert_problem(await client.post(base, json=body), 400, "validation-error")
    assert await written(pool, shop) == before
    await ok(await client.post(base, json={"name": "all", "definition": {}}), 201)
    assert_problem(
        await client.post(base, json={"name": "all", "definition": {}}), 409, "already-exists"
    )
    for moment in ("yesterday", "2026-01-01T00:00:00", "0001-01-01T00:00:00Z"):
        response = await client.get(f"{base}/all/count", params={"as_of": moment})
        assert_problem(response, 422, "invalid-segment")


async def test_scopes_read_and_write(client: Client, shop: str) -> None:
    base = f"/programs/{shop}/segments"
    await ok(await client.post(base, json={"name": "everyone", "definition": {}}), 201)
    keys = {}
    for scope in ("segments:read", "segments:write"):
        issued = await ok(
            await client.post(
                "/api-keys",
                json={"name": f"seg-{uuid.uuid4().hex[:8]}", "scopes": [scope], "program": shop},
            ),
            201,
        )
        keys[scope] = {"Authorization": f"Bearer {issued['key']}"}
    reader, writer = keys["segments:read"], keys["segments:write"]
    assert (await client.get(f"{base}/everyone/count", headers=reader)).status_code == 200
    assert_problem(
        await client.post(base, json={"name": "x", "definition": {}}, headers=reader),
        403,
        "forbidden",
    )
    assert (
        await client.post(base, json={"name": "x", "definition": {}}, headers=writer)
    ).status_code == 201
