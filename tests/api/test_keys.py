"""API keys by the operator API: issued with scopes and shown once, listed
without secrets, revoked at once; each change audited."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest

from tests.api.conftest import Client, assert_problem, open_program


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def issue(client: Client, name: str, *scopes: str, **headers: str) -> dict[str, Any]:
    response = await client.post(
        "/api-keys", json={"name": name, "scopes": list(scopes)}, headers=headers
    )
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued


async def listed(client: Client, name: str) -> dict[str, Any]:
    response = await client.get("/api-keys")
    assert response.status_code == 200, response.text
    [found] = [key for key in response.json() if key["name"] == name]
    assert isinstance(found, dict)
    return found


async def test_a_key_is_issued_once_works_in_its_scopes_and_stops_when_revoked(
    client: Client, pool: asyncpg.Pool
) -> None:
    name = unique("reporting")
    issued = await issue(client, name, "ledger:read", "programs:read", "ledger:read")
    key = issued["key"]
    assert key.startswith(f"ck_{issued['prefix']}_")
    assert issued["scopes"] == ["ledger:read", "programs:read"]

    assert (await client.get("/ledger/ledgers", headers=bearer(key))).status_code == 200
    outside = await client.post(
        "/ledger/ledgers", json={"id": 99, "name": "nope"}, headers=bearer(key)
    )
    assert_problem(outside, 403, "forbidden")

    listing = await client.get("/api-keys")
    assert key.split("_", 2)[2] not in listing.text  # never the secret
    shown = await listed(client, name)
    assert shown["prefix"] == issued["prefix"]
    assert shown["scopes"] == issued["scopes"]
    assert shown["revoked_at"] is None and shown["created_at"] == issued["created_at"]

    revoked = await client.delete(f"/api-keys/{name}")
    assert revoked.status_code == 204, revoked.text
    # At once, though the key was verified (and remembered) a moment ago.
    refused = await client.get("/ledger/ledgers", headers=bearer(key))
    assert_problem(refused, 401, "unauthorized")
    assert (await listed(client, name))["revoked_at"] is not None
    assert_problem(await client.delete(f"/api-keys/{name}"), 404, "not-found")

    trail = await pool.fetch(
        "SELECT actor, action, details FROM audit_events WHERE subject = $1 ORDER BY occurred_at",
        f"api-key:{name}",
    )
    assert [(line["actor"], line["action"]) for line in trail] == [
        ("admin", "api-key.issue"),
        ("admin", "api-key.revoke"),
    ]
    details = trail[0]["details"]
    assert details["scopes"] == issued["scopes"] and key.split("_", 2)[2] not in str(details)


async def counts(pool: asyncpg.Pool) -> tuple[int, int]:
    keys = await pool.fetchval("SELECT count(*) FROM api_keys")
    lines = await pool.fetchval("SELECT count(*) FROM audit_events")
    return keys, lines


@pytest.mark.parametrize(
    "scopes", [[], ["root"], ["ledger:read", "*"]], ids=["none", "unknown", "everything"]
)
async def test_unknown_scopes_or_none_are_422_naming_the_field(
    client: Client, pool: asyncpg.Pool, scopes: list[str]
) -> None:
    before = await counts(pool)

    response = await client.post("/api-keys", json={"name": unique("bad"), "scopes": scopes})

    body = assert_problem(response, 422, "invalid-api-key")
    assert body["detail"].startswith("scopes: ")
    assert [error["key"] for error in body["errors"]] == ["scopes"]
    assert await counts(pool) == before


async def test_a_name_is_never_given_twice(client: Client, pool: asyncpg.Pool) -> None:
    name = unique("pos")
    await issue(client, name, "purchases:write")
    before = await counts(pool)

    again = await client.post("/api-keys", json={"name": name, "scopes": ["events:write"]})

    body = assert_problem(again, 409, "api-key-name-taken")
    assert [error["key"] for error in body["errors"]] == ["name"]
    assert "retry" not in body["detail"].lower()
    assert await counts(pool) == before
    # Nor after it is revoked: the name stays the actor of its audit lines.
    assert (await client.delete(f"/api-keys/{name}")).status_code == 204
    after_revoke = await client.post("/api-keys", json={"name": name, "scopes": ["events:write"]})
    assert_problem(after_revoke, 409, "api-key-name-taken")


async def test_a_key_manager_grants_only_what_it_holds(client: Client, pool: asyncpg.Pool) -> None:
    manager = unique("manager")
    held = await issue(client, manager, "keys:manage", "ledger:read")
    as_manager = bearer(held["key"])
    before = await counts(pool)

    stronger = await client.post(
        "/api-keys",
        json={"name": unique("stronger"), "scopes": ["ledger:read", "ledger:write"]},
        headers=as_manager,
    )

    body = assert_problem(stronger, 403, "forbidden")
    assert "ledger:write" in body["detail"]
    assert await counts(pool) == before
    reader = unique("reader")
    await issue(client, reader, "ledger:read", **as_manager)
    assert (await client.delete(f"/api-keys/{reader}", headers=as_manager)).status_code == 204
    actors = await pool.fetch(
        "SELECT DISTINCT actor FROM audit_events WHERE subject = $1", f"api-key:{reader}"
    )
    assert [line["actor"] for line in actors] == [f"key:{manager}"]


async def test_managing_keys_needs_the_keys_manage_scope(client: Client) -> None:
    reader = await issue(client, unique("reader"), "ledger:read")
    headers = bearer(reader["key"])

    for response in (
        await client.get("/api-keys", headers=headers),
        await client.post(
            "/api-keys", json={"name": unique("x"), "scopes": ["ledger:read"]}, headers=headers
        ),
        await client.delete(f"/api-keys/{unique('x')}", headers=headers),
    ):
        body = assert_problem(response, 403, "forbidden")
        assert "keys:manage" in body["detail"]


@pytest.mark.parametrize("name", ["a%00b", "-leading-dash", "x" * 101, "sp%20ace"])
async def test_a_malformed_name_in_the_path_is_400(client: Client, name: str) -> None:
    assert_problem(await client.delete(f"/api-keys/{name}"), 400, "validation-error")


async def test_a_key_bound_to_a_program_acts_in_it_and_grants_no_wider(
    client: Client, pool: asyncpg.Pool
) -> None:
    own, other = await open_program(client), await open_program(client)
    issued = await issue_key_for(client, unique("shop"), own, "programs:read", "keys:manage")
    as_shop = bearer(issued["key"])

    assert issued["program"] == own
    assert (await listed(client, issued["name"]))["program"] == own
    assert (await client.get(f"/programs/{own}", headers=as_shop)).status_code == 200
    hidden = assert_problem(
        await client.get(f"/programs/{other}", headers=as_shop), 404, "not-found"
    )
    assert hidden["detail"] == f"no program {other!r}"
    child = await issue(client, unique("child"), "programs:read", **as_shop)
    assert child["program"] == own  # the issuer's tenant, though none was asked
    unbound = await issue(client, unique("platform"), "programs:read")
    assert unbound["program"] is None
    seen = (await client.get("/api-keys", headers=as_shop)).json()
    assert {key["name"] for key in seen} == {issued["name"], child["name"]}
    trail = await pool.fetchval(
        "SELECT details->>'program' FROM audit_events WHERE action = 'api-key.issue'"
        " AND subject = $1",
        f"api-key:{child['name']}",
    )
    assert trail == own


async def test_a_key_for_a_program_that_is_not_there_is_422_naming_the_field(
    client: Client, pool: asyncpg.Pool
) -> None:
    before = await counts(pool)

    response = await client.post(
        "/api-keys",
        json={"name": unique("x"), "scopes": ["programs:read"], "program": "no-such-shop"},
    )

    body = assert_problem(response, 422, "invalid-api-key")
    assert body["detail"] == "program: no program 'no-such-shop'"
    assert [error["key"] for error in body["errors"]] == ["program"]
    assert await counts(pool) == before


async def test_a_key_bound_to_a_program_runs_no_platform_job(client: Client) -> None:
    shop = await open_program(client)
    issued = await issue_key_for(client, unique("jobs"), shop, "jobs:run", "ledger:read")

    for response in (
        await client.post("/jobs/drain-outbox/runs", headers=bearer(issued["key"])),
        await client.get("/ledger/ledgers", headers=bearer(issued["key"])),
    ):
        body = assert_problem(response, 403, "forbidden")
        assert "one program only" in body["detail"]


async def issue_key_for(client: Client, name: str, program: str, *scopes: str) -> dict[str, Any]:
    response = await client.post(
        "/api-keys", json={"name": name, "scopes": list(scopes), "program": program}
    )
    assert response.status_code == 201, response.text
    issued: dict[str, Any] = response.json()
    return issued
