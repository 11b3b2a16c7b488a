"""``Idempotency-Key`` on partner API POSTs (``api.idempotency``), through the
probe route: replays, mismatches, a request in flight, what is stored and
what is not, keys per partner, their age, and their purge."""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient, TestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.app import create_app
from api.settings import Settings
from core.modules import JobContext
from ledger import Ledger
from partners.idempotency_keys import purge_idempotency_keys
from partners.models import Partner
from tests.api.conftest import ADMIN_TOKEN, AUTH, assert_problem
from tests.api.partner_probe import HELD, probe_app
from tests.conftest import NewProgram
from tests.partners.conftest import NewPartner
from tests.partners.tokens import partner_bearer

Client = AsyncTestClient[Litestar]
NOTES = "/partner/probe/notes"
_notes = itertools.count(1)


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=probe_app(database_url)) as client:
        client.headers.update(AUTH)
        yield client


@pytest.fixture
async def firms(
    client: Client, session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> tuple[tuple[Partner, dict[str, str]], tuple[Partner, dict[str, str]]]:
    """Two firms of one program, each with a token of every scope."""
    program = await new_program()
    a, b = await new_partner(program), await new_partner(program)
    return (
        (a, await partner_bearer(client, session, program, a)),
        (b, await partner_bearer(client, session, program, b)),
    )


def note() -> str:
    return f"note-{next(_notes)}-{uuid.uuid4().hex[:6]}"


def keyed(token: dict[str, str], key: str) -> dict[str, str]:
    return {**token, "Idempotency-Key": key}


async def lines(pool: asyncpg.Pool, text: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE subject = $1", f"probe:{text}"
    )
    return count


async def stored(pool: asyncpg.Pool, partner: Partner, key: str) -> int | None:
    status: int | None = await pool.fetchval(
        "SELECT status_code FROM idempotency_keys WHERE partner_id = $1 AND key = $2",
        partner.id,
        key,
    )
    return status


async def test_a_repeat_answers_the_first_answer_and_runs_once(
    client: Client, pool: asyncpg.Pool, firms: Any
) -> None:
    (a, token), _ = firms
    text, key = note(), str(uuid.uuid4())

    first = await client.post(NOTES, json={"note": text}, headers=keyed(token, key))
    again = await client.post(NOTES, json={"note": text}, headers=keyed(token, key))

    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == first.headers["content-type"]
    assert await lines(pool, text) == 1
    assert await stored(pool, a, key) == 201


async def test_the_same_key_for_another_request_is_refused(
    client: Client, pool: asyncpg.Pool, firms: Any
) -> None:
    (_, token), _ = firms
    text, key = note(), str(uuid.uuid4())
    first = await client.post(NOTES, json={"note": text}, headers=keyed(token, key))
    assert first.status_code == 201, first.text
    other = note()

    body = await client.post(NOTES, json={"note": other}, headers=keyed(token, key))
    query = await client.post(f"{NOTES}?x=1", json={"note": text}, headers=keyed(token, key))

    assert_problem(body, 422, "idempotency-key-mismatch")
    assert_problem(query, 422, "idempotency-key-mismatch")
    assert await lines(pool, other) == 0
    assert await lines(pool, text) == 1


async def test_a_post_without_a_good_key_is_refused_and_writes_nothing(
    client: Client, pool: asyncpg.Pool, firms: Any
) -> None:
    (_, token), _ = firms
    text = note()

    missing = await client.post(NOTES, json={"note": text}, headers=token)
    spaced = await client.post(NOTES, json={"note": text}, headers=keyed(token, "has space"))
    long = await client.post(NOTES, json={"note": text}, headers=keyed(token, "k" * 201))

    assert_problem(missing, 428, "idempotency-key-required")
    assert_problem(spaced, 400, "validation-error")
    assert_problem(long, 400, "validation-error")
    assert await lines(pool, text) == 0
    # Without a valid token the guard answers first: 401, not 428.
    anonymous = await client.post(NOTES, json={"note": text}, headers={"Authorization": ""})
    assert_problem(anonymous, 401, "unauthorized")


async def test_refusals_of_the_use_case_are_stored_and_failures_are_not(
    client: Client, pool: asyncpg.Pool, firms: Any
) -> None:
    (a, token), _ = firms
    refused_key, conflict_key, failed_key = (str(uuid.uuid4()) for _ in range(3))
    text = note()
    refused = {"note": text, "outcome": "refused"}

    first = await client.post(NOTES, json=refused, headers=keyed(token, refused_key))
    replay = await client.post(NOTES, json=refused, headers=keyed(token, refused_key))
    conflict = await client.post(
        NOTES, json={"note": text, "outcome": "conflict"}, headers=keyed(token, conflict_key)
    )
    failed = await client.post(
        NOTES, json={"note": text, "outcome": "fail"}, headers=keyed(token, failed_key)
    )

    assert_problem(first, 422, "probe-refused")
    assert_problem(replay, 422, "probe-refused")
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert_problem(conflict, 409, "concurrent-change")
    assert failed.status_code == 500
    assert await stored(pool, a, refused_key) == 422
    assert await stored(pool, a, conflict_key) is None
    assert await stored(pool, a, failed_key) is None
    # Every attempt rolled back its audit line.
    assert await lines(pool, text) == 0
    # A key whose answer was not kept is free: the next request runs.
    for key in (conflict_key, failed_key):
        retried = await client.post(NOTES, json={"note": text}, headers=keyed(token, key))
        assert retried.status_code == 201, retried.text
        assert "idempotent-replayed" not in retried.headers
    assert await lines(pool, text) == 2


async def test_a_second_request_while_the_first_is_in_flight_is_told_to_retry(
    client: Client,
    database_url: str,
    pool: asyncpg.Pool,
    session: AsyncSession,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    firm = await new_partner(program)
    text, key = note(), str(uuid.uuid4())
    entered, gate = HELD[text] = threading.Event(), threading.Event()
    try:
        token = await partner_bearer(client, session, program, firm)

        def first_request() -> Any:
            # Another server process, on a thread of its own: a test client
            # runs its app's requests one at a time.
            with TestClient(app=probe_app(database_url)) as elsewhere:
                return elsewhere.post(NOTES, json={"note": text}, headers=keyed(token, key))

        first = asyncio.create_task(asyncio.to_thread(first_request))
        assert await asyncio.to_thread(entered.wait, 30)

        second = await client.post(NOTES, json={"note": text}, headers=keyed(token, key))

        assert_problem(second, 409, "idempotency-key-in-flight")
        assert second.headers["retry-after"] == "1"
        gate.set()
        answered = await first
        assert answered.status_code == 201, answered.text
        third = await client.post(NOTES, json={"note": text}, headers=keyed(token, key))
        assert third.json() == answered.json()
        assert third.headers["idempotent-replayed"] == "true"
    finally:
        gate.set()
        del HELD[text]
    assert await lines(pool, text) == 1


async def test_a_claim_whose_request_died_is_taken_over_after_its_lease(
    client: Client, pool: asyncpg.Pool, firms: Any
) -> None:
    (a, token), _ = firms
    text, key = note(), str(uuid.uuid4())
    # A request's claim whose process died before it answered: the row in
    # flight, as its claim statement left it.
    await pool.execute(
        "INSERT INTO idempotency_keys (partner_id, key, program_id, request_sha256, claim_id,"
        " claimed_until, created_at) SELECT id, $2, program_id, $3, gen_random_uuid(),"
        " now() + interval '1 minute', now() FROM partners WHERE id = $1",
        a.id,
        key,
        bytes(32),
    )

    held = await client.post(NOTES, json={"note": text}, headers=keyed(token, key))
    assert_problem(held, 409, "idempotency-key-in-flight")
    await pool.execute(
        "UPDATE idempotency_keys SET claimed_until = now() - interval '1 second'"
        " WHERE partner_id = $1 AND key = $2",
        a.id,
        key,
    )
    taken = await client.post(NOTES, json={"note": text}, headers=keyed(token, key))
    replay = await client.post(NOTES, json={"note": text}, headers=keyed(token, key))

    assert taken.status_code == 201, taken.text
    assert replay.json() == taken.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert await stored(pool, a, key) == 201
    assert await lines(pool, text) == 1


async def test_a_request_that_outlives_its_claim_keeps_nothing(
    client: Client,
    database_url: str,
    pool: asyncpg.Pool,
    session: AsyncSession,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    firm = await new_partner(program)
    text, key = note(), str(uuid.uuid4())
    entered, gate = HELD[text] = threading.Event(), threading.Event()
    try:
        token = await partner_bearer(client, session, program, firm)

        def first_request() -> Any:
            with TestClient(app=probe_app(database_url)) as elsewhere:
                return elsewhere.post(NOTES, json={"note": text}, headers=keyed(token, key))

        first = asyncio.create_task(asyncio.to_thread(first_request))
        assert await asyncio.to_thread(entered.wait, 30)
        # The first request runs past its lease: a second takes the key over.
        await pool.execute(
            "UPDATE idempotency_keys SET claimed_until = now() - interval '1 second'"
            " WHERE partner_id = $1 AND key = $2",
            firm.id,
            key,
        )
        del HELD[text]
        second = await client.post(NOTES, json={"note": text}, headers=keyed(token, key))
        assert second.status_code == 201, second.text
        gate.set()
        late = await first

        assert_problem(late, 409, "idempotency-key-in-flight")
        replay = await client.post(NOTES, json={"note": text}, headers=keyed(token, key))
        assert replay.json() == second.json()
    finally:
        gate.set()
        HELD.pop(text, None)
    # The late request's audit line rolled back with its answer.
    assert await lines(pool, text) == 1


async def test_keys_are_each_partners_own_and_last_a_day(
    client: Client, pool: asyncpg.Pool, firms: Any
) -> None:
    (a, token_a), (_, token_b) = firms
    text, key = note(), str(uuid.uuid4())

    of_a = await client.post(NOTES, json={"note": text}, headers=keyed(token_a, key))
    of_b = await client.post(NOTES, json={"note": text}, headers=keyed(token_b, key))

    assert (of_a.status_code, of_b.status_code) == (201, 201)
    assert of_a.json()["id"] != of_b.json()["id"]
    assert "idempotent-replayed" not in of_b.headers
    # A day later the key is a new request's.
    await pool.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"
        " WHERE partner_id = $1 AND key = $2",
        a.id,
        key,
    )
    later = await client.post(NOTES, json={"note": text}, headers=keyed(token_a, key))
    assert later.status_code == 201 and later.json()["id"] != of_a.json()["id"]
    assert "idempotent-replayed" not in later.headers
    assert await lines(pool, text) == 3


async def test_the_purge_forgets_answers_older_than_a_day(
    client: Client, pool: asyncpg.Pool, engine: AsyncEngine, ledger: Ledger, firms: Any
) -> None:
    (a, token), _ = firms
    old, fresh = str(uuid.uuid4()), str(uuid.uuid4())
    for key in (old, fresh):
        made = await client.post(NOTES, json={"note": note()}, headers=keyed(token, key))
        assert made.status_code == 201, made.text
    await pool.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"
        " WHERE partner_id = $1 AND key = $2",
        a.id,
        old,
    )
    context = JobContext(
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        ledger=ledger,
        now=datetime.now(UTC),
    )

    purged = await purge_idempotency_keys(context)

    assert purged >= 1
    assert await stored(pool, a, old) is None
    assert await stored(pool, a, fresh) == 201
    # An answer of a moment ago stays even a minute before a day has passed.
    later = JobContext(
        sessions=context.sessions, ledger=ledger, now=datetime.now(UTC) + timedelta(hours=23)
    )
    await purge_idempotency_keys(later)
    assert await stored(pool, a, fresh) == 201


@pytest.mark.parametrize("mounted", ["the app", "the probe"])
def test_every_partner_post_declares_its_idempotency_key(database_url: str, mounted: str) -> None:
    if mounted == "the app":
        app = create_app(Settings(admin_token=ADMIN_TOKEN), database_url=database_url)
    else:
        app = probe_app(database_url)
    document = app.openapi_schema.to_schema()
    # The probe's own routes only: the app's are the other case's.
    prefix = "/partner/probe" if mounted == "the probe" else "/partner/"
    posts = {
        path: item["post"]
        for path, item in document["paths"].items()
        if path.startswith(prefix) and "post" in item
    }
    missing = [
        path
        for path, operation in posts.items()
        if not any(
            p["in"] == "header" and p["name"] == "Idempotency-Key" and p.get("required")
            for p in operation.get("parameters", [])
        )
    ]
    assert missing == []
    if mounted == "the probe":
        assert NOTES in posts
    # And each states the scope it needs.
    unscoped = [
        f"{method} {path}"
        for path, item in document["paths"].items()
        if path.startswith(prefix)
        for method, operation in item.items()
        if not any("PartnerToken" in s and s["PartnerToken"] for s in operation.get("security", []))
    ]
    assert unscoped == []
