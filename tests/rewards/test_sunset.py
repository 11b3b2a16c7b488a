"""A program's sunset: scheduled after a notice period (members told), then
one auditable mass expiry of every remaining point, page by page, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import ColumnElement, FromClause, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.audit import audit_events
from core.codes import TransferCode
from core.errors import Conflict, NotFound
from core.members import lock_member
from core.models import Member, Program
from core.outbox import outbox_events
from core.principal import system
from ledger import Ledger, check_invariants
from rewards import sunset as sunsets
from rewards.holds import HoldRequest, hold_points
from rewards.programs import Enrolment, enrol_member, member_balance
from rewards.sunset import (
    SunsetLocked,
    SunsetNoticeTooShort,
    SunsetRequest,
    cancel_sunset,
    run_due_sunsets,
    run_sunset,
    schedule_sunset,
    show_sunset,
)
from tests.conftest import NewProgram
from tests.rewards.lot_helpers import credit, undo

OPERATOR = system("board")


async def members(
    session: AsyncSession, ledger: Ledger, program: Program, *points: int
) -> list[Member]:
    found = []
    for n, amount in enumerate(points):
        member, _ = await enrol_member(
            session, ledger, program, Enrolment(external_id=f"m-{n}"), principal=system("test")
        )
        await session.commit()
        if amount:
            await credit(ledger, program, member, amount)
        found.append(member)
    return found


def ending(at: datetime, notice_days: int = 30) -> SunsetRequest:
    return SunsetRequest(sunset_at=at, notice_days=notice_days, reason="the program closes")


async def count(session: AsyncSession, table: FromClause, *where: ColumnElement[bool]) -> int:
    return int(await session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


async def test_a_sunset_expires_every_point_left_once(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sunsets, "PAGE", 2)  # several pages
    program = await new_program()
    wallets = await members(session, ledger, program, 100, 0, 40, 7, 1)
    now = datetime.now(UTC)
    at = now - timedelta(seconds=1)
    view, created = await schedule_sunset(
        session, program, ending(at), at - timedelta(days=31), principal=OPERATOR
    )
    await session.commit()
    assert (created, view.status) == (True, "scheduled")
    # Members can be told: the notice event.
    assert (
        await count(
            session,
            outbox_events,
            outbox_events.c.topic == sunsets.SCHEDULED,
            outbox_events.c.payload["program"].astext == program.slug,
        )
        == 1
    )

    assert await run_sunset(session, ledger, program, now) == 148
    assert await run_sunset(session, ledger, program, now) == 0  # once

    for member in wallets:
        assert (await member_balance(ledger, program, member)).available == 0
    [breakage] = await ledger.lookup_accounts([program.breakage_account_id])
    assert breakage.credits_posted == 148
    done = await show_sunset(session, program)
    assert (done.status, done.points, done.wallets) == ("completed", 148, 4)
    page = await ledger.history(wallets[0].wallet_account_id, limit=5)
    assert page.transfers[0].code == TransferCode.PROGRAM_SUNSET
    subject = f"program:{program.slug}:sunset"
    assert (
        await count(
            session,
            audit_events,
            audit_events.c.action == "program.sunset.complete",
            audit_events.c.subject == subject,
        )
        == 1
    )
    with pytest.raises(SunsetLocked):
        await cancel_sunset(session, program, now, principal=OPERATOR)
    await undo(session, program)
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_the_sunset_waits_for_a_member_being_spent_from(
    engine: AsyncEngine, session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    busy, _ = await members(session, ledger, program, 50, 30)
    now = datetime.now(UTC)
    await schedule_sunset(
        session, program, ending(now), now - timedelta(days=30), principal=OPERATOR
    )
    await session.commit()
    async with AsyncSession(engine) as spender:
        await lock_member(spender, busy.id)  # a redemption in progress
        assert await run_sunset(session, ledger, program, now) == 30
        assert (await show_sunset(session, program)).status == "scheduled"  # not done yet
        await spender.commit()
    sessions = async_sessionmaker(session.bind, expire_on_commit=False)
    assert await run_due_sunsets(sessions, ledger, now) >= 50
    done = await show_sunset(session, program)
    assert (done.status, done.points, done.wallets) == ("completed", 80, 2)
    assert (await member_balance(ledger, program, busy)).available == 0


async def test_held_points_are_left_to_their_hold(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    [member] = await members(session, ledger, program, 100)
    now = datetime.now(UTC)
    await hold_points(
        session, ledger, program, member, "h", HoldRequest(order_ref="O", amount_minor=30), now
    )
    await schedule_sunset(
        session, program, ending(now), now - timedelta(days=30), principal=OPERATOR
    )
    await session.commit()
    assert await run_sunset(session, ledger, program, now) == 70
    balance = await member_balance(ledger, program, member)
    assert (balance.available, balance.pending) == (0, 30)


async def test_scheduling_needs_the_notice_and_one_sunset_stands(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    now = datetime.now(UTC)
    with pytest.raises(SunsetNoticeTooShort):
        await schedule_sunset(
            session, program, ending(now + timedelta(days=29)), now, principal=OPERATOR
        )
    await undo(session, program)
    with pytest.raises(NotFound):
        await show_sunset(session, program)
    with pytest.raises(NotFound):
        await cancel_sunset(session, program, now, principal=OPERATOR)
    await undo(session, program)
    at = now + timedelta(days=60)
    first, created = await schedule_sunset(session, program, ending(at), now, principal=OPERATOR)
    again, again_created = await schedule_sunset(
        session, program, ending(at), now, principal=OPERATOR
    )
    await session.commit()
    assert (created, again_created, again) == (True, False, first)
    with pytest.raises(Conflict):
        await schedule_sunset(
            session, program, ending(at + timedelta(days=1)), now, principal=OPERATOR
        )
    await undo(session, program)
    # Nothing runs before the date.
    assert await run_sunset(session, ledger, program, now) == 0
    cancelled = await cancel_sunset(session, program, now, principal=OPERATOR)
    await session.commit()
    assert (cancelled.status, cancelled.cancelled_at) == ("cancelled", now)
    assert (await cancel_sunset(session, program, now, principal=OPERATOR)) == cancelled
    assert (await show_sunset(session, program)).status == "cancelled"
    assert await run_sunset(session, ledger, program, at + timedelta(days=1)) == 0
    # Cancelled, another can be scheduled.
    _, made = await schedule_sunset(
        session, program, ending(at + timedelta(days=1)), now, principal=OPERATOR
    )
    await session.commit()
    assert made
    assert (
        await count(
            session,
            outbox_events,
            outbox_events.c.topic.in_([sunsets.SCHEDULED, sunsets.CANCELLED]),
            outbox_events.c.payload["program"].astext == program.slug,
        )
        == 3
    )
