"""The member rate limit: N requests a minute, then 429 problems with
Retry-After; one budget across processes through Redis; fail open."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import jwt
import pytest
import redis
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession

from api import rate_limits
from api.app import create_app
from api.rate_limits import LocalCounter, RedisCounter
from api.settings import Settings
from core.principal import system
from ledger import Ledger
from rewards.programs import Enrolment, enrol_member
from tests.api.conftest import ADMIN_TOKEN, PROBLEM_JSON, PROBLEMS
from tests.conftest import NewProgram

SECRET = "a-development-secret-of-32-chars!"
#: A database of the machine's Redis of its own, so as not to meet others' keys.
REDIS_URL = "redis://127.0.0.1:6379/9"


def redis_reachable() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


needs_redis = pytest.mark.skipif(
    not redis_reachable(), reason=f"no Redis at {REDIS_URL} (a bare machine has none)"
)


@pytest.fixture
def patient_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis calls wait as long as it takes. The limiter gives a call a second
    and then counts in its process (fails open); the machine's Redis, shared
    with whatever else runs, can take longer than that, and a shared count
    would then be a per-process one."""
    monkeypatch.setattr(rate_limits, "REDIS_TIMEOUT", 60.0)


def bearer(program: str, member: str) -> dict[str, str]:
    claims = {
        "sub": member,
        "program": program,
        "aud": "coalition-members",
        "exp": int(time.time()) + 600,
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def settings(limit: int, redis_url: str | None = None) -> Settings:
    return Settings(
        admin_token=ADMIN_TOKEN,
        member_jwt_secret=SECRET,
        member_rate_limit=limit,
        redis_url=redis_url,
        sweep_interval=0,
    )


@pytest.fixture
async def member(session: AsyncSession, ledger: Ledger, new_program: NewProgram) -> str:
    """A program's slug with one member; the member's name is unique to the
    run, so that Redis keys of an earlier run (a minute old at most) miss."""
    program = await new_program()
    await enrol_member(
        session, ledger, program, Enrolment(external_id=RUN_MEMBER), principal=system("test")
    )
    await session.commit()
    return program.slug


RUN_MEMBER = f"member-{uuid.uuid4().hex[:12]}"


@asynccontextmanager
async def clients(
    database_url: str, *configs: Settings
) -> AsyncIterator[list[AsyncTestClient[Litestar]]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                AsyncTestClient(app=create_app(config, database_url=database_url))
            )
            for config in configs
        ]


def assert_too_many(response: object) -> None:
    assert response.status_code == 429  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["content-type"].startswith(PROBLEM_JSON)
    assert response.json()["type"] == PROBLEMS + "too-many-requests"  # type: ignore[attr-defined]
    assert 1 <= int(headers["retry-after"]) <= 60
    assert headers["ratelimit-remaining"] == "0"
    assert headers["ratelimit-limit"]
    assert headers["ratelimit-policy"].endswith("; w=60")
    assert 1 <= int(headers["ratelimit-reset"]) <= 60


async def test_limit_lets_n_through_then_answers_a_problem(database_url: str, member: str) -> None:
    async with clients(database_url, settings(3)) as (client,):
        headers = bearer(member, RUN_MEMBER)
        answers = [await client.get("/me/balance", headers=headers) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.headers["ratelimit-remaining"] for a in answers] == ["2", "1", "0"]
        assert all(a.headers["ratelimit-limit"] == "3" for a in answers)
        assert_too_many(await client.get("/me/balance", headers=headers))
        # Another member has a budget of their own.
        other = bearer(member, "someone-else")
        assert (await client.get("/me/balance", headers=other)).status_code == 404


async def test_without_redis_each_process_counts_on_its_own(database_url: str, member: str) -> None:
    async with clients(database_url, settings(2), settings(2)) as (first, second):
        headers = bearer(member, RUN_MEMBER)
        for client in (first, second):
            statuses = [
                (await client.get("/me/balance", headers=headers)).status_code for _ in range(3)
            ]
            assert statuses == [200, 200, 429]


@needs_redis
@pytest.mark.usefixtures("patient_redis")
async def test_two_apps_share_one_budget_through_redis(database_url: str, member: str) -> None:
    name = f"shared-{uuid.uuid4().hex[:12]}"
    async with clients(database_url, settings(4, REDIS_URL), settings(4, REDIS_URL)) as (
        first,
        second,
    ):
        headers = bearer(member, name)
        statuses = [
            (await client.get("/me/balance", headers=headers)).status_code
            for client in (first, second, first, second)
        ]
        # Unknown member: 404, but counted all the same.
        assert statuses == [404, 404, 404, 404]
        assert_too_many(await first.get("/me/balance", headers=headers))
        assert_too_many(await second.get("/me/balance", headers=headers))


@needs_redis
@pytest.mark.usefixtures("patient_redis")
async def test_concurrent_hits_through_redis_each_count_once() -> None:
    counter = RedisCounter(REDIS_URL)
    key = f"test:{uuid.uuid4().hex}"
    try:
        results = await asyncio.gather(*(counter.hit(key) for _ in range(50)))
    finally:
        await counter.close()
    assert sorted(count for count, _ in results) == list(range(1, 51))
    assert all(0 < closes_in <= 60 for _, closes_in in results)


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_redis_down_fails_open_and_counts_in_process(database_url: str, member: str) -> None:
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The app's logging configuration does not propagate to pytest's capture.
    warnings = Warnings()
    logger = logging.getLogger("api.rate_limits")
    logger.addHandler(warnings)
    try:
        config = settings(2, f"redis://127.0.0.1:{port}/0")
        async with clients(database_url, config) as (client,):
            headers = bearer(member, RUN_MEMBER)
            statuses = [
                (await client.get("/me/balance", headers=headers)).status_code for _ in range(3)
            ]
    finally:
        logger.removeHandler(warnings)
    assert statuses == [200, 200, 429]
    assert any("Redis failed" in message for message in warnings.messages)


async def test_a_window_closes() -> None:
    # A clock of the test's: on the real one, a busy machine can pause the
    # test between two hits for longer than any short window.
    now = 1000.0
    counter = LocalCounter(window=60, clock=lambda: now)
    assert await counter.hit("k") == (1, 60)
    now += 59.5
    assert await counter.hit("k") == (2, 0.5)
    now += 0.5  # the window's end opens the next one
    assert await counter.hit("k") == (1, 60)
