"""Every change of a member's tier is recorded, in the transaction of the
change, from the instant it took effect (``rewards.tier_history``): the
upgrades a purchase makes, the downgrade job's, any update of the column;
a rolled-back change leaves no row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Member, Program
from ledger import Ledger
from rewards.tier_history import TierChange, tiers_in_force
from rewards.tiers import evaluate_tiers
from tests.conftest import NewProgram
from tests.rewards.test_tiers import YEAR_START, buy, enrol, ladder_program


async def _history(
    session: AsyncSession, member: Member
) -> list[tuple[str | None, str | None, datetime]]:
    rows = await session.scalars(
        select(TierChange)
        .where(TierChange.member_id == member.id)
        .order_by(TierChange.valid_from, TierChange.created_at)
    )
    return [(r.previous_tier_code, r.tier_code, r.valid_from) for r in rows]


async def _at(session: AsyncSession, program: Program, member: Member, at: datetime) -> str | None:
    return (await tiers_in_force(session, program.id, at))[member.wallet_account_id]


async def test_upgrades_by_purchase_are_recorded_at_the_purchases_time(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await ladder_program(session, new_program)
    member = await enrol(session, ledger, program, "ann")
    days = [YEAR_START + timedelta(days=n) for n in (1, 2, 3)]
    await buy(session, ledger, program, "ann", "H-1", 500, days[0])
    await buy(session, ledger, program, "ann", "H-2", 9_500, days[1])
    await buy(session, ledger, program, "ann", "H-3", 40_000, days[2])
    assert await _history(session, member) == [
        (None, "blue", days[0]),
        ("blue", "silver", days[1]),
        ("silver", "gold", days[2]),
    ]
    assert await _at(session, program, member, days[0] - timedelta(microseconds=1)) is None
    assert await _at(session, program, member, days[0]) == "blue"
    assert await _at(session, program, member, days[2] - timedelta(seconds=1)) == "silver"
    assert await _at(session, program, member, days[2] + timedelta(days=400)) == "gold"


async def test_the_downgrade_job_records_the_move_at_its_run(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await ladder_program(session, new_program)
    member = await enrol(session, ledger, program, "ben")
    bought = YEAR_START - timedelta(days=100)
    await buy(session, ledger, program, "ben", "D-1", 60_000, bought)
    evaluated = datetime(2027, 2, 1, tzinfo=UTC)
    assert await evaluate_tiers(session, program, evaluated) == 1
    await session.commit()
    assert await _history(session, member) == [
        (None, "gold", bought),
        ("gold", "silver", evaluated),
    ]
    assert await _at(session, program, member, evaluated - timedelta(days=1)) == "gold"
    assert await _at(session, program, member, evaluated) == "silver"


async def test_a_change_never_dates_before_the_last_one_and_a_rollback_records_nothing(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await ladder_program(session, new_program)
    member = await enrol(session, ledger, program, "cy")
    member_id = member.id
    assert await _history(session, member) == []
    # No change recorded: the current tier at every instant.
    assert await _at(session, program, member, YEAR_START) is None
    moved = datetime(2026, 6, 1, tzinfo=UTC)
    await session.execute(
        update(Member).where(Member.id == member.id).values(tier_code="gold", tier_since=moved)
    )
    await session.commit()
    # A change dated earlier than the last one takes effect at the last one,
    # so that the latest row is always the member's tier.
    await session.execute(
        update(Member)
        .where(Member.id == member.id)
        .values(tier_code="silver", tier_since=moved - timedelta(days=30))
    )
    await session.commit()
    history = await _history(session, member)
    assert [(before, after) for before, after, _ in history] == [(None, "gold"), ("gold", "silver")]
    assert [valid_from for _, _, valid_from in history] == [moved, moved]
    assert await _at(session, program, member, moved) == "silver"
    # An update that leaves the tier alone records nothing; a rolled-back one neither.
    await session.execute(update(Member).where(Member.id == member.id).values(tier_code="silver"))
    await session.commit()
    await session.execute(update(Member).where(Member.id == member_id).values(tier_code="blue"))
    await session.rollback()
    rows = await session.scalars(select(TierChange.id).where(TierChange.member_id == member_id))
    assert len(rows.all()) == 2
    assert await session.scalar(select(Member.tier_code).where(Member.id == member_id)) == "silver"
