"""Cancelling a completed redemption or a captured points payment restores
exactly the points it consumed, to their lots, with their original expiry:
once, audited, under the member's lock."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.audit import audit_events
from core.codes import TransferCode
from core.errors import Conflict, NotFound
from core.models import Member, Program
from core.principal import system
from ledger import Ledger, check_invariants
from ledger.lots import lots_of
from partners.acceptance import capture_hold as capture_partner_hold
from partners.acceptance import refund_hold, reserve_points
from partners.coalition_schemas import CaptureRequest, RefundRequest
from rewards.cancellations import (
    AlreadyCancelled,
    SpendCancellationRequest,
    SpendNotCompleted,
    cancel_points_payment,
    cancel_redemption,
)
from rewards.holds import Capture, HoldRequest, capture_hold, hold_points, release_hold
from rewards.lot_models import SpendCancellation
from rewards.models import CatalogReward, Redemption
from rewards.programs import Enrolment, enrol_member, member_balance
from rewards.redeeming import RedemptionRequest, RewardSpec, add_reward, redeem
from tests.conftest import NewProgram

# Fixtures of the partners' tests: a partner's checkout, of member ``ann``.
from tests.partners.conftest import new_partner  # noqa: F401
from tests.partners.test_acceptance import Checkout, checkout  # noqa: F401
from tests.partners.test_acceptance import hold as partner_hold
from tests.rewards.lot_helpers import credit, remaining, undo

OPERATOR = system("support")


def cancellation(cancellation_id: str = "C-1") -> SpendCancellationRequest:
    return SpendCancellationRequest(cancellation_id=cancellation_id, reason="order cancelled")


async def member_with_lots(
    session: AsyncSession, ledger: Ledger, program: Program, *points: int
) -> tuple[Member, list[uuid.UUID]]:
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="ann"), principal=system("test")
    )
    await session.commit()
    return member, [await credit(ledger, program, member, p) for p in points]


async def redeemed(
    session: AsyncSession, ledger: Ledger, program: Program, member: Member, price: int
) -> Redemption:
    await add_reward(
        session,
        program,
        RewardSpec(sku="MUG", name="Mug", points_price=price, stock=3),
        principal=system("test"),
    )
    await redeem(
        session, ledger, program, member, "r-1", RedemptionRequest(sku="MUG"), datetime.now(UTC)
    )
    await session.commit()
    found = await session.scalar(select(Redemption).where(Redemption.member_id == member.id))
    assert found is not None
    return found


async def test_cancelling_a_redemption_restores_the_lots_it_consumed(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await new_program()
    member, (first, second) = await member_with_lots(session, ledger, program, 100, 100)
    before = {lot.id: lot for lot in await lots_of(pool, member.wallet_account_id)}
    redemption = await redeemed(session, ledger, program, member, 150)  # all of first, 50 of second
    newer = await credit(ledger, program, member, 30)
    assert await remaining(pool, member) == {first: 0, second: 50, newer: 30}

    outcome = await cancel_redemption(
        session, ledger, program, member, redemption.transfer_id, cancellation(), principal=OPERATOR
    )
    await session.commit()

    assert (outcome.points, outcome.replayed, outcome.kind) == (150, False, "redemption")
    # Back where they came from: no new lot, the newer one untouched.
    assert await remaining(pool, member) == {first: 100, second: 100, newer: 30}
    after = {lot.id: lot for lot in await lots_of(pool, member.wallet_account_id)}
    for lot in (first, second):
        # With their original dates, so their original expiry.
        assert (after[lot].earned_at, after[lot].expires_at) == (
            before[lot].earned_at,
            before[lot].expires_at,
        )
    [restoring] = await ledger.lookup_transfers([outcome.transfer_id])
    assert restoring.code == TransferCode.REDEMPTION_CANCELLATION
    assert restoring.metadata is not None
    assert restoring.metadata["restores"] == str(redemption.transfer_id)
    assert (await member_balance(ledger, program, member)).available == 230
    reward = await session.scalar(
        select(CatalogReward).where(CatalogReward.program_id == program.id)
    )
    assert reward is not None and reward.stock == 3  # the unit is back in stock
    lines = await session.scalar(
        select(func.count()).where(
            audit_events.c.action == "redemption.cancel",
            audit_events.c.subject == f"program:{program.slug}:member:ann",
        )
    )
    assert lines == 1
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_a_cancellation_is_once_and_refuses_a_second(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await new_program()
    member, _ = await member_with_lots(session, ledger, program, 100)
    redemption = await redeemed(session, ledger, program, member, 40)
    first = await cancel_redemption(
        session, ledger, program, member, redemption.transfer_id, cancellation(), principal=OPERATOR
    )
    await session.commit()
    ledger_writes = await pool.fetchval(
        "SELECT count(*) FROM transfers WHERE ledger = $1", program.ledger_id
    )

    again = await cancel_redemption(
        session, ledger, program, member, redemption.transfer_id, cancellation(), principal=OPERATOR
    )
    await session.commit()
    assert (again.replayed, again.transfer_id, again.points) == (True, first.transfer_id, 40)
    with pytest.raises(AlreadyCancelled):
        await cancel_redemption(
            session,
            ledger,
            program,
            member,
            redemption.transfer_id,
            cancellation("C-2"),
            principal=OPERATOR,
        )
    await undo(session, program, member, redemption)
    with pytest.raises(NotFound):
        await cancel_redemption(
            session, ledger, program, member, uuid.uuid4(), cancellation("C-3"), principal=OPERATOR
        )
    await undo(session, program, member, redemption)

    assert (await member_balance(ledger, program, member)).available == 100
    assert (
        await pool.fetchval("SELECT count(*) FROM transfers WHERE ledger = $1", program.ledger_id)
        == ledger_writes
    )
    count = await session.scalar(
        select(func.count())
        .select_from(SpendCancellation)
        .where(SpendCancellation.program_id == program.id)
    )
    assert count == 1


async def test_concurrent_cancellations_restore_once(
    engine: AsyncEngine, session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    member, _ = await member_with_lots(session, ledger, program, 100)
    redemption = await redeemed(session, ledger, program, member, 60)

    async def cancel(cancellation_id: str) -> str:
        async with AsyncSession(engine, expire_on_commit=False) as own:
            try:
                await cancel_redemption(
                    own,
                    ledger,
                    await own.merge(program),
                    await own.merge(member),
                    redemption.transfer_id,
                    cancellation(cancellation_id),
                    principal=OPERATOR,
                )
                await own.commit()
            except AlreadyCancelled:
                return "refused"
            return "cancelled"

    answers = await asyncio.gather(*(cancel(f"C-{n}") for n in range(4)))
    assert sorted(answers) == ["cancelled", "refused", "refused", "refused"]
    assert (await member_balance(ledger, program, member)).available == 100
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_cancelling_a_captured_payment_restores_what_the_capture_took(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await new_program()
    member, (first, second) = await member_with_lots(session, ledger, program, 50, 100)
    now = datetime.now(UTC)
    hold = await hold_points(
        session, ledger, program, member, "h-1", HoldRequest(order_ref="O-1", amount_minor=90), now
    )
    await session.commit()
    await capture_hold(
        session, ledger, program, hold.id, Capture(points=80), now, principal=OPERATOR
    )
    await session.commit()
    assert await remaining(pool, member) == {first: 0, second: 70}

    outcome = await cancel_points_payment(
        session, ledger, program, hold.id, cancellation(), principal=OPERATOR
    )
    await session.commit()

    assert (outcome.points, outcome.kind) == (80, "points_payment")
    assert await remaining(pool, member) == {first: 50, second: 100}
    [restoring] = await ledger.lookup_transfers([outcome.transfer_id])
    assert restoring.code == TransferCode.POINTS_PAYMENT_CANCELLATION
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_a_hold_not_captured_cannot_be_cancelled(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    member, _ = await member_with_lots(session, ledger, program, 100)
    now = datetime.now(UTC)
    held = await hold_points(
        session, ledger, program, member, "h-1", HoldRequest(order_ref="O-1", amount_minor=10), now
    )
    released = await hold_points(
        session, ledger, program, member, "h-2", HoldRequest(order_ref="O-2", amount_minor=10), now
    )
    await session.commit()
    await release_hold(session, ledger, program, released.id, now, principal=OPERATOR)
    await session.commit()
    for hold in (held, released):
        with pytest.raises(SpendNotCompleted):
            await cancel_points_payment(
                session, ledger, program, hold.id, cancellation(f"C-{hold.id}"), principal=OPERATOR
            )
        await undo(session, program, member)
    with pytest.raises(NotFound):
        await cancel_points_payment(
            session, ledger, program, uuid.uuid4(), cancellation(), principal=OPERATOR
        )
    await undo(session, program, member)
    balance = await member_balance(ledger, program, member)
    assert (balance.available, balance.pending) == (90, 10)


async def test_a_cancellation_id_names_one_spend(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    member, _ = await member_with_lots(session, ledger, program, 100)
    redemption = await redeemed(session, ledger, program, member, 10)
    now = datetime.now(UTC)
    hold = await hold_points(
        session, ledger, program, member, "h-1", HoldRequest(order_ref="O-1", amount_minor=10), now
    )
    await session.commit()
    await capture_hold(session, ledger, program, hold.id, Capture(), now, principal=OPERATOR)
    await session.commit()
    await cancel_redemption(
        session, ledger, program, member, redemption.transfer_id, cancellation(), principal=OPERATOR
    )
    await session.commit()
    with pytest.raises(Conflict):
        await cancel_points_payment(
            session, ledger, program, hold.id, cancellation(), principal=OPERATOR
        )
    await undo(session, program, member)
    assert (await member_balance(ledger, program, member)).available == 90


async def test_a_partners_refund_restores_the_lots_its_capture_took(
    checkout: Checkout,  # noqa: F811 (the fixture)
    ledger: Ledger,
    pool: asyncpg.Pool,
) -> None:
    s, now, member = checkout.session, datetime.now(UTC), checkout.member
    [issued] = await lots_of(pool, member.wallet_account_id)
    view = await reserve_points(
        s, ledger, partner_hold(points=300), now, principal=checkout.principal
    )
    await s.commit()
    hold_id = uuid.UUID(view.id)
    await capture_partner_hold(
        s, ledger, hold_id, CaptureRequest(), now, principal=checkout.principal
    )
    await s.commit()
    assert await remaining(pool, member) == {issued.id: 700}

    await refund_hold(
        s,
        ledger,
        hold_id,
        RefundRequest(refund_id="R-1", points=100),
        now,
        principal=checkout.principal,
    )
    await s.commit()

    # Back into the issued lot, with its date: no lot of the refund's own.
    assert await remaining(pool, member) == {issued.id: 800}
    [lot] = await lots_of(pool, member.wallet_account_id)
    assert (lot.earned_at, lot.expires_at) == (issued.earned_at, issued.expires_at)
