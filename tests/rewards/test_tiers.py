"""Tiers at threshold and window edges, downgrades, threshold rewards once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.codes import derived_id
from core.members import get_member
from core.models import Member, Program
from core.principal import system
from core.programs import get_program
from ledger import Ledger, Transfer, TransferFlags
from rewards.programs import Enrolment, enrol_member, member_balance
from rewards.purchase_recording import record_purchase
from rewards.purchases import PurchaseEvent, ReturnEvent
from rewards.returns import return_purchase
from rewards.rule_versions import draft_rules, publish_rules
from rewards.rules import EarnRules
from rewards.settlement import settle_matured_earnings
from rewards.tiers import (
    ThresholdSpec,
    TierSpec,
    define_threshold,
    define_tier,
    evaluate_tiers,
    tier_progress,
)
from tests.conftest import NewProgram

YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)


async def ladder_program(
    session: AsyncSession, new_program: NewProgram, **fields: object
) -> Program:
    program = await new_program(**fields)
    for rank, (code, threshold) in enumerate(
        (("blue", 0), ("silver", 10_000), ("gold", 50_000)), start=1
    ):
        await define_tier(
            session,
            program,
            TierSpec(
                code=code, name=code.title(), rank=rank, threshold=threshold, perks=[f"{code}-perk"]
            ),
            principal=system("test"),
        )
    version = await draft_rules(
        session,
        program,
        EarnRules(points_per_unit=Decimal(1), tier_multipliers={"gold": Decimal(2)}),
        principal=system("test"),
    )
    await publish_rules(
        session,
        program,
        version.version,
        YEAR_START - timedelta(days=400),
        now=YEAR_START - timedelta(days=400),
        principal=system("test"),
    )
    await session.commit()
    return program


async def buy(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: str,
    order: str,
    amount: int,
    at: datetime,
) -> int:
    outcome = await record_purchase(
        session,
        ledger,
        program,
        PurchaseEvent(
            member=member, order_id=order, amount_minor=amount, currency="ZAR", occurred_at=at
        ),
        now=at,
        principal=system("test"),
    )
    await session.commit()
    return outcome.points


async def enrol(session: AsyncSession, ledger: Ledger, program: Program, name: str) -> Member:
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id=name), principal=system("test")
    )
    await session.commit()
    return member


async def test_upgrade_exactly_at_threshold_and_window_edges(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await ladder_program(session, new_program)
    member = await enrol(session, ledger, program, "ann")
    last_second = YEAR_START - timedelta(microseconds=1)
    # 9,999 in the old year does not count towards the new one.
    await buy(session, ledger, program, "ann", "A-0", 9_999, last_second)
    assert member.tier_code == "blue"
    await buy(session, ledger, program, "ann", "A-1", 9_999, YEAR_START)
    assert member.tier_code == "blue"
    await buy(session, ledger, program, "ann", "A-2", 1, YEAR_START + timedelta(days=1))
    assert member.tier_code == "silver"  # 10,000: exactly the threshold
    progress = await tier_progress(session, program, member, YEAR_START + timedelta(days=2))
    assert (progress.tier, progress.next_tier, progress.needed) == ("silver", "gold", 40_000)
    assert progress.by == datetime(2027, 1, 1, tzinfo=UTC)
    assert progress.perks == ["silver-perk"]
    # Gold at once, and gold earns double from then on.
    await buy(session, ledger, program, "ann", "A-3", 40_000, YEAR_START + timedelta(days=3))
    assert member.tier_code == "gold"
    assert (
        await buy(session, ledger, program, "ann", "A-4", 1_000, YEAR_START + timedelta(days=4))
        == 20
    )


async def test_downgrade_one_tier_after_grace(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    # The grace period is the column's default, 30 days (ProgramSpec does not set it).
    program = await ladder_program(session, new_program)
    member = await enrol(session, ledger, program, "ben")
    await buy(session, ledger, program, "ben", "B-1", 60_000, YEAR_START - timedelta(days=100))
    assert member.tier_code == "gold"
    # The 2025 window closed on 1 January; nothing moves during the grace period.
    assert await evaluate_tiers(session, program, YEAR_START + timedelta(days=29)) == 0
    await session.commit()
    # 2025 kept gold (60,000): no downgrade.
    assert await evaluate_tiers(session, program, YEAR_START + timedelta(days=31)) == 0
    await session.commit()
    member = await get_member(session, program, "ben")
    assert member.tier_code == "gold"
    # 2026 brings nothing: at the 2027 evaluation, gold falls one tier only.
    assert await evaluate_tiers(session, program, datetime(2027, 2, 1, tzinfo=UTC)) == 1
    await session.commit()
    member = await get_member(session, program, "ben")
    assert member.tier_code == "silver"
    # Evaluated once per closed window.
    assert await evaluate_tiers(session, program, datetime(2027, 2, 2, tzinfo=UTC)) == 0


async def test_returns_count_against_qualifying_spend(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await ladder_program(session, new_program, return_window_days=30)
    member = await enrol(session, ledger, program, "cy")
    await buy(session, ledger, program, "cy", "C-1", 12_000, YEAR_START + timedelta(days=1))
    assert member.tier_code == "silver"
    await return_purchase(
        session,
        ledger,
        program,
        "C-1",
        ReturnEvent(return_id="R", amount_minor=5_000),
        principal=system("test"),
    )
    await session.commit()
    progress = await tier_progress(session, program, member, YEAR_START + timedelta(days=2))
    # Still silver (no downgrade before the evaluation), but counting 7,000.
    assert (progress.tier, progress.qualifying) == ("silver", 7_000)


async def test_threshold_reward_granted_once_under_concurrency(
    engine: AsyncEngine, session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await ladder_program(session, new_program)
    await define_threshold(
        session,
        program,
        ThresholdSpec(code="spend-5k", amount_minor=5_000, bonus_points=500),
        principal=system("test"),
    )
    await session.commit()
    await enrol(session, ledger, program, "dee")
    slug = program.slug
    now = datetime.now(UTC)

    async def purchase(n: int) -> bool:
        async with AsyncSession(engine, expire_on_commit=False) as own:
            own_program = await get_program(own, system("test"), slug)
            try:
                await record_purchase(
                    own,
                    ledger,
                    own_program,
                    PurchaseEvent(
                        member="dee",
                        order_id=f"D-{n}",
                        amount_minor=1_000,
                        currency="ZAR",
                        occurred_at=now,
                    ),
                    now,
                    principal=system("test"),
                )
                await own.commit()
            except Exception:
                return False
            return True

    done = await asyncio.gather(*(purchase(n) for n in range(10)))
    for n, ok in enumerate(done):
        if not ok:
            assert await purchase(n)
    member = await get_member(session, program, "dee")
    balance = await member_balance(ledger, program, member)
    # 10 purchases of 1,000 earn 10 points each, plus one bonus of 500: all
    # held until the return window of the purchases ends.
    assert (balance.pending, balance.available) == (600, 0)
    await settle_matured_earnings(session, ledger, now + timedelta(days=31), program=program)
    await session.commit()
    balance = await member_balance(ledger, program, member)
    assert (balance.pending, balance.available) == (0, 600)


async def test_threshold_reward_is_taken_back_when_returns_undo_it(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await ladder_program(session, new_program, return_window_days=30)
    await define_threshold(
        session,
        program,
        ThresholdSpec(code="spend-5k", amount_minor=5_000, bonus_points=500),
        principal=system("test"),
    )
    await session.commit()
    member = await enrol(session, ledger, program, "eve")
    keeper = await enrol(session, ledger, program, "kit")
    day = YEAR_START + timedelta(days=1)
    await buy(session, ledger, program, "eve", "E-1", 6_000, day)
    await buy(session, ledger, program, "kit", "K-1", 6_000, day)
    assert (await member_balance(ledger, program, member)).pending == 60 + 500
    # A return inside the window takes eve back under the threshold.
    await return_purchase(
        session,
        ledger,
        program,
        "E-1",
        ReturnEvent(return_id="R-1", amount_minor=2_000),
        principal=system("test"),
    )
    await session.commit()
    await settle_matured_earnings(session, ledger, day + timedelta(days=31), program=program)
    await session.commit()
    eve = await member_balance(ledger, program, member)
    assert (eve.pending, eve.available) == (0, 40)  # the bonus was voided
    kit = await member_balance(ledger, program, keeper)
    assert (kit.pending, kit.available) == (0, 560)  # kit kept the spend, and the bonus
    # Crossing again later in the same window earns it anew, once.
    later = day + timedelta(days=40)
    await buy(session, ledger, program, "eve", "E-2", 1_500, later)
    await buy(session, ledger, program, "eve", "E-3", 1_500, later + timedelta(hours=1))
    await settle_matured_earnings(session, ledger, later + timedelta(days=31), program=program)
    await session.commit()
    eve = await member_balance(ledger, program, member)
    assert (eve.pending, eve.available) == (0, 40 + 15 + 15 + 500)


async def test_a_threshold_settlement_already_in_the_ledger_stands(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    """The ledger recorded a settlement whose rewards-side commit was lost; a
    return then changes the decision: the rerun adopts what was recorded."""
    program = await ladder_program(session, new_program, return_window_days=30)
    await define_threshold(
        session,
        program,
        ThresholdSpec(code="spend-5k", amount_minor=5_000, bonus_points=500),
        principal=system("test"),
    )
    await session.commit()
    member = await enrol(session, ledger, program, "fay")
    day = YEAR_START + timedelta(days=1)
    await buy(session, ledger, program, "fay", "F-1", 6_000, day)
    grant_id = await session.scalar(
        text("SELECT id FROM threshold_grants WHERE member_id = :m"), {"m": member.id}
    )
    [posted] = await ledger.create_transfers(
        [
            Transfer(
                id=derived_id(program.id, "settle-threshold", str(grant_id)),
                pending_id=grant_id,
                flags=TransferFlags.POST_PENDING,
            )
        ]
    )
    assert posted.result == "ok"
    await return_purchase(
        session,
        ledger,
        program,
        "F-1",
        ReturnEvent(return_id="R-1", amount_minor=3_000),
        principal=system("test"),
    )
    await session.commit()
    await settle_matured_earnings(session, ledger, day + timedelta(days=31), program=program)
    await session.commit()
    voided = await session.scalar(
        text("SELECT voided FROM threshold_grants WHERE id = :g"), {"g": grant_id}
    )
    assert voided is False
    assert (await member_balance(ledger, program, member)).available == 30 + 500
