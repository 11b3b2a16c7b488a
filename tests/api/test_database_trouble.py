"""When PostgreSQL restarts or stalls, requests answer fast: a working
answer on fresh connections, or a 503 with ``Retry-After``; never a 500 and
never a hang."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest
from litestar import Litestar
from litestar.exceptions import ServiceUnavailableException
from litestar.testing import AsyncTestClient
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.app import create_app
from api.problems import from_database_error, from_http_exception
from api.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, AUTH, PROBLEMS, assert_problem, open_program


@pytest.fixture
async def private_client(private_database: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    settings = Settings(admin_token=ADMIN_TOKEN, sweep_interval=0, db_command_timeout=1.0)
    app = create_app(settings, database_url=private_database)
    async with AsyncTestClient(app=app) as client:
        client.headers.update(AUTH)
        yield client


async def _drop_connections(database_url: str) -> int:
    """What a restart does to the app's pools: every server connection of
    the database closes under them."""
    connection = await asyncpg.connect(database_url)
    try:
        return int(
            await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await connection.close()


async def test_requests_after_the_connections_were_dropped_do_not_fail(
    private_client: AsyncTestClient[Litestar], private_database: str
) -> None:
    slug = await open_program(private_client)
    for _ in range(3):  # warm both pools (the ORM's and the ledger's)
        assert (await private_client.get(f"/programs/{slug}")).status_code == 200
        assert (await private_client.get("/ledger/ledgers")).status_code == 200
    assert await _drop_connections(private_database) > 0
    # The ORM pool pings on checkout and replaces its dead connections.
    orm = await private_client.get(f"/programs/{slug}")
    assert orm.status_code == 200, orm.text
    # The ledger's pool: a dead connection is a 503 to retry, never a 500.
    raw = await private_client.get("/ledger/ledgers")
    if raw.status_code != 200:
        assert_problem(raw, 503, "database-unavailable")
        assert raw.headers["retry-after"]
    assert (await private_client.get("/ledger/ledgers")).status_code == 200
    health = await private_client.get("/health")
    assert health.status_code == 200


async def test_a_stalled_database_answers_503_within_the_command_timeout(
    private_client: AsyncTestClient[Litestar], private_database: str
) -> None:
    slug = await open_program(private_client)
    assert (await private_client.get(f"/programs/{slug}")).status_code == 200
    blocker = await asyncpg.connect(private_database)
    try:
        # Every read of programs now waits, as on a frozen server.
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE programs IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = await private_client.get(f"/programs/{slug}")
        elapsed = time.monotonic() - started
        await transaction.rollback()
    finally:
        await blocker.close()
    body = assert_problem(response, 503, "database-unavailable")
    assert response.headers["retry-after"] == "1", body
    assert elapsed < 5, elapsed
    await asyncio.sleep(0)
    assert (await private_client.get(f"/programs/{slug}")).status_code == 200


def test_a_framework_503_says_when_to_come_back() -> None:
    answer = from_http_exception(ServiceUnavailableException())
    assert answer.status_code == 503
    assert answer.headers == {"Retry-After": "1"}


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        DBAPIError("SELECT 1", {}, asyncpg.InterfaceError("closed"), connection_invalidated=True),
        PoolTimeout("QueuePool limit reached"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    ],
    ids=["statement-timeout", "connection-closed", "invalidated", "pool-timeout", "no-slot"],
)
def test_a_lost_or_stalled_database_is_a_503(error: Exception) -> None:
    answer = from_database_error(error)
    assert answer.status_code == 503
    assert answer.type_ == PROBLEMS + "database-unavailable"
    assert answer.headers == {"Retry-After": "1"}


async def test_a_commit_that_fails_is_answered_as_its_error_not_as_a_success(
    private_client: AsyncTestClient[Litestar], private_database: str
) -> None:
    """The request's writes are refused only at commit (a deferred
    constraint): the answer, not sent yet, says so, and nothing is kept."""
    slug = await open_program(private_client)
    before = (await private_client.get(f"/programs/{slug}/settings")).json()
    connection = await asyncpg.connect(private_database)
    try:
        await connection.execute(
            """CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE check_violation USING MESSAGE = 'refused at commit'; END $$;
               CREATE CONSTRAINT TRIGGER programs_refused_at_commit AFTER UPDATE ON programs
                   DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
                   EXECUTE FUNCTION refuse_at_commit();"""
        )
    finally:
        await connection.close()
    changed = await private_client.patch(
        f"/programs/{slug}/settings", json={"return_window_days": before["return_window_days"] + 7}
    )
    assert_problem(changed, 422, "invalid-data")
    assert (await private_client.get(f"/programs/{slug}/settings")).json() == before
