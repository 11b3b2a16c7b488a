"""A refund of bought points reverses the payment's own lot, wherever it
still is, before the wallet's other points (oldest first), then debt: as a
return does for a purchase."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from core.models import Member, Program
from core.principal import system
from ledger import Ledger, check_invariants
from rewards.bought_points import (
    PointsPaid,
    bought_lot,
    credit_bought_points,
    refund_bought_points,
)
from rewards.programs import member_balance
from tests.conftest import NewProgram
from tests.rewards.lot_helpers import credit, remaining, spend
from tests.rewards.test_purchases import NOW, enrol


async def bought(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    payment: str,
    points: int,
) -> None:
    await credit_bought_points(
        session,
        ledger,
        program,
        member,
        PointsPaid(payment_id=payment, points=points, paid_minor=points, currency="ZAR"),
        principal=system("test"),
    )
    await session.commit()


async def refund(
    session: AsyncSession, ledger: Ledger, payment: str, minor: int
) -> tuple[int, int]:
    done = await refund_bought_points(session, ledger, payment, minor, principal=system("test"))
    await session.commit()
    assert done is not None
    return done.points, done.debt_points


async def test_a_refund_takes_the_bought_lot_not_the_oldest(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await new_program()
    member = await enrol(session, ledger, program, "ann")
    pay = f"pi_{program.slug}"  # payment ids are unique across programs
    older = await credit(ledger, program, member, 100)
    await bought(session, ledger, program, member, pay, 50)
    await spend(ledger, program, member, 30)  # the oldest first: 70 left of it
    lot = bought_lot(program, pay)
    assert await remaining(pool, member) == {older: 70, lot: 50}

    assert await refund(session, ledger, pay, 20) == (20, 0)
    assert await remaining(pool, member) == {older: 70, lot: 30}
    assert await refund(session, ledger, pay, 50) == (30, 0)
    assert await remaining(pool, member) == {older: 70, lot: 0}
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_what_the_lot_no_longer_holds_comes_from_the_oldest_then_debt(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await new_program()
    member = await enrol(session, ledger, program, "ann")
    pay = f"pi_{program.slug}"  # payment ids are unique across programs
    first = await credit(ledger, program, member, 10)
    await bought(session, ledger, program, member, pay, 50)
    await spend(ledger, program, member, 30)  # 10 of the first lot, 20 of the bought one
    # A lot earned before the purchase, posted late: older than the bought lot.
    backdated = await credit(ledger, program, member, 15, effective_at=NOW - timedelta(days=30))
    lot = bought_lot(program, pay)
    assert await remaining(pool, member) == {first: 0, lot: 30, backdated: 15}

    # 30 from the bought lot, then 10 of the oldest other lot.
    assert await refund(session, ledger, pay, 40) == (40, 0)
    assert await remaining(pool, member) == {first: 0, lot: 0, backdated: 5}
    # The rest of the payment: 5 left in the wallet, 5 owed.
    assert await refund(session, ledger, pay, 50) == (10, 5)
    assert await remaining(pool, member) == {first: 0, lot: 0, backdated: 0}
    balance = await member_balance(ledger, program, member)
    assert (balance.available, balance.debt) == (0, 5)
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_the_reversal_names_the_bought_lot(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    member = await enrol(session, ledger, program, "ann")
    pay = f"pi_{program.slug}"  # payment ids are unique across programs
    await bought(session, ledger, program, member, pay, 40)
    await refund(session, ledger, pay, 40)
    page = await ledger.history(member.wallet_account_id, limit=10)
    [reversal] = [t for t in page.transfers if t.code == TransferCode.BOUGHT_POINTS_REFUND]
    assert reversal.metadata is not None
    assert reversal.metadata["lots"] == [str(bought_lot(program, pay))]
