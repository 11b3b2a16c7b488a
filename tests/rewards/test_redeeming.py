"""Redemptions and gifts against PostgreSQL: idempotent, never overspent."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.codes import TransferCode
from core.errors import IdempotencyKeyReused
from core.members import get_member
from core.models import Member, Program
from core.principal import system
from core.programs import get_program
from ledger import Ledger, Transfer, check_invariants
from rewards.errors import GiftLimitExceeded, InsufficientPoints, RewardUnavailable
from rewards.models import CatalogReward
from rewards.programs import Enrolment, enrol_member, member_balance
from rewards.redeeming import (
    GiftRequest,
    RedemptionRequest,
    RewardSpec,
    add_reward,
    give_gift,
    redeem,
)
from tests.conftest import NewProgram


async def funded(
    session: AsyncSession, ledger: Ledger, program: Program, name: str, points: int
) -> Member:
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id=name), principal=system("test")
    )
    await session.commit()
    if points:
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


async def test_concurrent_redemptions_never_overspend(
    engine: AsyncEngine, session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    await add_reward(
        session,
        program,
        RewardSpec(sku="MUG", name="Mug", points_price=30, stock=50),
        principal=system("test"),
    )
    await session.commit()
    await funded(session, ledger, program, "ann", 100)
    slug = program.slug

    async def attempt(n: int) -> str:
        async with AsyncSession(engine, expire_on_commit=False) as own:
            own_program = await get_program(own, system("test"), slug)
            member = await get_member(own, own_program, "ann")
            try:
                await redeem(
                    own,
                    ledger,
                    own_program,
                    member,
                    f"key-{n}",
                    RedemptionRequest(sku="MUG"),
                    datetime.now(UTC),
                )
                await own.commit()
            except InsufficientPoints:
                return "refused"
            return "ok"

    results = await asyncio.gather(*(attempt(n) for n in range(10)))
    assert results.count("ok") == 3
    member = await get_member(session, program, "ann")
    assert (await member_balance(ledger, program, member)).available == 10
    program_id, ledger_id = program.id, program.ledger_id
    session.expire_all()  # read the stock as committed by the other sessions

    reward = await session.scalar(
        select(CatalogReward).where(CatalogReward.program_id == program_id)
    )
    assert reward is not None and reward.stock == 47
    assert await check_invariants(ledger.pool, ledger_id) == []


async def test_redemption_key_replays_and_stock(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    await add_reward(
        session,
        program,
        RewardSpec(sku="CAP", name="Cap", points_price=10, stock=1),
        principal=system("test"),
    )
    await session.commit()
    member = await funded(session, ledger, program, "ben", 100)
    now = datetime.now(UTC)
    first = await redeem(session, ledger, program, member, "k1", RedemptionRequest(sku="CAP"), now)
    await session.commit()
    again = await redeem(session, ledger, program, member, "k1", RedemptionRequest(sku="CAP"), now)
    assert (first.points, first.replayed, again.replayed) == (10, False, True)
    with pytest.raises(IdempotencyKeyReused):
        await redeem(
            session, ledger, program, member, "k1", RedemptionRequest(sku="CAP", quantity=2), now
        )
    with pytest.raises(RewardUnavailable, match="out of stock"):
        await redeem(session, ledger, program, member, "k2", RedemptionRequest(sku="CAP"), now)
    assert (await member_balance(ledger, program, member)).available == 90


async def test_twenty_parallel_gifts_each_counted_once(
    engine: AsyncEngine, session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    await funded(session, ledger, program, "cat", 1000)
    await funded(session, ledger, program, "dan", 0)
    slug = program.slug

    async def send(n: int) -> None:
        async with AsyncSession(engine, expire_on_commit=False) as own:
            own_program = await get_program(own, system("test"), slug)
            sender = await get_member(own, own_program, "cat")
            await give_gift(
                own,
                ledger,
                own_program,
                sender,
                f"gift-{n % 20}",
                GiftRequest(to="dan", points=7),
                datetime.now(UTC),
            )
            await own.commit()

    # Twenty gifts, each delivered twice at once: each counts exactly once.
    outcomes = await asyncio.gather(*(send(n) for n in range(40)), return_exceptions=True)
    assert all(o is None or isinstance(o, Exception) for o in outcomes)
    for n in range(20):  # the losers of a race retry: a replay, not a second gift
        await send(n)
    cat = await get_member(session, program, "cat")
    dan = await get_member(session, program, "dan")
    assert (await member_balance(ledger, program, dan)).available == 140
    assert (await member_balance(ledger, program, cat)).available == 860


async def test_gift_daily_limit(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    program.gift_daily_limit = 100
    await session.commit()
    sender = await funded(session, ledger, program, "eve", 1000)
    await funded(session, ledger, program, "fay", 0)
    now = datetime.now(UTC)
    await give_gift(session, ledger, program, sender, "g1", GiftRequest(to="fay", points=60), now)
    await session.commit()
    with pytest.raises(GiftLimitExceeded):
        await give_gift(
            session, ledger, program, sender, "g2", GiftRequest(to="fay", points=41), now
        )
    slug = program.slug
    await session.rollback()  # expires every loaded object
    program = await get_program(session, system("test"), slug)
    sender = await get_member(session, program, "eve")
    await give_gift(session, ledger, program, sender, "g3", GiftRequest(to="fay", points=40), now)
    await session.commit()
    fay = await get_member(session, program, "fay")
    assert (await member_balance(ledger, program, fay)).available == 100
