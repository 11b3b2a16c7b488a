"""A program's calendar and settings over HTTP: the time zone at open, the
settings changed later (audited, bad values refused with nothing written),
and a history imported under a first rule version that starts in the past."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.routes import HTTPRoute

from api.routes.paths import path_program
from tests.api.conftest import Client, assert_problem, purchase


def _spec(slug: str, **fields: Any) -> dict[str, Any]:
    return {"slug": slug, "name": "Calendar", "currency": "ZAR", "point_value_minor": "1", **fields}


def _slug() -> str:
    return f"calendar-{uuid.uuid4().hex[:10]}"


async def test_an_unknown_time_zone_is_refused_naming_the_field(
    client: Client, pool: asyncpg.Pool
) -> None:
    slug = _slug()
    response = await client.post("/programs", json=_spec(slug, time_zone="Mars/Olympus_Mons"))
    body = assert_problem(response, 422, "unknown-time-zone")
    assert body["detail"].startswith("time_zone:"), body
    # Refused before anything was written: no row, no ledger.
    assert await pool.fetchval("SELECT count(*) FROM programs WHERE slug = $1", slug) == 0
    assert (
        await pool.fetchval("SELECT count(*) FROM ledgers WHERE name = $1", f"program:{slug}") == 0
    )
    # A path into the zone files is no zone either.
    dotted = await client.post("/programs", json=_spec(slug, time_zone="../zoneinfo/UTC"))
    assert_problem(dotted, 422, "unknown-time-zone")


async def test_settings_at_open_and_changed_later(client: Client, pool: asyncpg.Pool) -> None:
    slug = _slug()
    spec = _spec(
        slug,
        time_zone="Africa/Johannesburg",
        tier_basis="points",
        tier_window="anniversary",
        tier_grace_days=7,
        gift_daily_limit=500,
    )
    opened = await client.post("/programs", json=spec)
    assert opened.status_code == 201, opened.text
    assert opened.json()["time_zone"] == "Africa/Johannesburg"
    shown = (await client.get(f"/programs/{slug}/settings")).json()
    assert {k: shown[k] for k in ("tier_basis", "tier_window", "tier_grace_days")} == {
        "tier_basis": "points",
        "tier_window": "anniversary",
        "tier_grace_days": 7,
    }
    assert (shown["gift_daily_limit"], shown["return_window_days"]) == (500, 30)
    # The same open again is a replay; another zone under the slug a conflict.
    again = await client.post("/programs", json=spec)
    assert again.status_code == 200, again.text
    other = await client.post("/programs", json=_spec(slug, time_zone="Europe/London"))
    assert (
        "time_zone" in assert_problem(other, 409, "program-exists-with-different-fields")["detail"]
    )

    changed = await client.patch(
        f"/programs/{slug}/settings",
        json={"time_zone": "America/New_York", "gift_daily_limit": 0, "return_window_days": 14},
    )
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert (after["time_zone"], after["gift_daily_limit"], after["return_window_days"]) == (
        "America/New_York",
        0,
        14,
    )
    assert after["tier_window"] == "anniversary"  # left out: kept
    assert (await client.get(f"/programs/{slug}")).json()["time_zone"] == "America/New_York"
    details = await pool.fetchval(
        "SELECT details FROM audit_events WHERE action = 'program.settings' AND subject = $1",
        f"program:{slug}",
    )
    assert details == {
        "time_zone": {"from": "Africa/Johannesburg", "to": "America/New_York"},
        "gift_daily_limit": {"from": 500, "to": 0},
        "return_window_days": {"from": 30, "to": 14},
    }
    # A change to the values it has changes nothing and writes no line.
    same = await client.patch(f"/programs/{slug}/settings", json={"gift_daily_limit": 0})
    assert same.status_code == 200, same.text
    lines = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'program.settings' AND subject = $1",
        f"program:{slug}",
    )
    assert lines == 1


async def test_bad_settings_change_nothing(client: Client, program: str) -> None:
    before = (await client.get(f"/programs/{program}/settings")).json()
    cases = [
        ({"time_zone": "Nowhere/Atlantis", "gift_daily_limit": 1}, 422, "unknown-time-zone"),
        ({"tier_grace_days": 366}, 400, "validation-error"),
        ({"tier_window": "fortnight"}, 400, "validation-error"),
        ({"grace": 3}, 400, "validation-error"),
        # The program's first version is published: its start is fixed.
        ({"started_at": "2020-01-01T00:00:00Z", "gift_daily_limit": 1}, 409, "program-start-fixed"),
    ]
    for body, status, slug in cases:
        response = await client.patch(f"/programs/{program}/settings", json=body)
        assert_problem(response, status, slug)
    assert (await client.get(f"/programs/{program}/settings")).json() == before
    missing = await client.patch("/programs/no-such-program/settings", json={"tier_grace_days": 1})
    assert_problem(missing, 404, "not-found")


async def test_a_history_is_imported_under_a_first_version_in_the_past(client: Client) -> None:
    slug = _slug()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    opened = await client.post(
        "/programs", json=_spec(slug, started_at=start.isoformat(), return_window_days=0)
    )
    assert opened.status_code == 201, opened.text
    assert datetime.fromisoformat(opened.json()["started_at"]) == start
    # Two versions: the second differs (an identical draft answers the first).
    for points in ("1", "2"):
        drafted = await client.post(
            f"/programs/{slug}/rules", json={"rules": {"points_per_unit": points}}
        )
        assert drafted.status_code == 201, drafted.text
    # Not before the program's start, even for the first version.
    early = await client.post(
        f"/programs/{slug}/rules/1/publish",
        json={"effective_from": (start - timedelta(seconds=1)).isoformat()},
    )
    assert "started_at" in assert_problem(early, 422, "publish-in-past")["detail"]
    published = await client.post(
        f"/programs/{slug}/rules/1/publish", json={"effective_from": start.isoformat()}
    )
    assert published.status_code == 200, published.text
    # The second version cannot start in the past: purchases were priced.
    second = await client.post(
        f"/programs/{slug}/rules/2/publish",
        json={"effective_from": (start + timedelta(days=30)).isoformat()},
    )
    assert "version 1 is published" in assert_problem(second, 422, "publish-in-past")["detail"]

    enrolled = await client.post(f"/programs/{slug}/members", json={"external_id": "m-1"})
    assert enrolled.status_code == 201, enrolled.text
    bought = await client.post(
        f"/programs/{slug}/purchases",
        json=purchase("H-1", 12_345, occurred_at=datetime(2024, 6, 1, 12, tzinfo=UTC).isoformat()),
    )
    assert bought.status_code == 201, bought.text
    assert (bought.json()["points"], bought.json()["rule_version"]) == (123, 1)


def test_every_program_route_looks_its_program_up_in_one_place(app: Litestar) -> None:
    """The handlers under /programs/{slug} take the program from the one
    provider (api.routes.paths), not the slug to look it up again: the
    tenant's filter and the 404 are the same everywhere. The purchase is
    the exception: the hot path reads programs from the app's cache."""
    seen = []
    for route in app.routes:
        if not (isinstance(route, HTTPRoute) and route.path.startswith("/programs/{slug")):
            continue
        for handler in route.route_handlers:
            if handler.handler_name in ("options_handler", "purchase"):
                continue
            parameters = handler.parsed_fn_signature.parameters
            provided = handler.resolve_dependencies().get("program")
            assert "slug" not in parameters, (route.path, handler.handler_name)
            assert "program" in parameters, (route.path, handler.handler_name)
            assert provided is not None and provided.dependency is path_program, route.path
            seen.append(handler.handler_name)
    assert {"show_settings", "change_settings", "return_"} <= set(seen)
