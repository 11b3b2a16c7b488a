"""Points as payment: hold, capture (in part), release, time out."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from core.models import Member, Program
from core.principal import system
from ledger import Ledger, Transfer, check_invariants
from rewards.errors import CaptureExceedsHold, HoldClosed, InsufficientPoints
from rewards.holds import (
    Capture,
    HoldRequest,
    capture_hold,
    hold_points,
    points_for_amount,
    release_hold,
)
from rewards.programs import Enrolment, enrol_member, member_balance, read_balance
from tests.conftest import NewProgram


async def funded(session: AsyncSession, ledger: Ledger, program: Program, points: int) -> Member:
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="payer"), principal=system("test")
    )
    await session.commit()
    [outcome] = await ledger.create_transfers(
        [
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=program.issuance_account_id,
                credit_account_id=member.wallet_account_id,
                amount=points,
                ledger=program.ledger_id,
                code=TransferCode.ADJUSTMENT,
            )
        ]
    )
    assert outcome.result == "ok"
    return member


async def test_redeem_rate_rounds_up(new_program: NewProgram) -> None:
    program = await new_program(point_value_minor=Decimal("0.5"))  # 200 points = 1.00
    assert points_for_amount(program, 1000) == 2000
    assert points_for_amount(program, 1) == 2
    cheap = await new_program(point_value_minor=Decimal(3))
    assert points_for_amount(cheap, 10) == 4  # 3.33 rounded up


async def test_hold_then_partial_capture(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    member = await funded(session, ledger, program, 500)
    now = datetime.now(UTC)
    held = await hold_points(
        session,
        ledger,
        program,
        member,
        "k1",
        HoldRequest(order_ref="ORD-1", amount_minor=300),
        now,
    )
    await session.commit()
    balance = await member_balance(ledger, program, member)
    assert (held.points, balance.available) == (300, 200)
    with pytest.raises(InsufficientPoints):
        await hold_points(
            session,
            ledger,
            program,
            member,
            "k2",
            HoldRequest(order_ref="ORD-2", amount_minor=201),
            now,
        )
    replay = await hold_points(
        session,
        ledger,
        program,
        member,
        "k1",
        HoldRequest(order_ref="ORD-1", amount_minor=300),
        now,
    )
    assert replay.replayed and replay.id == held.id
    with pytest.raises(CaptureExceedsHold):
        await capture_hold(
            session, ledger, program, held.id, Capture(points=301), now, principal=system("test")
        )
    captured = await capture_hold(
        session, ledger, program, held.id, Capture(points=250), now, principal=system("test")
    )
    await session.commit()
    assert (captured.status, captured.captured_points) == ("captured", 250)
    assert (await member_balance(ledger, program, member)).available == 250
    with pytest.raises(HoldClosed):
        await release_hold(session, ledger, program, held.id, now, principal=system("test"))
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_release_and_timeout(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    member = await funded(session, ledger, program, 100)
    now = datetime.now(UTC)
    first = await hold_points(
        session, ledger, program, member, "a", HoldRequest(order_ref="A", amount_minor=60), now
    )
    released = await release_hold(session, ledger, program, first.id, now, principal=system("test"))
    await session.commit()
    assert released.status == "released"
    assert (await member_balance(ledger, program, member)).available == 100

    short = await hold_points(
        session,
        ledger,
        program,
        member,
        "b",
        HoldRequest(order_ref="B", amount_minor=70, timeout_seconds=1),
        now,
    )
    await session.commit()
    await asyncio.sleep(1.2)
    # The ledger's clock says it timed out: a capture is refused, the sweeper frees it.
    with pytest.raises(HoldClosed, match="pending_expired"):
        await capture_hold(
            session,
            ledger,
            program,
            short.id,
            Capture(),
            datetime.now(UTC),
            principal=system("test"),
        )
    await session.commit()  # nothing changed; ends the transaction and its row lock
    while await ledger.expire_pending():
        pass
    assert (await member_balance(ledger, program, member)).available == 100


async def test_held_points_are_pending_until_resolved(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    """The balance documents ``pending`` as "earned but not posted, or held":
    both reads (ORM and the member app's one query) count a hold there."""
    program = await new_program()
    member = await funded(session, ledger, program, 500)
    now = datetime.now(UTC)
    held = await hold_points(
        session, ledger, program, member, "p", HoldRequest(order_ref="P", amount_minor=120), now
    )
    await session.commit()
    for balance in (
        await member_balance(ledger, program, member),
        await read_balance(ledger.pool, program, member.external_id),
    ):
        assert (balance.available, balance.pending) == (380, 120)
    await capture_hold(
        session, ledger, program, held.id, Capture(points=100), now, principal=system("test")
    )
    await session.commit()
    for balance in (
        await member_balance(ledger, program, member),
        await read_balance(ledger.pool, program, member.external_id),
    ):
        assert (balance.available, balance.pending) == (400, 0)
