"""The routes of the operations on lots: cancellations, reinstatements and
the sunset; bad input answers problem+json and writes nothing."""

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
from tests.api.conftest import ADMIN_TOKEN, AUTH, assert_problem
from tests.api.test_member_api import SECRET, bearer, token

Client = AsyncTestClient[Litestar]
_slugs = itertools.count(1)


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


async def ok(response: Any, *statuses: int) -> Any:
    assert response.status_code in (statuses or (200, 201)), response.text
    return response.json()


async def funded_program(client: Client) -> str:
    slug = f"lots-{next(_slugs)}-{uuid.uuid4().hex[:6]}"
    await ok(
        await client.post(
            "/programs",
            json={"slug": slug, "name": "Lots", "currency": "ZAR", "point_value_minor": "1"},
        )
    )
    await ok(await client.post(f"/programs/{slug}/members", json={"external_id": "ann"}))
    await ok(
        await client.post(
            f"/programs/{slug}/members/ann/adjustments",
            json={"adjustment_id": "fund", "points": 500, "reason": "to spend"},
        )
    )
    return slug


def as_ann(slug: str, key: str | None = None) -> dict[str, str]:
    headers = bearer(token(slug, "ann"))
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


async def balance(client: Client, slug: str) -> int:
    member = await ok(await client.get(f"/programs/{slug}/members/ann"))
    return int(member["balance"]["available"])


async def written(pool: asyncpg.Pool, slug: str) -> tuple[Any, ...]:
    """What the operations on lots keep of the program, and its ledger's transfers."""
    program = await pool.fetchrow("SELECT id, ledger_id FROM programs WHERE slug = $1", slug)
    assert program is not None
    return (
        await pool.fetchval(
            "SELECT count(*) FROM transfers WHERE ledger = $1", program["ledger_id"]
        ),
        *[
            await pool.fetchval(
                f"SELECT count(*) FROM {table} WHERE program_id = $1", program["id"]
            )
            for table in ("spend_cancellations", "reinstatements", "program_sunsets")
        ],
        await pool.fetchval(
            "SELECT count(*) FROM audit_events WHERE subject LIKE $1", f"program:{slug}:%"
        ),
    )


async def test_cancel_a_redemption(client: Client, pool: asyncpg.Pool) -> None:
    slug = await funded_program(client)
    await ok(
        await client.post(
            f"/programs/{slug}/rewards",
            json={"sku": "MUG", "name": "Mug", "points_price": 120, "stock": 2},
        )
    )
    await ok(await client.post("/me/redemptions", json={"sku": "MUG"}, headers=as_ann(slug, "r")))
    history = await ok(await client.get("/me/transactions", headers=as_ann(slug)))
    [spent] = [m["id"] for m in history["movements"] if m["kind"] == "redemption"]
    path = f"/programs/{slug}/members/ann/redemptions/{spent}/cancellation"
    body = {"cancellation_id": "C-1", "reason": "order cancelled"}

    first = await client.post(path, json=body)
    again = await client.post(path, json=body)

    assert first.status_code == 201, first.text
    assert (again.status_code, again.json()) == (200, first.json() | {"replayed": True})
    assert (first.json()["points"], first.json()["spent_transfer_id"]) == (120, spent)
    assert await balance(client, slug) == 500
    history = await ok(await client.get("/me/transactions", headers=as_ann(slug)))
    assert history["movements"][0]["kind"] == "redemption_cancellation"
    before = await written(pool, slug)
    assert_problem(
        await client.post(path, json=body | {"cancellation_id": "C-2"}), 409, "already-cancelled"
    )
    assert_problem(
        await client.post(
            f"/programs/{slug}/members/ann/redemptions/{uuid.uuid4()}/cancellation", json=body
        ),
        404,
        "not-found",
    )
    assert_problem(
        await client.post(
            f"/programs/{slug}/members/bob/redemptions/{spent}/cancellation", json=body
        ),
        404,
        "not-found",
    )
    assert await written(pool, slug) == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"cancellation_id": "C-9"},
        {"cancellation_id": "C-9", "reason": "no"},
        {"cancellation_id": "", "reason": "a reason"},
        {"cancellation_id": "x" * 201, "reason": "a reason"},
        {"cancellation_id": "C\u0000", "reason": "a reason"},
        {"cancellation_id": "C-9", "reason": "a reason", "points": 5},
        {"cancellation_id": 9, "reason": "a reason"},
    ],
)
async def test_a_bad_cancellation_writes_nothing(
    client: Client, pool: asyncpg.Pool, body: dict[str, Any]
) -> None:
    slug = await funded_program(client)
    hold = await ok(
        await client.post(
            "/me/holds", json={"order_ref": "O-1", "amount_minor": 50}, headers=as_ann(slug, "h")
        )
    )
    await ok(await client.post(f"/programs/{slug}/holds/{hold['id']}/capture", json={}))
    before = await written(pool, slug)
    response = await client.post(f"/programs/{slug}/holds/{hold['id']}/cancellation", json=body)
    assert_problem(response, 400, "validation-error")
    assert await written(pool, slug) == before


async def test_cancel_a_points_payment(client: Client, pool: asyncpg.Pool) -> None:
    slug = await funded_program(client)
    hold = await ok(
        await client.post(
            "/me/holds", json={"order_ref": "O-1", "amount_minor": 50}, headers=as_ann(slug, "h")
        )
    )
    path = f"/programs/{slug}/holds/{hold['id']}/cancellation"
    body = {"cancellation_id": "C-1", "reason": "the order was cancelled"}
    before = await written(pool, slug)
    assert_problem(await client.post(path, json=body), 409, "spend-not-completed")
    assert_problem(
        await client.post(f"/programs/{slug}/holds/not-a-uuid/cancellation", json=body),
        404,
        "not-found",
    )
    assert await written(pool, slug) == before
    await ok(await client.post(f"/programs/{slug}/holds/{hold['id']}/capture", json={}))
    assert await balance(client, slug) == 450

    cancelled = await client.post(path, json=body)

    assert cancelled.status_code == 201, cancelled.text
    assert (cancelled.json()["kind"], cancelled.json()["points"]) == ("points_payment", 50)
    assert await balance(client, slug) == 500


async def test_reinstatements(client: Client, pool: asyncpg.Pool) -> None:
    slug = await funded_program(client)
    now = datetime.now(UTC)
    base = f"/programs/{slug}/reinstatements"
    before = await written(pool, slug)
    for body, status, kind in [
        (
            {"reference": "R", "since": (now + timedelta(days=1)).isoformat()},
            422,
            "invalid-reinstatement",
        ),
        (
            {
                "reference": "R",
                "since": now.isoformat(),
                "lot_expires_at": (now - timedelta(days=1)).isoformat(),
            },
            422,
            "invalid-reinstatement",
        ),
        ({"reference": "R", "since": "2026-01-01T00:00:00"}, 400, "validation-error"),
        ({"reference": "R", "since": "0001-01-01T00:00:00+00:00"}, 400, "validation-error"),
        ({"reference": "", "since": now.isoformat()}, 400, "validation-error"),
        ({"since": now.isoformat()}, 400, "validation-error"),
    ]:
        assert_problem(await client.post(base, json=body), status, kind)
    assert await written(pool, slug) == before

    made = await client.post(base, json={"reference": "R-1", "since": now.isoformat()})
    again = await client.post(base, json={"reference": "R-1", "since": now.isoformat()})
    assert made.status_code == 201, made.text
    assert (made.json()["status"], made.json()["points"], made.json()["lot_expires_at"]) == (
        "done",
        0,
        None,
    )
    assert (again.status_code, again.json()["replayed"]) == (200, True)
    assert_problem(
        await client.post(
            base, json={"reference": "R-1", "since": (now - timedelta(days=1)).isoformat()}
        ),
        409,
        "idempotency-conflict",
    )
    listed = await ok(await client.get(base, params={"limit": 10}))
    assert [r["reference"] for r in listed["items"]] == ["R-1"]
    one = await ok(await client.get(f"{base}/{made.json()['id']}"))
    assert one["id"] == made.json()["id"]
    assert_problem(await client.get(f"{base}/{uuid.uuid4()}"), 404, "not-found")
    assert_problem(await client.get(base, params={"cursor": "x"}), 400, "validation-error")
    assert_problem(await client.get(base, params={"limit": 0}), 400, "validation-error")


async def test_sunset(client: Client, pool: asyncpg.Pool) -> None:
    slug = await funded_program(client)
    base = f"/programs/{slug}/sunset"
    at = datetime.now(UTC) + timedelta(days=100)
    body = {"sunset_at": at.isoformat(), "notice_days": 90, "reason": "the program closes"}
    assert_problem(await client.get(base), 404, "not-found")
    assert_problem(await client.delete(base), 404, "not-found")
    before = await written(pool, slug)
    for bad, status, kind in [
        (body | {"notice_days": 101}, 422, "sunset-notice-too-short"),
        (body | {"notice_days": 0}, 400, "validation-error"),
        (body | {"sunset_at": "2030-01-01T00:00:00"}, 400, "validation-error"),
        (body | {"reason": ""}, 400, "validation-error"),
        ({"sunset_at": at.isoformat()}, 400, "validation-error"),
    ]:
        assert_problem(await client.post(base, json=bad), status, kind)
    assert await written(pool, slug) == before

    scheduled = await client.post(base, json=body)
    same = await client.post(base, json=body)
    assert scheduled.status_code == 201, scheduled.text
    assert (same.status_code, same.json()) == (200, scheduled.json())
    assert scheduled.json()["status"] == "scheduled"
    assert_problem(
        await client.post(base, json=body | {"notice_days": 30}), 409, "idempotency-conflict"
    )
    assert (await ok(await client.get(base)))["status"] == "scheduled"
    cancelled = await ok(await client.delete(base))
    assert cancelled["status"] == "cancelled" and cancelled["cancelled_at"]
    assert await ok(await client.delete(base)) == cancelled
    assert (await ok(await client.get(base)))["status"] == "cancelled"
    # Nothing was taken: the date never came.
    assert await balance(client, slug) == 500
