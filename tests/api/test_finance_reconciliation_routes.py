"""Reconciliation over HTTP (``/programs/{slug}/finance/reconciliations``)
and ``coalition finance reconcile``: a run on books that tie, a tampered
balance found with its drill-down and paged, bad input answered with
problem+json and nothing written, the scopes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from api.modules import SCOPES
from tests.api.conftest import Client, assert_problem
from tests.api.test_cli import run


async def _member_wallet(client: Client, pool: asyncpg.Pool, slug: str) -> uuid.UUID:
    base = f"/programs/{slug}"
    enrolled = await client.post(f"{base}/members", json={"external_id": "m"})
    assert enrolled.status_code == 201, enrolled.text
    for n, points in enumerate((700, 300)):
        adjusted = await client.post(
            f"{base}/members/m/adjustments",
            json={"adjustment_id": f"welcome-{n}", "points": points, "reason": "welcome"},
        )
        assert adjusted.status_code in (200, 201), adjusted.text
    wallet = await pool.fetchval(
        "SELECT m.wallet_account_id FROM members m JOIN programs p ON p.id = m.program_id"
        " WHERE p.slug = $1 AND m.external_id = 'm'",
        slug,
    )
    assert isinstance(wallet, uuid.UUID)
    return wallet


@pytest.fixture
async def tampered_wallet(
    client: Client, pool: asyncpg.Pool, program: str
) -> AsyncIterator[uuid.UUID]:
    """The member's wallet with 5 more posted credits than its transfers
    give, put back afterwards (other tests check every ledger)."""
    wallet = await _member_wallet(client, pool, program)
    await pool.execute(
        "UPDATE accounts SET credits_posted = credits_posted + 5 WHERE id = $1", wallet
    )
    yield wallet
    await pool.execute(
        "UPDATE accounts SET credits_posted = credits_posted - 5 WHERE id = $1", wallet
    )


async def _written(pool: asyncpg.Pool, slug: str) -> tuple[Any, ...]:
    """All that a reconciliation route may write for the program."""
    program_id = await pool.fetchval("SELECT id FROM programs WHERE slug = $1", slug)
    runs = await pool.fetchval(
        "SELECT count(*) FROM reconciliation_runs WHERE program_id = $1", program_id
    )
    differences = await pool.fetchval(
        "SELECT count(*) FROM reconciliation_differences WHERE program_id = $1", program_id
    )
    audit = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE subject LIKE $1", f"program:{slug}:%"
    )
    events = await pool.fetchval(
        "SELECT count(*) FROM outbox_events WHERE subject = $1", f"program:{program_id}"
    )
    return runs, differences, audit, events


async def test_a_run_on_books_that_tie_finds_nothing(
    client: Client, pool: asyncpg.Pool, program: str
) -> None:
    await _member_wallet(client, pool, program)
    base = f"/programs/{program}/finance/reconciliations"

    made = await client.post(base, json={})

    assert made.status_code == 201, made.text
    body = made.json()
    assert body["differences"] == [] and body["next_cursor"] is None
    run = body["run"]
    assert run["differences"] == 0
    assert run["checks"]["balances"]["checked"] >= 4
    today = datetime.now(UTC).date()
    assert run["last_day"] == today.isoformat()
    assert run["first_day"] == (today - timedelta(days=30)).isoformat()
    listed = await client.get(base)
    assert listed.status_code == 200, listed.text
    assert [r["id"] for r in listed.json()["items"]] == [run["id"]]
    shown = await client.get(f"{base}/{run['id']}")
    assert shown.status_code == 200, shown.text
    assert shown.json() == body


async def test_a_tampered_balance_is_found_and_its_differences_page(
    client: Client, pool: asyncpg.Pool, program: str, tampered_wallet: uuid.UUID
) -> None:
    base = f"/programs/{program}/finance/reconciliations"
    day = datetime.now(UTC).date()

    made = await client.post(
        base, json={"first_day": (day - timedelta(days=1)).isoformat(), "last_day": day.isoformat()}
    )

    assert made.status_code == 201, made.text
    body = made.json()
    assert body["run"]["first_day"] == (day - timedelta(days=1)).isoformat()
    [balance] = [d for d in body["differences"] if d["check"] == "balances"]
    assert balance["subject"] == f"account:{tampered_wallet}"
    assert (balance["measure"], balance["expected"], balance["found"], balance["difference"]) == (
        "credits_posted",
        1000,
        1005,
        5,
    )
    drill = balance["drill_down"]
    assert drill["balances"]["credits_posted"] == {"expected": 1000, "found": 1005, "difference": 5}
    assert drill["transfers_count"] == 2 and len(drill["transfers"]) == 2
    # Every transfer it names is the wallet's, readable through the ledger API.
    transfers = await client.get(f"/ledger/accounts/{tampered_wallet}/transfers")
    assert transfers.status_code == 200, transfers.text
    assert set(drill["transfers"]) <= {t["id"] for t in transfers.json()["transfers"]}
    # One difference a page, in the order found, all of them.
    run_id = body["run"]["id"]
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = await client.get(f"{base}/{run_id}", params=params)
        assert page.status_code == 200, page.text
        seen += page.json()["differences"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == body["differences"]
    assert len(seen) == body["run"]["differences"] >= 2


@pytest.mark.parametrize(
    "body",
    [
        {"first_day": "2026-12-10", "last_day": "2026-12-01"},
        {"first_day": "2024-01-01", "last_day": "2025-06-01"},
        {"last_day": "1800-01-01"},
        {"first_day": "not a day"},
        {"first_day": 20260101},
        {"window": 3},
        [],
    ],
    ids=["reversed", "too-long", "year", "not-a-day", "integer", "unknown-field", "array"],
)
async def test_bad_input_is_a_problem_and_writes_nothing(
    client: Client, pool: asyncpg.Pool, program: str, body: Any
) -> None:
    before = await _written(pool, program)

    refused = await client.post(f"/programs/{program}/finance/reconciliations", json=body)

    assert_problem(refused, 400, "validation-error")
    assert await _written(pool, program) == before


@pytest.mark.parametrize("first_day", ["2099-01-01", "2020-01-01"], ids=["future", "too-far"])
async def test_a_window_the_defaults_make_wrong_is_a_problem_and_writes_nothing(
    client: Client, pool: asyncpg.Pool, program: str, first_day: str
) -> None:
    before = await _written(pool, program)

    refused = await client.post(
        f"/programs/{program}/finance/reconciliations", json={"first_day": first_day}
    )

    body = assert_problem(refused, 422, "invalid-reconciliation-window")
    assert body["detail"].startswith("first_day: ")
    assert await _written(pool, program) == before


async def test_unknown_runs_cursors_and_programs_are_problems(
    client: Client, pool: asyncpg.Pool, program: str
) -> None:
    base = f"/programs/{program}/finance/reconciliations"
    made = await client.post(base, json={})
    assert made.status_code == 201, made.text
    before = await _written(pool, program)

    assert_problem(await client.get(f"{base}/{uuid.uuid4()}"), 404, "not-found")
    assert_problem(await client.get(f"{base}/not-a-uuid"), 404, "not-found")
    assert_problem(await client.get(base, params={"cursor": "!" * 22}), 400, "validation-error")
    assert_problem(await client.get(base, params={"limit": 0}), 400, "validation-error")
    nowhere = f"/programs/nowhere-{uuid.uuid4().hex[:8]}/finance/reconciliations"
    assert_problem(await client.post(nowhere, json={}), 404, "not-found")
    assert await _written(pool, program) == before


async def test_reading_needs_finance_read_and_running_finance_write(
    client: Client, pool: asyncpg.Pool, program: str
) -> None:
    keys = {}
    for scope in ("finance:read", "finance:write"):
        issued = await client.post(
            "/api-keys",
            json={
                "name": f"reconcile-{scope.replace(':', '-')}-{uuid.uuid4().hex[:6]}",
                "scopes": [scope],
            },
        )
        assert issued.status_code == 201, issued.text
        keys[scope] = {"Authorization": f"Bearer {issued.json()['key']}"}
    base = f"/programs/{program}/finance/reconciliations"
    before = await _written(pool, program)

    assert_problem(await client.post(base, json={}, headers=keys["finance:read"]), 403, "forbidden")
    assert await _written(pool, program) == before
    assert (await client.get(base, headers=keys["finance:read"])).status_code == 200
    assert_problem(await client.get(base, headers=keys["finance:write"]), 403, "forbidden")
    made = await client.post(base, json={}, headers=keys["finance:write"])
    assert made.status_code == 201, made.text
    assert "finance:write" in SCOPES


def test_the_command_prints_the_differences_and_exits_1(
    database_url: str, program: str, tampered_wallet: uuid.UUID
) -> None:
    found = run(["finance", "reconcile", "--program", program], DATABASE_URL=database_url)

    assert found.exit_code == 1, found.output
    lines = found.output.splitlines()
    assert lines[0].startswith(f"finance: {program} reconciliation ")
    assert (
        f"{program}  balances  account:{tampered_wallet}  credits_posted: expected 1000,"
        " found 1005 (difference +5)"
    ) in lines
    assert f"    all of them: GET /ledger/accounts/{tampered_wallet}/transfers" in lines


@pytest.fixture
async def tied_wallet(client: Client, pool: asyncpg.Pool, program: str) -> uuid.UUID:
    return await _member_wallet(client, pool, program)


def _written_now(database_url: str, slug: str) -> tuple[Any, ...]:
    async def read() -> tuple[Any, ...]:
        pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
        assert pool is not None
        try:
            return await _written(pool, slug)
        finally:
            await pool.close()

    return asyncio.run(read())


def test_the_command_on_books_that_tie_exits_0_and_refuses_bad_input(
    database_url: str, program: str, tied_wallet: uuid.UUID
) -> None:
    clean = run(["finance", "reconcile", "--program", program], DATABASE_URL=database_url)

    assert clean.exit_code == 0, clean.output
    assert "0 differences" in clean.output
    before = _written_now(database_url, program)
    unknown = run(["finance", "reconcile", "--program", "nowhere-x"], DATABASE_URL=database_url)
    reversed_window = run(
        [
            "finance",
            "reconcile",
            "--program",
            program,
            "--first-day",
            "2026-12-10",
            "--last-day",
            "2026-12-01",
        ],
        DATABASE_URL=database_url,
    )
    future = run(
        ["finance", "reconcile", "--program", program, "--first-day", "2099-01-01"],
        DATABASE_URL=database_url,
    )
    for refused in (unknown, reversed_window, future):
        assert refused.exit_code == 2, refused.output
        [line] = refused.output.strip().splitlines()
        assert line.startswith("coalition: error: ")
    assert _written_now(database_url, program) == before
