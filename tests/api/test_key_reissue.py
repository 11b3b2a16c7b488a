"""An API key's secret is shown once: a repeat of the request that issued it,
within the re-issue window, re-issues that key (same id and name, a fresh
secret; the old one stops working at once) instead of answering 409; any
other request under the name stays 409."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from api.access import REISSUE_WINDOW
from tests.api.conftest import Client, assert_problem


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def issue(client: Client, body: dict[str, Any], **headers: str) -> Any:
    return await client.post("/api-keys", json=body, headers=headers)


async def lines(pool: asyncpg.Pool, name: str) -> list[str]:
    found = await pool.fetch(
        "SELECT action FROM audit_events WHERE subject = $1 ORDER BY occurred_at",
        f"api-key:{name}",
    )
    return [line["action"] for line in found]


async def test_the_same_request_again_reissues_the_key(client: Client, pool: asyncpg.Pool) -> None:
    body: dict[str, Any] = {"name": unique("till"), "scopes": ["programs:read", "ledger:read"]}
    first = await issue(client, body)
    assert first.status_code == 201, first.text
    old = first.json()
    assert old["reissued"] is False
    # Verified, so remembered by the server for a while.
    assert (await client.get("/ledger/ledgers", headers=bearer(old["key"]))).status_code == 200

    again = await issue(client, body | {"scopes": ["ledger:read", "programs:read"]})

    assert again.status_code == 201, again.text
    new = again.json()
    assert (new["id"], new["name"], new["scopes"], new["created_at"]) == (
        old["id"],
        old["name"],
        old["scopes"],
        old["created_at"],
    )
    assert new["reissued"] is True
    assert new["key"] != old["key"] and new["prefix"] != old["prefix"]
    refused = await client.get("/ledger/ledgers", headers=bearer(old["key"]))
    assert_problem(refused, 401, "unauthorized")
    assert (await client.get("/ledger/ledgers", headers=bearer(new["key"]))).status_code == 200
    assert await lines(pool, body["name"]) == ["api-key.issue"]
    stored = await pool.fetch("SELECT prefix FROM api_keys WHERE name = $1", body["name"])
    assert [row["prefix"] for row in stored] == [new["prefix"]]


async def test_a_changed_request_stays_name_taken(client: Client, pool: asyncpg.Pool) -> None:
    body: dict[str, Any] = {"name": unique("pos"), "scopes": ["purchases:write"]}
    assert (await issue(client, body)).status_code == 201
    shop = await client.post(
        "/programs",
        json={
            "slug": unique("keys-shop"),
            "name": "Keys",
            "currency": "ZAR",
            "point_value_minor": "1",
        },
    )
    assert shop.status_code == 201, shop.text
    before = await pool.fetchrow(
        "SELECT prefix, secret_sha256 FROM api_keys WHERE name = $1", body["name"]
    )

    for changed in (
        body | {"scopes": ["purchases:write", "events:write"]},
        body | {"program": shop.json()["slug"]},
    ):
        taken = assert_problem(await issue(client, changed), 409, "api-key-name-taken")
        assert [error["key"] for error in taken["errors"]] == ["name"]

    after = await pool.fetchrow(
        "SELECT prefix, secret_sha256 FROM api_keys WHERE name = $1", body["name"]
    )
    assert after == before
    assert await lines(pool, body["name"]) == ["api-key.issue"]


async def test_another_issuer_cannot_reissue_a_key(client: Client, pool: asyncpg.Pool) -> None:
    manager = (await issue(client, {"name": unique("manager"), "scopes": ["keys:manage"]})).json()
    body = {"name": unique("reader"), "scopes": ["keys:manage"]}
    first = await issue(client, body)
    assert first.status_code == 201, first.text

    # The same body from another credential (that holds the scopes).
    other = await issue(client, body, **bearer(manager["key"]))

    assert_problem(other, 409, "api-key-name-taken")
    assert (await client.get("/api-keys", headers=bearer(first.json()["key"]))).status_code == 200


async def test_no_reissue_after_the_window_nor_of_a_revoked_key(
    client: Client, pool: asyncpg.Pool
) -> None:
    late, revoked = (
        {"name": unique("late"), "scopes": ["ledger:read"]},
        {"name": unique("revoked"), "scopes": ["ledger:read"]},
    )
    issued = (await issue(client, late)).json()
    assert (await issue(client, revoked)).status_code == 201
    await pool.execute(
        "UPDATE api_keys SET created_at = created_at - $2::interval WHERE name = $1",
        late["name"],
        REISSUE_WINDOW + timedelta(seconds=1),
    )
    assert (await client.delete(f"/api-keys/{revoked['name']}")).status_code == 204

    assert_problem(await issue(client, late), 409, "api-key-name-taken")
    assert_problem(await issue(client, revoked), 409, "api-key-name-taken")
    assert (await client.get("/ledger/ledgers", headers=bearer(issued["key"]))).status_code == 200


async def test_names_are_unique_by_an_index(pool: asyncpg.Pool) -> None:
    """Every writer is held to it, not only the use case's look-up."""
    name = unique("raw")
    insert = (
        "INSERT INTO api_keys (id, name, prefix, secret_sha256, scopes)"
        " VALUES ($1, $2, $3, '\\x00', '{ledger:read}')"
    )
    await pool.execute(insert, uuid.uuid4(), name, uuid.uuid4().hex[:12])
    with pytest.raises(asyncpg.UniqueViolationError) as refused:
        await pool.execute(insert, uuid.uuid4(), name, uuid.uuid4().hex[:12])
    assert refused.value.constraint_name == "uq_api_keys_name"
