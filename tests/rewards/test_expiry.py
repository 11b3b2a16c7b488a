"""Expiry: earliest-expiring points first, never the unexpired ones."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core import calendar
from core.codes import TransferCode
from core.members import lock_member
from core.models import Member, Program
from core.principal import system
from ledger import Ledger, Transfer, check_invariants
from rewards.expiry import expire_points, expiring_soon
from rewards.programs import Enrolment, enrol_member, member_balance
from tests.conftest import NewProgram

#: The expiry term of these tests: four years. The ledger dates points by
#: its own clock, so the tests run on whatever day it is, and only a whole
#: leap cycle moves every day of the calendar by the same number of days.
#: With other terms, month ends clamp (31 August + 6 months is 28 February,
#: and back 6 months is 28 August): a wallet last moved on 31 August has
#: not expired 6 months and 5 seconds later, and two lots credited a second
#: apart on 29 February expire together.
TERM = 48


async def move(ledger: Ledger, program: Program, member: Member, points: int) -> None:
    """Credit (positive) or spend (negative) points."""
    wallet, other = (
        member.wallet_account_id,
        (program.issuance_account_id if points > 0 else program.redemption_account_id),
    )
    [outcome] = await ledger.create_transfers(
        [
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=other if points > 0 else wallet,
                credit_account_id=wallet if points > 0 else other,
                amount=abs(points),
                ledger=program.ledger_id,
                code=TransferCode.ADJUSTMENT if points > 0 else TransferCode.CATALOG_REDEMPTION,
            )
        ]
    )
    assert outcome.result == "ok"


def test_month_arithmetic() -> None:
    assert calendar.add_months(datetime(2026, 1, 31, tzinfo=UTC), 1, "UTC") == datetime(
        2026, 2, 28, tzinfo=UTC
    )
    assert calendar.add_months(datetime(2026, 3, 15, tzinfo=UTC), -15, "UTC") == datetime(
        2024, 12, 15, tzinfo=UTC
    )


async def test_fixed_expiry_takes_only_expired_unspent_points(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(expiry_policy="fixed", expiry_months=TERM)
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="old"), principal=system("test")
    )
    await session.commit()
    await move(ledger, program, member, 100)  # the older lot
    await move(ledger, program, member, -30)  # spends the older lot first
    await asyncio.sleep(0.3)
    boundary = datetime.now(UTC)
    await asyncio.sleep(0.3)
    await move(ledger, program, member, 50)  # the newer lot
    # A term after the boundary, only the older lot has expired: 70 left of it.
    at = calendar.add_months(boundary, TERM, "UTC")
    soon = await expiring_soon(ledger, program, member, at - timedelta(days=30))
    assert soon.points == 70
    assert await expire_points(session, ledger, program, at) == 70
    assert await expire_points(session, ledger, program, at) == 0  # once
    balance = await member_balance(ledger, program, member)
    assert balance.available == 50
    # Later the newer lot goes too.
    assert await expire_points(session, ledger, program, at + timedelta(days=1)) == 50
    [breakage] = await ledger.lookup_accounts([program.breakage_account_id])
    assert breakage.credits_posted == 120
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_inactivity_expires_all_after_quiet_months(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(expiry_policy="inactivity", expiry_months=TERM)
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="quiet"), principal=system("test")
    )
    await session.commit()
    await move(ledger, program, member, 80)
    now = datetime.now(UTC)
    assert (
        await expire_points(session, ledger, program, calendar.add_months(now, TERM - 1, "UTC"))
        == 0
    )
    assert (
        await expire_points(
            session, ledger, program, calendar.add_months(now, TERM, "UTC") + timedelta(seconds=5)
        )
        == 80
    )
    assert (await member_balance(ledger, program, member)).available == 0


async def test_expiry_waits_out_a_spend_in_progress(
    engine: AsyncEngine, session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    """A spend holds its member's row from its read to its commit: expiry
    skips that member instead of reading a wallet about to change."""
    program = await new_program(expiry_policy="inactivity", expiry_months=TERM)
    busy, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="busy"), principal=system("test")
    )
    idle, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="idle"), principal=system("test")
    )
    await session.commit()
    await move(ledger, program, busy, 80)
    await move(ledger, program, idle, 20)
    later = calendar.add_months(datetime.now(UTC), TERM, "UTC") + timedelta(seconds=5)
    async with AsyncSession(engine) as spender:
        await lock_member(spender, busy.id)  # a redemption in progress
        assert await expire_points(session, ledger, program, later) == 20
        await move(ledger, program, busy, -30)  # the redemption lands
        await spender.commit()
    # The next run sees the wallet after the spend, never before it.
    assert await expire_points(session, ledger, program, later) == 50
    assert (await member_balance(ledger, program, busy)).available == 0
