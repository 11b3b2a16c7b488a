"""The analytics routes over HTTP: a member's value, curves, ROI and
partner profitability answered for a program; a bad month or moment
answered 422 invalid-report-date; the scope analytics:read required."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.api.conftest import assert_problem, open_program, purchase

Client = AsyncTestClient[Litestar]


async def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


async def test_analytics_of_a_program(client: Client) -> None:
    slug = await open_program(client)
    base = f"/programs/{slug}/analytics"
    await client.post(f"/programs/{slug}/members", json={"external_id": "ann"})
    made = await client.post(f"/programs/{slug}/purchases", json=purchase("o-1", 4_000, "ann"))
    assert made.status_code in (200, 201, 202), made.text
    value = await ok(await client.get(f"{base}/members/ann/value"))
    assert value["revenue_minor"] == 4_000
    assert value["relationship_value_minor"] == 4_000 - value["points_cost_minor"]
    month = datetime.now(UTC).strftime("%Y-%m")
    roi = await ok(await client.get(f"{base}/program-roi", params={"period": month}))
    assert roi["member_revenue_minor"] == 4_000
    curves = await ok(await client.get(f"{base}/redemption-curves", params={"period": month}))
    assert curves["period"] == month
    assert (await ok(await client.get(f"{base}/partner-profitability", params={"period": month})))[
        "partners"
    ] == []
    assert_problem(await client.get(f"{base}/members/nobody/value"), 404, "not-found")
    assert_problem(await client.get(f"{base}/campaigns/{uuid.uuid4()}/roi"), 404, "not-found")


async def test_bad_months_and_moments_answer_422(client: Client) -> None:
    slug = await open_program(client)
    base = f"/programs/{slug}/analytics"
    for month in ("2026-13", "26-01", "x"):
        for path in ("program-roi", "redemption-curves", "partner-profitability"):
            response = await client.get(f"{base}/{path}", params={"period": month})
            assert_problem(response, 422, "invalid-report-date")
    for moment in ("yesterday", "2026-01-01T00:00:00", "0001-01-01T00:00:00Z"):
        response = await client.get(f"{base}/members/m/value", params={"as_of": moment})
        assert_problem(response, 422, "invalid-report-date")


async def test_the_scope_analytics_read_is_required(client: Client) -> None:
    slug = await open_program(client)
    issued = await client.post(
        "/api-keys",
        json={
            "name": f"no-analytics-{uuid.uuid4().hex[:6]}",
            "scopes": ["finance:read"],
            "program": slug,
        },
    )
    key = {"Authorization": f"Bearer {issued.json()['key']}"}
    month = datetime.now(UTC).strftime("%Y-%m")
    response = await client.get(
        f"/programs/{slug}/analytics/program-roi", params={"period": month}, headers=key
    )
    assert_problem(response, 403, "forbidden")
