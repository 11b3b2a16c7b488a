"""Reinstatement: every lot expired since a date restored, to the very lots
the expiry took, with their new expiry; once, however often it runs; with
its record, its audit line and its event for the breakage re-estimate."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import calendar
from core.audit import audit_events
from core.codes import TransferCode
from core.errors import Conflict
from core.models import Member, Program
from core.outbox import outbox_events
from core.principal import system
from ledger import Ledger, check_invariants
from ledger.lots import lots_of
from rewards.expiry import expire_points
from rewards.programs import Enrolment, enrol_member, member_balance
from rewards.reinstatement import (
    REINSTATED,
    InvalidReinstatement,
    ReinstatementRequest,
    get_reinstatement,
    list_reinstatements,
    reinstate_expired,
)
from tests.conftest import NewProgram
from tests.rewards.lot_helpers import credit, remaining, undo

#: The expiry term: four years (see tests/rewards/test_expiry.py).
TERM = 48
OPERATOR = system("regulator")


async def member_named(
    session: AsyncSession, ledger: Ledger, program: Program, name: str
) -> Member:
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id=name), principal=system("test")
    )
    await session.commit()
    return member


async def expired_program(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> tuple[Program, Member, uuid.UUID, uuid.UUID, datetime]:
    """A program whose member had a lot expire now (credited a term and a
    day ago), beside a lot that has not expired."""
    program = await new_program(expiry_policy="fixed", expiry_months=TERM)
    member = await member_named(session, ledger, program, "ann")
    now = datetime.now(UTC)
    old = await credit(
        ledger,
        program,
        member,
        70,
        effective_at=calendar.add_months(now, -TERM, "UTC") - timedelta(days=1),
    )
    fresh = await credit(ledger, program, member, 20)
    assert await expire_points(session, ledger, program, now) == 70
    return program, member, old, fresh, now


def request(since: datetime, reference: str = "ON-2016", **fields: object) -> ReinstatementRequest:
    return ReinstatementRequest(reference=reference, since=since, **fields)  # type: ignore[arg-type]


async def test_reinstatement_restores_the_expired_lots_once(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program, member, old, fresh, now = await expired_program(session, ledger, new_program)
    assert await remaining(pool, member) == {old: 0, fresh: 20}

    done = await reinstate_expired(
        session, ledger, program, request(now - timedelta(hours=1)), now, principal=OPERATOR
    )
    await session.commit()

    assert (done.status, done.points, done.expiries, done.replayed) == ("done", 70, 1, False)
    # The very lot that expired, not a new one.
    assert await remaining(pool, member) == {old: 70, fresh: 20}
    assert (await member_balance(ledger, program, member)).available == 90
    [lot] = [lot for lot in await lots_of(pool, member.wallet_account_id) if lot.id == old]
    assert lot.expires_at is not None and lot.expires_at.year == 9999  # never
    # The same reference: the first answer. Another: nothing left to restore.
    again = await reinstate_expired(
        session, ledger, program, request(now - timedelta(hours=1)), now, principal=OPERATOR
    )
    other = await reinstate_expired(
        session,
        ledger,
        program,
        request(now - timedelta(days=30), reference="AIR-2017"),
        now,
        principal=OPERATOR,
    )
    await session.commit()
    assert (again.replayed, again.points, again.id) == (True, 70, done.id)
    assert (other.replayed, other.points, other.expiries) == (False, 0, 0)
    assert (await member_balance(ledger, program, member)).available == 90
    page = await ledger.history(member.wallet_account_id, limit=20)
    [restoring] = [t for t in page.transfers if t.code == TransferCode.EXPIRY_REINSTATEMENT]
    assert restoring.amount == 70 and restoring.metadata is not None
    assert restoring.metadata["lot_expires_at"] == "infinity"
    # Audited and announced once per reinstatement run to its end.
    lines = await session.scalar(
        select(func.count()).where(
            audit_events.c.action == "points.reinstate",
            audit_events.c.subject.like(f"program:{program.slug}:reinstatement:%"),
        )
    )
    events = await session.scalar(
        select(func.count()).where(
            outbox_events.c.topic == REINSTATED,
            outbox_events.c.payload["program"].astext == program.slug,
        )
    )
    assert (lines, events) == (2, 2)
    listed = await list_reinstatements(session, program, limit=1, cursor=None)
    assert [r.reference for r in listed.items] == ["AIR-2017"] and listed.next_cursor
    older = await list_reinstatements(session, program, limit=1, cursor=listed.next_cursor)
    assert [r.reference for r in older.items] == ["ON-2016"] and older.next_cursor is None
    assert (await get_reinstatement(session, program, done.id)).points == 70
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_a_reinstated_lot_keeps_its_new_expiry(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program, member, old, fresh, now = await expired_program(session, ledger, new_program)
    until = now + timedelta(days=10)
    await reinstate_expired(
        session,
        ledger,
        program,
        request(now - timedelta(hours=1), lot_expires_at=until),
        now,
        principal=OPERATOR,
    )
    await session.commit()

    # By the program's policy the lot (earned a term ago) would expire now:
    # its own expiry rules instead.
    assert await expire_points(session, ledger, program, now + timedelta(days=9)) == 0
    assert await remaining(pool, member) == {old: 70, fresh: 20}
    assert await expire_points(session, ledger, program, until) == 70
    assert await remaining(pool, member) == {old: 0, fresh: 20}
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_only_expiries_since_the_date_are_restored(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program, member, old, fresh, _ = await expired_program(session, ledger, new_program)
    later = datetime.now(UTC) + timedelta(seconds=1)
    done = await reinstate_expired(
        session, ledger, program, request(later), later, principal=OPERATOR
    )
    await session.commit()
    assert (done.points, done.expiries) == (0, 0)
    assert await remaining(pool, member) == {old: 0, fresh: 20}


async def test_bad_reinstatements_write_nothing(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program, _, _, _, now = await expired_program(session, ledger, new_program)
    with pytest.raises(InvalidReinstatement):
        await reinstate_expired(
            session, ledger, program, request(now + timedelta(days=1)), now, principal=OPERATOR
        )
    await undo(session, program)
    with pytest.raises(InvalidReinstatement):
        await reinstate_expired(
            session,
            ledger,
            program,
            request(now - timedelta(days=1), lot_expires_at=now - timedelta(seconds=1)),
            now,
            principal=OPERATOR,
        )
    await undo(session, program)
    await reinstate_expired(
        session, ledger, program, request(now - timedelta(days=1)), now, principal=OPERATOR
    )
    await session.commit()
    with pytest.raises(Conflict):  # the reference, with another since
        await reinstate_expired(
            session, ledger, program, request(now - timedelta(days=2)), now, principal=OPERATOR
        )
    await undo(session, program)
    listed = await list_reinstatements(session, program, limit=10, cursor=None)
    assert [r.points for r in listed.items] == [70]
