"""Every registered job runs once on demand: from the command line
(``coalition jobs list``, ``coalition jobs run``) and by the operator API
(``POST /jobs/{name}/runs``)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from click.testing import Result
from litestar.testing import AsyncTestClient

from api import modules
from api.app import create_app
from api.settings import Settings
from core.modules import Job, JobContext
from tests.api.conftest import (
    ADMIN_TOKEN,
    AUTH,
    Client,
    assert_problem,
    open_program,
    publish_now,
    purchase,
)
from tests.api.test_cli import run


async def balance(client: Client, slug: str, member: str) -> dict[str, Any]:
    response = await client.get(f"/programs/{slug}/members/{member}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["balance"]
    return found


async def earning(client: Client, slug: str, member: str, amount_minor: int) -> None:
    enrolled = await client.post(f"/programs/{slug}/members", json={"external_id": member})
    assert enrolled.status_code == 201, enrolled.text
    bought = await client.post(
        f"/programs/{slug}/purchases", json=purchase(f"J-{uuid.uuid4()}", amount_minor, member)
    )
    assert bought.status_code == 201, bought.text


@pytest.mark.parametrize("args", [["jobs"], ["jobs", "list"], ["jobs", "run"]], ids=" ".join)
def test_the_jobs_commands_have_help(args: list[str]) -> None:
    result = run([*args, "--help"])

    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")


def test_jobs_list_shows_every_job_of_the_modules() -> None:
    result = run(["jobs", "list"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == sorted(modules.JOBS)
    for line in lines:
        job = modules.JOBS[line.split()[0]]
        assert f"every {job.every:g} s" in line and job.summary in line


def one_line_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("coalition: error: ")
    return line


def test_an_unknown_job_is_one_line_naming_the_known_ones() -> None:
    line = one_line_error(run(["jobs", "run", "settle-everything"]))

    assert "settle-everything" in line
    for name in modules.JOBS:
        assert name in line


@pytest.mark.parametrize("now", ["yesterday", "2026-12-01T00:00:00"])
def test_a_clock_that_is_not_a_moment_is_one_line(now: str) -> None:
    assert "--now" in one_line_error(run(["jobs", "run", "drain-outbox", "--now", now]))


async def test_jobs_run_settles_what_is_due_by_its_clock(private_database: str) -> None:
    """A purchase's return window ends tomorrow: a run now settles nothing,
    a run with --now after the window settles it."""
    app = create_app(
        Settings(admin_token=ADMIN_TOKEN, sweep_interval=0), database_url=private_database
    )
    async with AsyncTestClient(app=app) as client:
        client.headers.update(AUTH)
        slug = "window"
        opened = await client.post(
            "/programs",
            json={
                "slug": slug,
                "name": "Window",
                "currency": "ZAR",
                "point_value_minor": "1",
                "return_window_days": 1,
            },
        )
        assert opened.status_code == 201, opened.text
        drafted = await client.post(
            f"/programs/{slug}/rules", json={"rules": {"points_per_unit": "1"}}
        )
        assert drafted.status_code == 201, drafted.text
        await publish_now(client, slug, 1)
        await earning(client, slug, "kim", 4200)
        assert (await balance(client, slug, "kim"))["pending"] == 42

        def settle(*args: str) -> Result:
            return run(["jobs", "run", "settle-due-earnings", *args], DATABASE_URL=private_database)

        now = await asyncio.to_thread(settle)
        assert now.exit_code == 0, now.output
        assert now.stdout.startswith("jobs run: settle-due-earnings did 0 ")
        assert (await balance(client, slug, "kim"))["pending"] == 42

        later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
        settled = await asyncio.to_thread(settle, "--now", later)
        assert settled.exit_code == 0, settled.output
        assert settled.stdout == f"jobs run: settle-due-earnings did 1 (as of {later})\n"
        after = await balance(client, slug, "kim")
        assert (after["available"], after["pending"]) == (42, 0)


async def test_an_operator_runs_a_due_settlement(client: Client, pool: asyncpg.Pool) -> None:
    slug = await open_program(client)  # no return window: earnings are due at once
    await earning(client, slug, "lee", 2500)
    before = await balance(client, slug, "lee")
    assert (before["available"], before["pending"]) == (0, 25)

    response = await client.post("/jobs/settle-due-earnings/runs")

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["job"] == "settle-due-earnings"
    assert answer["done"] >= 1  # others of the shared database may be due too
    ran_at = datetime.fromisoformat(answer["ran_at"])
    assert abs(datetime.now(UTC) - ran_at) < timedelta(minutes=1)
    after = await balance(client, slug, "lee")
    assert (after["available"], after["pending"]) == (25, 0)
    audited = await pool.fetchrow(
        "SELECT actor, details FROM audit_events WHERE action = 'job.run'"
        " AND subject = 'job:settle-due-earnings' ORDER BY occurred_at DESC LIMIT 1"
    )
    assert audited is not None and audited["actor"] == "admin"


async def test_an_unknown_job_is_404_naming_the_known_ones(client: Client) -> None:
    body = assert_problem(await client.post("/jobs/settle-everything/runs"), 404, "not-found")

    for name in modules.JOBS:
        assert name in body["detail"]


async def test_running_a_job_needs_the_jobs_run_scope(client: Client) -> None:
    issued = await client.post(
        "/api-keys", json={"name": f"no-jobs-{uuid.uuid4().hex[:8]}", "scopes": ["ledger:read"]}
    )
    assert issued.status_code == 201, issued.text
    headers = {"Authorization": f"Bearer {issued.json()['key']}"}

    refused = await client.post("/jobs/drain-outbox/runs", headers=headers)

    assert_problem(refused, 403, "forbidden")
    assert "jobs:run" in refused.json()["detail"]
    runner = await client.post(
        "/api-keys", json={"name": f"jobs-{uuid.uuid4().hex[:8]}", "scopes": ["jobs:run"]}
    )
    headers = {"Authorization": f"Bearer {runner.json()['key']}"}
    assert (await client.post("/jobs/drain-outbox/runs", headers=headers)).status_code == 200


async def test_a_job_that_fails_answers_a_problem(
    client: Client, monkeypatch: pytest.MonkeyPatch, pool: asyncpg.Pool
) -> None:
    async def broken(context: JobContext) -> int:
        raise RuntimeError("the job's own bug")

    monkeypatch.setitem(
        modules.JOBS, "broken", Job(name="broken", summary="Fails.", run=broken, every=60.0)
    )
    audited = await pool.fetchval("SELECT count(*) FROM audit_events WHERE subject = 'job:broken'")

    body = assert_problem(await client.post("/jobs/broken/runs"), 500, "job-failed")

    assert "broken" in body["detail"] and "bug" not in body["detail"]
    after = await pool.fetchval("SELECT count(*) FROM audit_events WHERE subject = 'job:broken'")
    assert after == audited


def test_ledger_expire_runs_the_ledger_job(database_url: str) -> None:
    result = run(["ledger", "expire"], DATABASE_URL=database_url)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ledger expire: ")
