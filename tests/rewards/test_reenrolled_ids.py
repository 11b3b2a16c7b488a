"""A member enrolled again after an erasure, under the same external id, is
another member: the ids derived for their redemptions, holds, gifts and
expiries come from the member, not the external id, so reusing the erased
member's idempotency keys gives a fresh outcome (not the ledger's
``exists_with_different_fields``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Member, Program
from core.principal import system
from ledger import Ledger
from rewards.expiry import expire_points
from rewards.holds import HoldRequest, hold_points
from rewards.privacy import erase_member
from rewards.programs import member_balance
from rewards.redeeming import (
    GiftRequest,
    RedemptionRequest,
    RewardSpec,
    add_reward,
    give_gift,
    redeem,
)
from tests.conftest import NewProgram
from tests.rewards.test_redeeming import funded

TEST = system("test")


async def spend(
    session: AsyncSession, ledger: Ledger, program: Program, member: Member, now: datetime
) -> tuple[bool, int, bool, bool]:
    """Redeem, hold and give under the same three keys each time."""
    redeemed = await redeem(
        session, ledger, program, member, "redeem-1", RedemptionRequest(sku="MUG"), now
    )
    held = await hold_points(
        session,
        ledger,
        program,
        member,
        "hold-1",
        HoldRequest(order_ref="cart-1", amount_minor=30),
        now,
    )
    given = await give_gift(
        session, ledger, program, member, "gift-1", GiftRequest(to="friend", points=5), now
    )
    await session.commit()
    return redeemed.replayed, held.points, held.replayed, given.replayed


async def test_keys_of_an_erased_member_start_afresh_for_the_one_enrolled_again(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    now = datetime.now(UTC)
    await add_reward(
        session, program, RewardSpec(sku="MUG", name="Mug", points_price=10), principal=TEST
    )
    await session.commit()
    await funded(session, ledger, program, "friend", 0)
    first = await funded(session, ledger, program, "ann", 100)
    assert await spend(session, ledger, program, first, now) == (False, 30, False, False)
    await erase_member(session, program, first, principal=TEST, others=())
    await session.commit()

    again = await funded(session, ledger, program, "ann", 100)
    outcome = await spend(session, ledger, program, again, now)

    assert again.id != first.id
    assert outcome == (False, 30, False, False)  # new, not replayed nor refused
    assert (await member_balance(ledger, program, again)).available == 100 - 10 - 30 - 5
    # The erased member's own history is untouched.
    erased = await member_balance(ledger, program, first)
    assert erased.available == 100 - 10 - 30 - 5


async def test_expiry_of_the_member_enrolled_again_is_their_own(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(expiry_policy="fixed", expiry_months=1)
    later = datetime.now(UTC) + timedelta(days=70)
    first = await funded(session, ledger, program, "bea", 40)
    assert await expire_points(session, ledger, program, later) == 40
    await erase_member(session, program, first, principal=TEST, others=())
    await session.commit()

    # The same external id, the same wallet state as read (no debit yet).
    again = await funded(session, ledger, program, "bea", 25)
    expired = await expire_points(session, ledger, program, later)

    assert expired == 25
    assert (await member_balance(ledger, program, again)).available == 0
