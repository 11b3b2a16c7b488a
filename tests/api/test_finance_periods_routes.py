"""The period close's routes (``/programs/{slug}/finance/periods``), the
adjustment's ``corrects``, and ``coalition finance close|reopen|periods``."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from api.database import sqlalchemy_url
from core import calendar
from core.principal import system
from ledger import Ledger
from ledger.connection import create_pool
from rewards.programs import ProgramSpec, open_program
from tests.api.conftest import Client, assert_problem
from tests.api.test_cli import run

ZONE = "Europe/London"
_slugs = itertools.count(1)


def _months(now: datetime) -> list[str]:
    """Labels of the start month (three months back) to the current one."""
    current, _ = calendar.local_month(now, ZONE)
    labels = []
    for n in (-3, -2, -1, 0):
        local = calendar.add_months(current, n, ZONE).astimezone(calendar.time_zone(ZONE))
        labels.append(f"{local.year:04d}-{local.month:02d}")
    return labels


def _started_at(now: datetime) -> datetime:
    current, _ = calendar.local_month(now, ZONE)
    return calendar.add_months(current, -3, ZONE) + timedelta(days=2)


async def _program(client: Client) -> str:
    slug = f"closing-{next(_slugs)}-{uuid.uuid4().hex[:6]}"
    spec = {
        "slug": slug,
        "name": "Closing shop",
        "currency": "GBP",
        "point_value_minor": "1",
        "time_zone": ZONE,
        "started_at": _started_at(datetime.now(UTC)).isoformat(),
    }
    opened = await client.post("/programs", json=spec)
    assert opened.status_code == 201, opened.text
    member = await client.post(f"/programs/{slug}/members", json={"external_id": "m"})
    assert member.status_code == 201, member.text
    return slug


async def _written(pool: asyncpg.Pool, slug: str) -> tuple[Any, ...]:
    """All that a period route may write for the program."""
    program = await pool.fetchrow("SELECT id, ledger_id FROM programs WHERE slug = $1", slug)
    assert program is not None
    rows = await pool.fetch(
        "SELECT to_jsonb(p)::text FROM finance_periods p WHERE program_id = $1 ORDER BY month",
        program["id"],
    )
    audit = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE subject LIKE $1", f"program:{slug}:%"
    )
    boundary = await pool.fetchval(
        "SELECT closed_through FROM ledgers WHERE id = $1", program["ledger_id"]
    )
    transfers = await pool.fetchval(
        "SELECT count(*) FROM transfers WHERE ledger = $1", program["ledger_id"]
    )
    return tuple(rows), audit, boundary, transfers


async def test_close_list_and_reopen(client: Client, pool: asyncpg.Pool) -> None:
    slug = await _program(client)
    m0, m1, m2, current = _months(datetime.now(UTC))
    base = f"/programs/{slug}/finance/periods"

    listed = await client.get(base)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert [(p["month"], p["status"], p["ended"]) for p in body["periods"]] == [
        (m0, "open", True),
        (m1, "open", True),
        (m2, "open", True),
        (current, "open", False),
    ]
    assert (body["next_to_close"], body["closed_through"]) == (m0, None)

    closed = await client.post(f"{base}/{m0}/close")
    assert closed.status_code == 200, closed.text
    assert closed.json()["changed"] is True
    assert closed.json()["period"]["status"] == "closed"
    again = await client.post(f"{base}/{m0}/close")
    assert (again.status_code, again.json()["changed"]) == (200, False)
    assert (await client.post(f"{base}/{m1}/close")).status_code == 200

    reopened = await client.post(f"{base}/{m0}/reopen", json={"reason": "restated revenue"})
    assert reopened.status_code == 200, reopened.text
    assert [p["month"] for p in reopened.json()["reopened"]] == [m0, m1]
    assert reopened.json()["closed_through"] is not None  # the instant before m0
    listed = (await client.get(base)).json()
    assert [p["status"] for p in listed["periods"]] == ["open"] * 4
    assert listed["periods"][0]["reopen_reason"] == "restated revenue"
    lines = await pool.fetch(
        "SELECT action, details->>'reason' AS reason FROM audit_events WHERE subject LIKE $1"
        " ORDER BY occurred_at, id",
        f"program:{slug}:finance:period:%",
    )
    assert [(r["action"], r["reason"]) for r in lines] == [
        ("finance.period.close", None),
        ("finance.period.close", None),
        ("finance.period.reopen", "restated revenue"),
    ]


@pytest.mark.parametrize(
    ("action", "month", "body", "status", "slug"),
    [
        ("close", "2026-13", None, 422, "invalid-month"),
        ("close", "last-month", None, 422, "invalid-month"),
        ("close", "2026-1", None, 422, "invalid-month"),
        ("close", "1999-12", None, 422, "period-before-program"),
        ("close", "{current}", None, 422, "period-not-ended"),
        ("close", "9998-12", None, 422, "period-not-ended"),
        ("close", "{m1}", None, 409, "period-out-of-order"),
        ("reopen", "2026-13", {"reason": "why not"}, 422, "invalid-month"),
        ("reopen", "{m0}", {"reason": "no"}, 400, "validation-error"),
        ("reopen", "{m0}", {"reason": "why\u0000not"}, 400, "validation-error"),
        ("reopen", "{m0}", {"reason": "ok then", "extra": 1}, 400, "validation-error"),
        ("reopen", "{m0}", None, 400, "validation-error"),
        ("reopen", "{m0}", [], 400, "validation-error"),
    ],
)
async def test_bad_input_is_a_problem_and_writes_nothing(
    client: Client,
    pool: asyncpg.Pool,
    action: str,
    month: str,
    body: Any,
    status: int,
    slug: str,
) -> None:
    program = await _program(client)
    m0, m1, _, current = _months(datetime.now(UTC))
    month = month.format(m0=m0, m1=m1, current=current)
    before = await _written(pool, program)
    url = f"/programs/{program}/finance/periods/{month}/{action}"
    answer = await client.post(url, json=body) if body is not None else await client.post(url)
    assert_problem(answer, status, slug)
    assert await _written(pool, program) == before


async def test_the_ledger_refuses_a_movement_dated_in_a_closed_month(
    client: Client, pool: asyncpg.Pool
) -> None:
    slug = await _program(client)
    m0 = _months(datetime.now(UTC))[0]
    accounts = await pool.fetchrow(
        "SELECT p.issuance_account_id AS issuance, m.wallet_account_id AS wallet, p.ledger_id"
        " FROM programs p JOIN members m ON m.program_id = p.id"
        " WHERE p.slug = $1 AND m.external_id = 'm'",
        slug,
    )
    assert accounts is not None
    in_m0 = (_started_at(datetime.now(UTC)) + timedelta(days=1)).isoformat()

    def transfer(amount: int, **fields: Any) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "debit_account_id": str(accounts["issuance"]),
            "credit_account_id": str(accounts["wallet"]),
            "amount": amount,
            "ledger": accounts["ledger_id"],
            "code": 7,
            **fields,
        }

    earned = transfer(50, effective_at=in_m0)
    first = await client.post("/ledger/transfers", json={"transfers": [earned]})
    assert first.json()["results"][0]["result"] == "ok", first.text
    assert (await client.post(f"/programs/{slug}/finance/periods/{m0}/close")).status_code == 200

    late = transfer(5, effective_at=in_m0)
    refused = await client.post("/ledger/transfers", json={"transfers": [late, transfer(1)]})
    assert [r["result"] for r in refused.json()["results"]] == [
        "business_time_in_closed_period",
        "ok",
    ]

    # A correction posts now, in the open period, naming what it corrects.
    adjustments = f"/programs/{slug}/members/m/adjustments"
    unknown = {
        "adjustment_id": "c-0",
        "points": -5,
        "reason": "typo",
        "corrects": str(uuid.uuid4()),
    }
    before = await _written(pool, slug)
    assert_problem(
        await client.post(adjustments, json=unknown), 422, "corrected-transfer-not-found"
    )
    assert await _written(pool, slug) == before
    malformed = {**unknown, "corrects": "not-a-uuid"}
    assert_problem(await client.post(adjustments, json=malformed), 400, "validation-error")
    fix = {
        "adjustment_id": "c-1",
        "points": -5,
        "reason": "over-credited",
        "corrects": earned["id"],
    }
    made = await client.post(adjustments, json=fix)
    assert made.status_code == 201, made.text
    row = await pool.fetchrow(
        "SELECT code, metadata, effective_at FROM transfers"
        " WHERE ledger = $1 AND metadata->>'corrects' = $2",
        accounts["ledger_id"],
        earned["id"],
    )
    assert row is not None
    assert (row["code"], row["effective_at"]) == (300, None)


async def test_reading_takes_finance_read_and_closing_finance_write(
    client: Client, pool: asyncpg.Pool
) -> None:
    slug = await _program(client)
    m0 = _months(datetime.now(UTC))[0]
    issued = await client.post(
        "/api-keys",
        json={"name": f"reader-{uuid.uuid4().hex[:8]}", "scopes": ["finance:read"]},
    )
    assert issued.status_code == 201, issued.text
    reader = {"Authorization": f"Bearer {issued.json()['key']}"}
    assert (
        await client.get(f"/programs/{slug}/finance/periods", headers=reader)
    ).status_code == 200
    before = await _written(pool, slug)
    refused = await client.post(f"/programs/{slug}/finance/periods/{m0}/close", headers=reader)
    assert_problem(refused, 403, "forbidden")
    assert await _written(pool, slug) == before


# -- the command line ---------------------------------------------------------


async def _open(url: str, slug: str) -> None:
    engine = create_async_engine(sqlalchemy_url(url), pool_size=1, max_overflow=0)
    pool = await create_pool(url, min_size=1, max_size=2)
    ledger = Ledger(pool)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            spec = {
                "slug": slug,
                "name": "CLI shop",
                "currency": "GBP",
                "point_value_minor": Decimal(1),
                "time_zone": ZONE,
                "started_at": _started_at(datetime.now(UTC)),
            }
            await open_program(
                session, ledger, msgspec.convert(spec, ProgramSpec), principal=system("test")
            )
            await session.commit()
    finally:
        await ledger.close()
        await pool.close()
        await engine.dispose()


def test_the_commands_answer_in_one_plain_line(database_url: str) -> None:
    slug = f"cli-closing-{uuid.uuid4().hex[:8]}"
    asyncio.run(_open(database_url, slug))
    m0, m1, _, _ = _months(datetime.now(UTC))

    closed = run(["finance", "close", "--program", slug, "--month", m0], DATABASE_URL=database_url)
    assert closed.exit_code == 0, closed.output
    [line] = closed.stdout.splitlines()
    assert line.startswith(f"finance: {slug} {m0} closed; the ledger is closed through ")

    listed = run(["finance", "periods", "--program", slug], DATABASE_URL=database_url)
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"{m0}  closed") and lines[1].startswith(f"{m1}  open")

    for args in (
        ["close", "--program", slug, "--month", "2026-13"],
        ["close", "--program", slug, "--month", _months(datetime.now(UTC))[2]],
        ["close", "--program", "no-such-program", "--month", m1],
        ["reopen", "--program", slug, "--month", m0, "--reason", "no"],
    ):
        failed = run(["finance", *args], DATABASE_URL=database_url)
        assert failed.exit_code == 1, failed.output
        assert len(failed.stderr.splitlines()) == 1, failed.stderr
        assert failed.stderr.startswith("coalition: error: ")
    again = run(["finance", "periods", "--program", slug], DATABASE_URL=database_url)
    assert again.stdout == listed.stdout  # nothing written

    reopened = run(
        ["finance", "reopen", "--program", slug, "--month", m0, "--reason", "a late invoice"],
        DATABASE_URL=database_url,
    )
    assert reopened.exit_code == 0, reopened.output
    assert reopened.stdout.startswith(f"finance: {slug} reopened {m0}; ")
