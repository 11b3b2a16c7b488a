"""Bought points refunded by a principal bound to a program: another
program's payment is neither seen nor locked."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.principal import Principal, PrincipalKind, system
from ledger import Ledger
from rewards.bought_points import PointsPaid, credit_bought_points, refund_bought_points
from tests.conftest import NewProgram
from tests.rewards.test_purchases import enrol


async def test_a_refund_by_another_programs_principal_locks_no_row(
    session: AsyncSession,
    engine: AsyncEngine,
    pool: asyncpg.Pool,
    ledger: Ledger,
    new_program: NewProgram,
) -> None:
    program = await new_program()
    other = await new_program()
    member = await enrol(session, ledger, program, "thandi")
    payment = f"pi_{program.slug}"
    await credit_bought_points(
        session,
        ledger,
        program,
        member,
        PointsPaid(payment_id=payment, points=100, paid_minor=100, currency="ZAR"),
        principal=system("test"),
    )
    await session.commit()
    outsider = Principal(kind=PrincipalKind.OPERATOR, actor="key:other", program_id=other.id)
    async with AsyncSession(engine) as theirs, theirs.begin():
        assert await refund_bought_points(theirs, ledger, payment, 100, principal=outsider) is None
        # Still inside the outsider's transaction: the payment's row is
        # free for its own program's refund.
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute("SET LOCAL lock_timeout = '1s'")
            try:
                await connection.execute(
                    "SELECT 1 FROM points_purchases WHERE payment_intent = $1 FOR UPDATE", payment
                )
            except asyncpg.LockNotAvailableError:
                pytest.fail("another program's principal locked the payment's row")
