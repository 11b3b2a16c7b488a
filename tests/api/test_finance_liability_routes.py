"""The finance reads over HTTP: liability, roll-forward and trial balance as
JSON, CSV and Parquet; the point value changed through the settings; bad
input answered with problem+json and nothing written."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result
from litestar import Litestar

from api.cli import main
from api.settings import ENVIRONMENT
from core.codes import TransferCode
from ledger import Ledger, Transfer
from tests.api.conftest import PROBLEM_JSON, Client, assert_problem, count_writes

ZONE = "Africa/Johannesburg"
EARNED, SPENT = 900, 250


async def _program(client: Client, pool: asyncpg.Pool, ledger: Ledger) -> dict[str, Any]:
    """A program with a member who earned in January and spent in February."""
    slug = f"finance-{uuid.uuid4().hex[:10]}"
    opened = await client.post(
        "/programs",
        json={
            "slug": slug,
            "name": "Finance",
            "currency": "ZAR",
            "point_value_minor": "0.5",
            "time_zone": ZONE,
            "started_at": "2025-01-01T00:00:00+00:00",
        },
    )
    assert opened.status_code == 201, opened.text
    enrolled = await client.post(f"/programs/{slug}/members", json={"external_id": "m"})
    assert enrolled.status_code in (200, 201), enrolled.text
    row = await pool.fetchrow(
        "SELECT p.ledger_id, p.issuance_account_id, p.redemption_account_id, m.wallet_account_id"
        " FROM programs p JOIN members m ON m.program_id = p.id WHERE p.slug = $1",
        slug,
    )
    assert row is not None
    for debit, credit, amount, code, at in (
        (row["issuance_account_id"], row["wallet_account_id"], EARNED,
         TransferCode.PURCHASE_EARN, datetime(2025, 1, 15, tzinfo=UTC)),
        (row["wallet_account_id"], row["redemption_account_id"], SPENT,
         TransferCode.CATALOG_REDEMPTION, datetime(2025, 2, 15, tzinfo=UTC)),
    ):  # fmt: skip
        (outcome,) = await ledger.create_transfers(
            [
                Transfer(
                    id=uuid.uuid4(),
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=amount,
                    ledger=row["ledger_id"],
                    code=code,
                    effective_at=at,
                )
            ]
        )
        assert outcome.result == "ok", outcome
    return {"slug": slug, **dict(row)}


async def test_the_liability_as_json_csv_and_parquet(
    client: Client, pool: asyncpg.Pool, ledger: Ledger
) -> None:
    program = await _program(client, pool, ledger)
    base = f"/programs/{program['slug']}/finance/liability"

    answer = await client.get(base, params={"as_of": "2025-02-28", "by": "cohort"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    left = EARNED - SPENT
    assert (body["points"], body["value_minor"], body["point_value_minor"]) == (
        left,
        int(Decimal(left) * Decimal("0.5")),
        "0.500000",
    )
    assert body["lines"] == [
        {"group": "2025-01", "name": "", "points": left, "value_minor": body["value_minor"]}
    ]
    january = (await client.get(base, params={"as_of": "2025-01-31"})).json()
    assert january["points"] == EARNED

    as_csv = await client.get(base, params={"as_of": "2025-02-28", "by": "cohort", "format": "csv"})
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert "attachment" in as_csv.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(r["group"], int(r["points"]), int(r["value_minor"])) for r in rows] == [
        (line["group"], line["points"], line["value_minor"]) for line in body["lines"]
    ]

    as_parquet = await client.get(
        base, params={"as_of": "2025-02-28", "by": "cohort", "format": "parquet"}
    )
    assert as_parquet.headers["content-type"].startswith("application/vnd.apache.parquet")
    table = pq.read_table(io.BytesIO(as_parquet.content))
    assert table.column("points").to_pylist() == [line["points"] for line in body["lines"]]
    assert table.column("point_value_minor").to_pylist() == [Decimal("0.5")]
    # The same lines give the same bytes.
    again = await client.get(
        base, params={"as_of": "2025-02-28", "by": "cohort", "format": "parquet"}
    )
    assert again.content == as_parquet.content


async def test_the_roll_forward_and_the_trial_balance(
    client: Client, pool: asyncpg.Pool, ledger: Ledger
) -> None:
    program = await _program(client, pool, ledger)
    base = f"/programs/{program['slug']}/finance"

    month = (await client.get(f"{base}/roll-forward", params={"period": "2025-02"})).json()
    assert (month["opening"], month["closing"], month["difference"]) == (
        EARNED,
        EARNED - SPENT,
        0,
    )
    assert [(line["category"], line["points"]) for line in month["lines"]] == [("redeemed", -SPENT)]
    assert month["tie"]["tied"] is True
    days = await client.get(
        f"{base}/roll-forward",
        params={"first_day": "2025-01-01", "last_day": "2025-02-28", "format": "csv"},
    )
    assert days.status_code == 200, days.text
    rows = list(csv.DictReader(io.StringIO(days.text)))
    assert [(r["row"], r["kind"], int(r["points"]), r["difference"]) for r in rows] == [
        ("opening", "", 0, "0"),
        ("line", "earn", EARNED, "0"),
        ("line", "redemption", -SPENT, "0"),
        ("closing", "", EARNED - SPENT, "0"),
    ]

    balance = (await client.get(f"{base}/trial-balance", params={"as_of": "2025-02-28"})).json()
    assert balance["balanced"] is True
    assert balance["debits"] == balance["credits"] == EARNED + SPENT
    assert {line["account"]: line["balance"] for line in balance["lines"]} == {
        "issuance": EARNED,
        "redemption": -SPENT,
        "member_wallet": SPENT - EARNED,
    }
    money = await client.get(
        f"{base}/trial-balance", params={"as_of": "2025-02-28", "ledger": "money", "format": "csv"}
    )
    assert money.status_code == 200, money.text
    assert money.text.splitlines() == [
        "program,ledger,unit,as_of,account_code,account,gl_account,debits,credits,balance"
    ]


async def test_the_point_value_changes_through_the_settings(
    client: Client, pool: asyncpg.Pool, ledger: Ledger
) -> None:
    program = await _program(client, pool, ledger)
    settings = f"/programs/{program['slug']}/settings"

    changed = await client.patch(settings, json={"point_value_minor": "2"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["point_value_minor"] == "2.000000"
    today = datetime.now(UTC).date().isoformat()
    base = f"/programs/{program['slug']}/finance/liability"
    now = (await client.get(base, params={"as_of": today})).json()
    before = (await client.get(base, params={"as_of": "2025-02-28"})).json()
    assert (now["point_value_minor"], now["value_minor"]) == ("2.000000", 2 * (EARNED - SPENT))
    assert before["point_value_minor"] == "0.500000"

    audit = await pool.fetchval("SELECT count(*) FROM audit_events")
    refused = await client.patch(settings, json={"point_value_minor": "0.0000001"})
    assert refused.status_code in (400, 422), refused.text
    assert refused.headers["content-type"].startswith(PROBLEM_JSON)
    assert (await client.get(settings)).json()["point_value_minor"] == "2.000000"
    assert await pool.fetchval("SELECT count(*) FROM audit_events") == audit


@pytest.mark.parametrize(
    ("path", "params", "status", "slug"),
    [
        ("liability", {"as_of": "2025-02-30"}, 422, "invalid-report-date"),
        ("liability", {"as_of": "28/02/2025"}, 422, "invalid-report-date"),
        ("liability", {}, 400, "validation-error"),
        ("liability", {"as_of": "2025-02-28", "by": "planet"}, 400, "validation-error"),
        ("liability", {"as_of": "2025-02-28", "format": "xlsx"}, 400, "validation-error"),
        ("liability", {"as_of": "2" * 65}, 400, "validation-error"),
        ("roll-forward", {}, 422, "invalid-report-date"),
        ("roll-forward", {"period": "2025-13"}, 422, "invalid-report-date"),
        (
            "roll-forward",
            {"period": "2025-02", "first_day": "2025-02-01"},
            422,
            "invalid-report-date",
        ),
        (
            "roll-forward",
            {"first_day": "2025-03-01", "last_day": "2025-02-01"},
            422,
            "invalid-report-date",
        ),
        ("roll-forward", {"period": "2025-02", "partner": "nobody"}, 422, "unknown-partner"),
        ("roll-forward", {"period": "2025-02", "partner": "Not A Slug"}, 400, "validation-error"),
        ("trial-balance", {"as_of": "0000-01-01"}, 422, "invalid-report-date"),
        ("trial-balance", {"as_of": "2025-02-28", "ledger": "gold"}, 400, "validation-error"),
        ("trial-balance", {"as_of": "2025-02-28", "currency": "zar"}, 400, "validation-error"),
    ],
)
async def test_bad_input_is_a_problem_and_writes_nothing(
    client: Client,
    pool: asyncpg.Pool,
    ledger: Ledger,
    path: str,
    params: dict[str, str],
    status: int,
    slug: str,
) -> None:
    program = await _program(client, pool, ledger)
    writes = await count_writes(pool, program["ledger_id"])
    audit = await pool.fetchval("SELECT count(*) FROM audit_events")

    answer = await client.get(f"/programs/{program['slug']}/finance/{path}", params=params)

    assert_problem(answer, status, slug)
    assert await count_writes(pool, program["ledger_id"]) == writes
    assert await pool.fetchval("SELECT count(*) FROM audit_events") == audit


async def test_the_reads_take_the_finance_read_scope(
    client: Client, anonymous_client: Client, pool: asyncpg.Pool, ledger: Ledger
) -> None:
    program = await _program(client, pool, ledger)
    issued = await client.post(
        "/api-keys",
        json={"name": f"no-finance-{uuid.uuid4().hex[:8]}", "scopes": ["programs:read"]},
    )
    assert issued.status_code == 201, issued.text
    headers = {"Authorization": f"Bearer {issued.json()['key']}"}
    for path, params in (
        ("liability", {"as_of": "2025-02-28"}),
        ("roll-forward", {"period": "2025-02"}),
        ("trial-balance", {"as_of": "2025-02-28"}),
    ):
        url = f"/programs/{program['slug']}/finance/{path}"
        refused = await anonymous_client.get(url, params=params, headers=headers)
        assert_problem(refused, 403, "forbidden")
        assert (await anonymous_client.get(url, params=params)).status_code == 401


def test_the_document_lists_the_three_answers(app: Litestar) -> None:
    paths = app.openapi_schema.to_schema()["paths"]
    for path in ("liability", "roll-forward", "trial-balance"):
        ok = paths[f"/programs/{{slug}}/finance/{path}"]["get"]["responses"]["200"]
        assert set(ok["content"]) == {
            "application/json",
            "text/csv",
            "application/vnd.apache.parquet",
        }


@pytest.fixture
async def reported(client: Client, pool: asyncpg.Pool, ledger: Ledger) -> dict[str, Any]:
    return await _program(client, pool, ledger)


def test_the_commands_print_the_same_reports(
    database_url: str, reported: dict[str, Any], tmp_path: Path
) -> None:
    slug = reported["slug"]
    env = {"DATABASE_URL": database_url}

    text = _run(["finance", "liability", "--program", slug, "--as-of", "2025-02-28"], env)
    assert text.exit_code == 0, text.output
    assert f"{EARNED - SPENT} points" in text.stdout
    as_json = _run(
        ["finance", "liability", "--program", slug, "--as-of", "2025-02-28", "--by", "origin",
         "--format", "json"],
        env,
    )  # fmt: skip
    assert json.loads(as_json.stdout)["lines"][0]["group"] == "earn"
    parquet = tmp_path / "roll-forward.parquet"
    rolled = _run(
        ["finance", "roll-forward", "--program", slug, "--period", "2025-02", "--format",
         "parquet", "--output", str(parquet)],
        env,
    )  # fmt: skip
    assert rolled.exit_code == 0, rolled.output
    assert pq.read_table(parquet).column("points").to_pylist() == [EARNED, -SPENT, EARNED - SPENT]
    balance = _run(
        ["finance", "trial-balance", "--program", slug, "--as-of", "2025-02-28", "--format", "csv"],
        env,
    )
    assert balance.exit_code == 0, balance.output
    assert len(balance.stdout.splitlines()) == 1 + 3


@pytest.mark.parametrize(
    "args",
    [
        ["liability", "--as-of", "2025-02-30"],
        ["liability", "--as-of", "2025-02-28", "--by", "planet"],
        ["roll-forward", "--period", "2025-13"],
        ["roll-forward", "--first-day", "2025-03-01", "--last-day", "2025-02-01"],
        ["roll-forward", "--period", "2025-02", "--partner", "nobody"],
        ["trial-balance", "--as-of", "2025-02-28", "--currency", "zar"],
        ["trial-balance", "--as-of", "2025-02-28", "--ledger", "gold"],
        ["liability", "--as-of", "2025-02-28", "--format", "xlsx"],
    ],
)
def test_a_command_refuses_bad_input_in_one_line(
    database_url: str, reported: dict[str, Any], args: list[str]
) -> None:
    command, *options = args
    result = _run(["finance", command, "--program", reported["slug"], *options],
                  {"DATABASE_URL": database_url})  # fmt: skip
    assert result.exit_code != 0
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stdout == ""


def test_a_command_refuses_an_unknown_program(database_url: str) -> None:
    result = _run(
        ["finance", "liability", "--program", "no-such-program", "--as-of", "2025-02-28"],
        {"DATABASE_URL": database_url},
    )
    assert result.exit_code == 1
    assert "no-such-program" in result.stderr


def _run(args: list[str], env: dict[str, str]) -> Result:
    environment: dict[str, str | None] = dict.fromkeys(ENVIRONMENT)
    environment.update(env)
    return CliRunner().invoke(main, args, env=environment)
