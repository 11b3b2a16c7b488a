"""The revenue and journal routes: settings read and stored, a period
recognised once (201, then 200 replayed), the journal streamed as CSV and
Parquet with the same bytes each time, its connection given back however
its answer ends, and bad input answered with problem+json and nothing
written."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import pyarrow.parquet as pq
import pytest
from litestar import Litestar
from litestar.types import Message

from tests.api.conftest import ADMIN_TOKEN, PROBLEM_JSON, Client, assert_problem, open_program
from tests.partners.settlement_helpers import label as month_label
from tests.partners.settlement_helpers import months_back


async def writes(pool: asyncpg.Pool, slug: str) -> dict[str, Any]:
    program = await pool.fetchval("SELECT id FROM programs WHERE slug = $1", slug)
    found: dict[str, Any] = {}
    for table in (
        "revenue_settings",
        "revenue_periods",
        "breakage_estimates",
        "revenue_allocations",
        "revenue_recognitions",
    ):
        found[table] = await pool.fetch(
            f"SELECT to_jsonb(t)::text FROM {table} t WHERE program_id = $1 ORDER BY 1", program
        )
    found["audit"] = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE subject LIKE $1", f"program:{slug}%"
    )
    return found


async def test_settings_are_the_defaults_until_stored(client: Client, pool: asyncpg.Pool) -> None:
    slug = await open_program(client)
    base = f"/programs/{slug}/finance/revenue/settings"

    shown = (await client.get(base)).json()
    assert (shown["stored"], shown["rounding_policy"], shown["default_breakage_rate"]) == (
        False,
        "exact",
        "0.2",
    )
    body = {
        "rounding_policy": "ratio",
        "ratio_places": 3,
        "default_breakage_rate": "0.35",
        "gl_accounts": {"revenue:loyalty_revenue": "41000 Points revenue"},
    }
    stored = await client.put(base, json=body)
    assert stored.status_code == 200, stored.text
    assert stored.json() | {} == (await client.get(base)).json()
    assert (await client.get(base)).json()["stored"] is True
    before = await writes(pool, slug)
    assert (await client.put(base, json=body)).status_code == 200
    assert await writes(pool, slug) == before  # the same settings again: nothing written


@pytest.mark.parametrize(
    "body",
    [
        {"default_breakage_rate": "1.5"},
        {"default_breakage_rate": "0.12345678901"},
        {"rounding_policy": "nearest"},
        {"ratio_places": 13},
        {"gl_accounts": {"account:x": "Cash"}},
        {"gl_accounts": {"revenue:loyalty_revenue": "bad\u0000name"}},
        {"unknown": 1},
        [],
    ],
)
async def test_bad_settings_are_refused_and_write_nothing(
    client: Client, pool: asyncpg.Pool, body: Any
) -> None:
    slug = await open_program(client)
    before = await writes(pool, slug)
    response = await client.put(f"/programs/{slug}/finance/revenue/settings", json=body)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert await writes(pool, slug) == before


async def test_a_period_is_recognised_once(client: Client, pool: asyncpg.Pool) -> None:
    slug = await open_program(client)
    base = f"/programs/{slug}/finance/revenue"
    period = month_label(1)
    # The final run needs its period closed: refused while open, nothing written.
    await pool.execute(
        "UPDATE programs SET started_at = $2 WHERE slug = $1",
        slug,
        months_back(2)[0] + timedelta(hours=1),
    )
    before = await writes(pool, slug)
    assert_problem(
        await client.post(f"{base}/recognitions", json={"period": period}),
        409,
        "revenue-period-open",
    )
    assert await writes(pool, slug) == before
    # A preview computes it while open and writes nothing either.
    previewed = await client.post(f"{base}/recognitions", json={"period": period, "preview": True})
    assert previewed.status_code == 200, previewed.text
    assert previewed.json()["preview"] is True
    assert await writes(pool, slug) == before
    for month in (month_label(2), period):
        closed = await client.post(f"/programs/{slug}/finance/periods/{month}/close")
        assert closed.status_code in (200, 201), closed.text

    made = await client.post(f"{base}/recognitions", json={"period": period})
    assert made.status_code == 201, made.text
    assert (made.json()["period"], made.json()["replayed"]) == (period, False)
    after = await writes(pool, slug)
    again = await client.post(f"{base}/recognitions", json={"period": period})
    assert (again.status_code, again.json()["replayed"]) == (200, True)
    assert await writes(pool, slug) == after
    shown = await client.get(f"{base}/recognitions/{period}")
    assert shown.status_code == 200 and shown.json()["period"] == period
    assert (await client.get(f"{base}/breakage-estimates")).json() == []
    assert (await client.get(f"{base}/allocations")).json() == {"items": [], "next_cursor": None}
    # An earlier period, once a later one is recognised: refused.
    assert_problem(
        await client.post(f"{base}/recognitions", json={"period": month_label(2)}),
        409,
        "revenue-later-period-recognised",
    )
    assert await writes(pool, slug) == after


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"period": "2025-13"}, 400),
        ({"period": "25-01"}, 400),
        ({}, 400),
        ({"period": "2025-01", "more": 1}, 400),
        ({"period": "9998-12"}, 422),
    ],
)
async def test_a_bad_period_is_refused_and_writes_nothing(
    client: Client, pool: asyncpg.Pool, body: Any, status: int
) -> None:
    slug = await open_program(client)
    before = await writes(pool, slug)
    response = await client.post(f"/programs/{slug}/finance/revenue/recognitions", json=body)
    assert response.status_code in (status, 422 if status == 400 else status), response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    if status == 422:
        assert response.json()["type"].endswith("revenue-period-not-ended")
    assert await writes(pool, slug) == before


async def test_reads_of_what_is_not_there(client: Client) -> None:
    slug = await open_program(client)
    base = f"/programs/{slug}/finance"
    assert_problem(await client.get(f"{base}/revenue/recognitions/2020-01"), 404, "not-found")
    for bad in ("2020-1", "2020-00", "x"):
        response = await client.get(f"{base}/journal", params={"period": bad})
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
    response = await client.get(f"{base}/journal", params={"period": "2020-01", "format": "xlsx"})
    assert response.status_code == 400


async def test_the_journal_streams_the_same_bytes(client: Client) -> None:
    slug = await open_program(client)
    await client.post(
        f"/programs/{slug}/finance/revenue/recognitions", json={"period": month_label(1)}
    )
    path = f"/programs/{slug}/finance/journal"
    csv_file = await client.get(path, params={"period": month_label(1)})
    assert csv_file.status_code == 200, csv_file.text
    assert csv_file.headers["content-type"].startswith("text/csv")
    assert csv_file.content.decode().splitlines()[0].startswith("journal_id,accounting_date,period")
    again = await client.get(path, params={"period": month_label(1)})
    assert again.content == csv_file.content
    parquet = await client.get(path, params={"period": month_label(1), "format": "parquet"})
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.schema.names[:3] == ["journal_id", "accounting_date", "period"]
    assert (
        await client.get(path, params={"period": month_label(1), "format": "parquet"})
    ).content == parquet.content


@contextlib.contextmanager
def no_collection() -> Iterator[None]:
    """The garbage collector off: what a test sees released is released by
    the code, not by a collection that happened to run."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def busy(pool: asyncpg.Pool) -> int:
    return pool.get_size() - pool.get_idle_size()


async def journal_to(
    app: Litestar, slug: str, period: str, gone_at: str, failures: list[BaseException]
) -> list[Message]:
    """The journal asked for by a client that goes away when the answer
    reaches ``gone_at`` (``http.response.start``: before its first byte;
    ``http.response.body``: at its first chunk; ``http.disconnect``: the
    server hears it go as the answer starts): the messages sent. What the
    app raised is kept in ``failures``, traceback and all, as a server's log
    or error tracker keeps it. Runs in the app's own loop (the test
    client's portal), where its pool lives."""
    sent: list[Message] = []

    async def receive() -> Message:
        if gone_at == "http.disconnect":
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)  # the client says nothing more; it just goes
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == gone_at:
            raise OSError("the client went away")

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/programs/{slug}/finance/journal",
        "raw_path": f"/programs/{slug}/finance/journal".encode(),
        "root_path": "",
        "query_string": f"period={period}".encode(),
        "headers": [(b"host", b"test"), (b"authorization", f"Bearer {ADMIN_TOKEN}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
        "state": {},
    }
    try:
        await app(scope, receive, send)  # type: ignore[arg-type]
    except Exception as failure:
        failures.append(failure)
    # A release the code scheduled (not one a collection would make) has
    # run by then.
    await asyncio.sleep(0.2)
    return sent


@pytest.mark.parametrize(
    "gone_at", ["http.response.start", "http.response.body", "http.disconnect"]
)
async def test_the_journal_gives_its_connection_back_when_the_client_goes(
    app: Litestar, client: Client, gone_at: str
) -> None:
    slug = await open_program(client)
    pool: asyncpg.Pool = app.state.pool
    failures: list[BaseException] = []
    with no_collection():
        before = busy(pool)
        sent = await asyncio.to_thread(
            client.blocking_portal.call, journal_to, app, slug, month_label(1), gone_at, failures
        )
        assert (sent[0]["type"], sent[0].get("status")) == ("http.response.start", 200)
        assert gone_at == "http.disconnect" or (sent[-1]["type"] == gone_at and failures)
        assert busy(pool) == before
    failures.clear()
    # The pool still serves a whole journal.
    streamed = await client.get(
        f"/programs/{slug}/finance/journal", params={"period": month_label(1)}
    )
    assert streamed.status_code == 200, streamed.text
