"""A return reverses exactly the returned purchase's own points, wherever
they still are: its lot first, then the wallet's other points (oldest
first), then debt."""

from __future__ import annotations

import uuid
from datetime import timedelta

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode, derived_id
from core.models import Member, Program
from core.principal import system
from ledger import Ledger, check_invariants
from rewards.programs import member_balance
from rewards.purchase_recording import record_purchase
from rewards.purchases import ReturnEvent
from rewards.returns import return_purchase
from rewards.settlement import settle_matured_earnings
from tests.conftest import NewProgram
from tests.rewards.lot_helpers import credit, remaining, spend
from tests.rewards.test_purchases import NOW, enrol, purchase, with_rules


async def settled(
    session: AsyncSession, ledger: Ledger, program: Program, order: str, amount: int
) -> None:
    """A purchase of ``amount`` (1 point per unit), its points posted now."""
    await record_purchase(
        session, ledger, program, purchase("ann", order, amount), NOW, principal=system("test")
    )
    await settle_matured_earnings(session, ledger, NOW, program=program)
    await session.commit()


async def shop(session: AsyncSession, ledger: Ledger, new_program: NewProgram) -> Program:
    program = await new_program(return_window_days=0)
    await with_rules(session, program, "1", NOW - timedelta(days=1))
    return program


def lot_of(program: Program, order: str) -> uuid.UUID:
    return derived_id(program.id, "settle", order)


async def test_a_return_takes_its_own_purchases_lot_not_the_oldest(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await shop(session, ledger, new_program)
    member = await enrol(session, ledger, program, "ann")
    await settled(session, ledger, program, "P-1", 10_000)  # the older lot: 100
    await settled(session, ledger, program, "P-2", 5_000)  # 50
    await spend(ledger, program, member, 60)  # the oldest first: P-1 keeps 40
    assert await remaining(pool, member) == {lot_of(program, "P-1"): 40, lot_of(program, "P-2"): 50}

    returned = await return_purchase(
        session,
        ledger,
        program,
        "P-2",
        ReturnEvent(return_id="R-1", amount_minor=2_000),
        principal=system("test"),
    )
    await session.commit()

    assert (returned.points_reversed, returned.debt_points) == (20, 0)
    # From P-2's own lot; the older P-1 lot is untouched.
    assert await remaining(pool, member) == {lot_of(program, "P-1"): 40, lot_of(program, "P-2"): 30}
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_beyond_its_lot_the_return_takes_other_points_then_debt(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await shop(session, ledger, new_program)
    member = await enrol(session, ledger, program, "ann")
    await settled(session, ledger, program, "P-1", 10_000)  # 100
    await settled(session, ledger, program, "P-2", 5_000)  # 50
    await spend(ledger, program, member, 120)  # P-1 all, 20 of P-2
    later = await credit(ledger, program, member, 10)  # a newer lot

    returned = await return_purchase(
        session,
        ledger,
        program,
        "P-2",
        ReturnEvent(return_id="R-1", amount_minor=5_000),
        principal=system("test"),
    )
    await session.commit()

    # 30 from P-2's lot, 10 from the other lot, 10 owed.
    assert (returned.points_reversed, returned.debt_points) == (50, 10)
    lots = await remaining(pool, member)
    assert (lots[lot_of(program, "P-2")], lots[later]) == (0, 0)
    balance = await member_balance(ledger, program, member)
    assert (balance.available, balance.debt) == (0, 10)
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_the_reversal_names_the_purchases_lot(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await shop(session, ledger, new_program)
    member: Member = await enrol(session, ledger, program, "ann")
    await settled(session, ledger, program, "P-1", 3_000)
    await return_purchase(
        session,
        ledger,
        program,
        "P-1",
        ReturnEvent(return_id="R-1", amount_minor=1_000),
        principal=system("test"),
    )
    await session.commit()
    page = await ledger.history(member.wallet_account_id, limit=10)
    [reversal] = [t for t in page.transfers if t.code == TransferCode.RETURN_REVERSAL]
    assert reversal.metadata is not None
    assert reversal.metadata["lots"] == [str(lot_of(program, "P-1"))]
    assert reversal.metadata["order_id"] == "P-1"
