"""The exchange-rate routes and the journal's use of them: a rate recorded
(201), the same again found (200, nothing written), another rate for the
day 409, bad input 422 problem+json with nothing written, the list paged
and filtered, the scopes, and the journal answering 409 (before any byte)
for a currency with no rate, then streaming once there is one. The
command line: add and list, bad input one plain line, nothing written."""

from __future__ import annotations

import csv
import io
import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from ledger import Ledger
from partners.money_ledger import money_ledger
from tests.api.conftest import PROBLEM_JSON, Client, assert_problem, open_program
from tests.partners.settlement_helpers import label as month_label


async def written(pool: asyncpg.Pool, slug: str) -> dict[str, Any]:
    program = await pool.fetchval("SELECT id FROM programs WHERE slug = $1", slug)
    return {
        "rates": await pool.fetch(
            "SELECT to_jsonb(t)::text FROM finance_exchange_rates t WHERE program_id = $1"
            " ORDER BY 1",
            program,
        ),
        "audit": await pool.fetchval(
            "SELECT count(*) FROM audit_events WHERE subject LIKE $1", f"program:{slug}%"
        ),
    }


EURO = {"currency": "EUR", "rate": "20.125", "effective_on": "2025-01-01"}


async def test_a_rate_is_recorded_once_and_listed(client: Client, pool: asyncpg.Pool) -> None:
    slug = await open_program(client)
    base = f"/programs/{slug}/finance/exchange-rates"
    made = await client.post(base, json=EURO)
    assert made.status_code == 201, made.text
    shown = made.json()
    assert (shown["currency"], shown["functional_currency"], shown["rate"]) == (
        "EUR",
        "ZAR",
        "20.125",
    )
    after = await written(pool, slug)
    again = await client.post(base, json=EURO | {"rate": "20.1250"})
    assert (again.status_code, again.json()["id"]) == (200, shown["id"])
    assert await written(pool, slug) == after
    body = assert_problem(
        await client.post(base, json=EURO | {"rate": "21"}), 409, "already-exists"
    )
    assert "2025-01-01" in body["detail"]
    assert await written(pool, slug) == after
    later = await client.post(base, json=EURO | {"rate": 21, "effective_on": "2025-02-01"})
    assert later.status_code == 201, later.text
    dollar = await client.post(base, json=EURO | {"currency": "USD", "rate": "18"})
    assert dollar.status_code == 201, dollar.text

    first = (await client.get(base, params={"limit": 2})).json()
    assert [item["currency"] for item in first["items"]] == ["USD", "EUR"]
    rest = (await client.get(base, params={"cursor": first["next_cursor"]})).json()
    assert [item["rate"] for item in rest["items"]] == ["20.125"]
    assert rest["next_cursor"] is None
    euros = (await client.get(base, params={"currency": "EUR"})).json()["items"]
    assert [(item["rate"], item["effective_on"]) for item in euros] == [
        ("21", "2025-02-01"),
        ("20.125", "2025-01-01"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        EURO | {"currency": "XYZ"},
        EURO | {"currency": "ZAR"},  # the program's own
        EURO | {"currency": "eu"},
        EURO | {"rate": "0"},
        EURO | {"rate": "-1.5"},
        EURO | {"rate": "NaN"},
        EURO | {"rate": "1e40"},
        EURO | {"rate": "0.0000000000001"},
        EURO | {"effective_on": "2025-02-30"},
        EURO | {"unknown": 1},
        {"currency": "EUR"},
        [],
    ],
)
async def test_bad_rates_are_refused_and_write_nothing(
    client: Client, pool: asyncpg.Pool, body: Any
) -> None:
    slug = await open_program(client)
    before = await written(pool, slug)
    response = await client.post(f"/programs/{slug}/finance/exchange-rates", json=body)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert await written(pool, slug) == before


async def test_reading_needs_finance_read_and_recording_finance_write(
    client: Client, pool: asyncpg.Pool
) -> None:
    slug = await open_program(client)
    keys = {}
    for scope in ("finance:read", "finance:write"):
        issued = await client.post(
            "/api-keys",
            json={
                "name": f"rates-{scope.replace(':', '-')}-{uuid.uuid4().hex[:6]}",
                "scopes": [scope],
            },
        )
        assert issued.status_code == 201, issued.text
        keys[scope] = {"Authorization": f"Bearer {issued.json()['key']}"}
    base = f"/programs/{slug}/finance/exchange-rates"
    before = await written(pool, slug)
    assert_problem(
        await client.post(base, json=EURO, headers=keys["finance:read"]), 403, "forbidden"
    )
    assert await written(pool, slug) == before
    assert (await client.get(base, headers=keys["finance:read"])).status_code == 200
    assert (await client.post(base, json=EURO, headers=keys["finance:write"])).status_code == 201


async def test_the_journal_needs_a_rate_for_each_other_currency(
    client: Client, session: AsyncSession, ledger: Ledger
) -> None:
    slug = await open_program(client)
    program = await session.scalar(select(Program).where(Program.slug == slug))
    assert program is not None
    await money_ledger(session, ledger, program, "EUR")
    await session.commit()
    period = month_label(1)
    journal = f"/programs/{slug}/finance/journal"
    for export_format in ("csv", "parquet"):
        body = assert_problem(
            await client.get(journal, params={"period": period, "format": export_format}),
            409,
            "exchange-rate-missing",
        )
        assert body["detail"].startswith("no exchange rate for EUR on ")
    recorded = await client.post(
        f"/programs/{slug}/finance/exchange-rates",
        json=EURO | {"effective_on": f"{period}-01"},
    )
    assert recorded.status_code == 201, recorded.text
    streamed = await client.get(journal, params={"period": period})
    assert streamed.status_code == 200, streamed.text
    assert next(csv.reader(io.StringIO(streamed.text)))[:3] == [
        "journal_id",
        "accounting_date",
        "period",
    ]
