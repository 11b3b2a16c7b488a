"""A sunset stops earning first: from its end of earning (the announcement,
or a later instant the operator names) purchases, their bonuses and bought
points are refused with ``program-sunsetting``, writing nothing, while
members go on spending until the sunset; a cancelled sunset lifts it. An
earning and a sunset being scheduled at once serialise: an earning checked
while the sunset is written waits for it and is refused, and a sunset
written while an earning is in flight waits for the earning's commit."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.app import create_app
from api.settings import Settings
from core.models import Program
from core.principal import system
from ledger import Ledger
from rewards.bought_points import PointsPaid, credit_bought_points
from rewards.errors import ProgramSunsetting
from rewards.holds import HoldRequest, hold_points
from rewards.models import Purchase
from rewards.purchase_recording import record_purchase
from rewards.sunset import (
    InvalidEndOfEarning,
    SunsetRequest,
    cancel_sunset,
    schedule_sunset,
)
from tests.api.conftest import ADMIN_TOKEN, AUTH, assert_problem
from tests.api.test_member_api import SECRET
from tests.conftest import NewProgram
from tests.rewards.lot_helpers import credit, undo
from tests.rewards.test_purchases import enrol, purchase, with_rules

OPERATOR = system("board")


def ending(now: datetime, earning_ends_at: datetime | None = None) -> SunsetRequest:
    return SunsetRequest(
        sunset_at=now + timedelta(days=40),
        notice_days=30,
        reason="the program closes",
        earning_ends_at=earning_ends_at,
    )


async def shop(session: AsyncSession, new_program: NewProgram, now: datetime) -> Program:
    program = await new_program(return_window_days=0)
    await with_rules(session, program, "1", now - timedelta(days=10))
    return program


async def transfers(pool: asyncpg.Pool, program: Program) -> int:
    return int(
        await pool.fetchval("SELECT count(*) FROM transfers WHERE ledger = $1", program.ledger_id)
    )


async def test_purchases_are_refused_from_the_announcement_until_it_is_cancelled(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    program = await shop(session, new_program, now)
    await enrol(session, ledger, program, "ann")
    announced = now - timedelta(hours=1)
    view, _ = await schedule_sunset(
        session, program, ending(announced), announced, principal=OPERATOR
    )
    await session.commit()
    assert view.earning_ends_at == announced  # by default: at once

    before = await transfers(pool, program)
    with pytest.raises(ProgramSunsetting, match="earning ended"):
        await record_purchase(
            session, ledger, program, purchase("ann", "O-late", 1000, now), now, principal=OPERATOR
        )
    await undo(session, program)
    assert await transfers(pool, program) == before
    assert await session.scalar(_purchases(program)) == 0

    # Made before the end of earning, reported late: it earns.
    early = await record_purchase(
        session,
        ledger,
        program,
        purchase("ann", "O-early", 1000, announced - timedelta(minutes=1)),
        now,
        principal=OPERATOR,
    )
    await session.commit()
    assert early.points == 10

    await cancel_sunset(session, program, now, principal=OPERATOR)
    await session.commit()
    again = await record_purchase(
        session, ledger, program, purchase("ann", "O-late", 1000, now), now, principal=OPERATOR
    )
    await session.commit()
    assert again.points == 10


def _purchases(program: Program) -> Any:
    return select(func.count()).select_from(Purchase).where(Purchase.program_id == program.id)


async def test_a_named_end_of_earning_lets_members_earn_until_then_and_spend_after(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    program = await shop(session, new_program, now)
    member = await enrol(session, ledger, program, "ann")
    await credit(ledger, program, member, 200)
    ends = now + timedelta(days=7)
    view, _ = await schedule_sunset(
        session, program, ending(now, earning_ends_at=ends), now, principal=OPERATOR
    )
    await session.commit()
    assert view.earning_ends_at == ends

    earned = await record_purchase(
        session, ledger, program, purchase("ann", "O-1", 1000, now), now, principal=OPERATOR
    )
    await session.commit()
    assert earned.points == 10
    later = ends + timedelta(seconds=1)
    with pytest.raises(ProgramSunsetting):
        await record_purchase(
            session, ledger, program, purchase("ann", "O-2", 1000, later), later, principal=OPERATOR
        )
    await undo(session, program, member)
    # Spending goes on after the end of earning, until the sunset.
    held = await hold_points(
        session,
        ledger,
        program,
        member,
        "h-1",
        HoldRequest(order_ref="ORD-1", amount_minor=50),
        later,
    )
    await session.commit()
    assert held.points == 50


async def test_bought_points_are_refused_after_the_end_but_a_credited_payment_replays(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    program = await new_program()
    member = await enrol(session, ledger, program, "ann")

    def paid(payment: str) -> PointsPaid:
        return PointsPaid(payment_id=payment, points=30, paid_minor=30, currency="ZAR")

    first = f"pi_{program.slug}_1"
    await credit_bought_points(session, ledger, program, member, paid(first), principal=OPERATOR)
    await session.commit()
    await schedule_sunset(session, program, ending(now), now, principal=OPERATOR)
    await session.commit()

    before = await transfers(pool, program)
    late = f"pi_{program.slug}_2"
    with pytest.raises(ProgramSunsetting):
        await credit_bought_points(
            session, ledger, program, member, paid(late), principal=OPERATOR, now=now
        )
    await undo(session, program, member)
    assert await transfers(pool, program) == before
    assert (
        await pool.fetchval("SELECT count(*) FROM points_purchases WHERE payment_intent = $1", late)
        == 0
    )
    replay = await credit_bought_points(
        session, ledger, program, member, paid(first), principal=OPERATOR, now=now
    )
    assert replay.replayed


async def test_an_end_of_earning_in_the_past_or_after_the_sunset_is_refused(
    session: AsyncSession, new_program: NewProgram
) -> None:
    now = datetime.now(UTC)
    program = await new_program()
    for wrong in (now - timedelta(minutes=1), now + timedelta(days=41)):
        with pytest.raises(InvalidEndOfEarning):
            await schedule_sunset(
                session, program, ending(now, earning_ends_at=wrong), now, principal=OPERATOR
            )
        await undo(session, program)


# -- through the API -------------------------------------------------------

Client = AsyncTestClient[Litestar]
_slugs = itertools.count(1)


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        member_jwt_secret=SECRET,
        member_rate_limit=100_000,
        sweep_interval=0,
    )
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        client.headers.update(AUTH)
        yield client


async def test_the_api_answers_program_sunsetting_and_writes_nothing(
    client: Client, pool: asyncpg.Pool
) -> None:
    slug = f"ending-{next(_slugs)}-{uuid.uuid4().hex[:6]}"
    created = await client.post(
        "/programs",
        json={"slug": slug, "name": "Ending", "currency": "ZAR", "point_value_minor": "1"},
    )
    assert created.status_code == 201, created.text
    assert (
        await client.post(f"/programs/{slug}/members", json={"external_id": "ann"})
    ).status_code == 201
    now = datetime.now(UTC)
    sunset = {
        "sunset_at": (now + timedelta(days=100)).isoformat(),
        "notice_days": 90,
        "reason": "the program closes",
    }
    for wrong in (now - timedelta(days=1), now + timedelta(days=101)):
        assert_problem(
            await client.post(
                f"/programs/{slug}/sunset", json=sunset | {"earning_ends_at": wrong.isoformat()}
            ),
            422,
            "invalid-end-of-earning",
        )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM program_sunsets s JOIN programs p ON p.id = s.program_id"
            " WHERE p.slug = $1",
            slug,
        )
        == 0
    )
    scheduled = await client.post(f"/programs/{slug}/sunset", json=sunset)
    assert scheduled.status_code == 201, scheduled.text
    assert scheduled.json()["earning_ends_at"]
    # The same request again: the same sunset, its end of earning as first set.
    again = await client.post(f"/programs/{slug}/sunset", json=sunset)
    assert (again.status_code, again.json()) == (200, scheduled.json())

    order = {
        "member": "ann",
        "order_id": "O-1",
        "amount_minor": 2500,
        "currency": "ZAR",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    body = assert_problem(
        await client.post(f"/programs/{slug}/purchases", json=order), 409, "program-sunsetting"
    )
    assert "earning ended" in body["detail"]
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM purchases u JOIN programs p ON p.id = u.program_id"
            " WHERE p.slug = $1",
            slug,
        )
        == 0
    )


@pytest.fixture
async def ann_shop(session: AsyncSession, ledger: Ledger, new_program: NewProgram) -> Program:
    """A program earning 1 point per unit, with ann enrolled."""
    program = await shop(session, new_program, datetime.now(UTC))
    await enrol(session, ledger, program, "ann")
    return program


async def backend_pid(session: AsyncSession) -> int:
    """The backend of the session's transaction (begun here if none is)."""
    return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def waits_for_a_lock(pool: asyncpg.Pool, pid: int, task: asyncio.Task[Any]) -> None:
    """Return once the backend ``pid``, running ``task``, waits for an
    advisory lock; fail if the task ends first (it did not wait)."""
    for _ in range(1000):
        if task.done():
            raise AssertionError(f"it did not wait; it ended with {task.result()!r}")
        wait = await pool.fetchval(
            "SELECT wait_event FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
            pid,
        )
        if wait == "advisory":
            return
        await asyncio.sleep(0.01)
    raise AssertionError("it never waited for a lock")


async def test_an_earning_checked_while_a_sunset_is_written_waits_and_is_refused(
    session: AsyncSession,
    engine: AsyncEngine,
    ledger: Ledger,
    pool: asyncpg.Pool,
    ann_shop: Program,
) -> None:
    now, program = datetime.now(UTC).replace(microsecond=0), ann_shop
    # The sunset written, not yet committed.
    await schedule_sunset(session, program, ending(now), now, principal=OPERATOR)
    async with AsyncSession(engine, expire_on_commit=False) as earning:
        pid = await backend_pid(earning)
        recording = asyncio.create_task(
            record_purchase(
                earning,
                ledger,
                program,
                purchase("ann", "O-race", 1000, now),
                now,
                principal=OPERATOR,
            )
        )
        await waits_for_a_lock(pool, pid, recording)
        await session.commit()
        with pytest.raises(ProgramSunsetting, match="earning ended"):
            await recording
        await earning.rollback()
    assert await session.scalar(_purchases(program)) == 0


async def test_a_sunset_written_while_an_earning_is_in_flight_waits_for_its_commit(
    session: AsyncSession,
    engine: AsyncEngine,
    ledger: Ledger,
    pool: asyncpg.Pool,
    ann_shop: Program,
) -> None:
    now, program = datetime.now(UTC).replace(microsecond=0), ann_shop
    async with AsyncSession(engine, expire_on_commit=False) as earning:
        # Checked and credited, not yet committed.
        earned = await record_purchase(
            earning, ledger, program, purchase("ann", "O-first", 1000, now), now, principal=OPERATOR
        )
        pid = await backend_pid(session)
        scheduling = asyncio.create_task(
            schedule_sunset(session, program, ending(now), now, principal=OPERATOR)
        )
        await waits_for_a_lock(pool, pid, scheduling)
        await earning.commit()
    view, created = await scheduling
    await session.commit()
    assert created and view.status == "scheduled"
    assert earned.points == 10
    assert await session.scalar(_purchases(program)) == 1
    # From the sunset on, the next earning is refused.
    with pytest.raises(ProgramSunsetting):
        await record_purchase(
            session, ledger, program, purchase("ann", "O-next", 1000, now), now, principal=OPERATOR
        )
    await session.rollback()
