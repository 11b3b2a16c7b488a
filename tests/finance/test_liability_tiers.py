"""The liability by tier as of a day counts each member in the tier in
force at the end of that day (``rewards.tier_history``), not the tier held
now: a member upgraded after the day counts in the old tier for it."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Member
from finance.liability import LiabilityBreakdown, liability
from ledger import Ledger
from rewards.tiers import TierSpec, define_tier
from tests.conftest import NewProgram
from tests.finance.liability_helpers import PRINCIPAL
from tests.finance.test_liability import BONUS, EARNED, FROM_PARTNER, REDEEMED, _scenario
from tests.partners.conftest import NewPartner
from tests.partners.conftest import new_partner as new_partner

#: Local midnight of 1 March in Johannesburg: the upgrade comes after 28 February.
UPGRADED_AT = datetime(2025, 2, 28, 22, tzinfo=UTC)


async def _move(session: AsyncSession, member: Member, tier: str | None, since: datetime) -> None:
    await session.execute(
        update(Member).where(Member.id == member.id).values(tier_code=tier, tier_since=since)
    )
    await session.commit()


async def test_a_member_upgraded_after_the_day_counts_in_the_old_tier(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    book = await _scenario(session, ledger, new_program, new_partner)
    program = book.program
    for rank, code in enumerate(("silver", "gold"), start=1):
        await define_tier(
            session,
            program,
            TierSpec(code=code, name=code.title(), rank=rank, threshold=rank * 100),
            principal=PRINCIPAL,
        )
    alice, bob = book.members["alice"], book.members["bob"]
    # Alice: silver from 11 January, gold from 1 March (local). Bob: gold from
    # January, back to no tier on 15 March.
    await _move(session, alice, "silver", datetime(2025, 1, 11, tzinfo=UTC))
    await _move(session, alice, "gold", UPGRADED_AT)
    await _move(session, bob, "gold", datetime(2025, 1, 6, tzinfo=UTC))
    await _move(session, bob, None, datetime(2025, 3, 15, tzinfo=UTC))

    def lines(report: object) -> dict[str, int]:
        return {line.group: line.points for line in report.lines}  # type: ignore[attr-defined]

    before = await liability(
        session, program, date(2025, 2, 28), LiabilityBreakdown.TIER, principal=PRINCIPAL
    )
    assert before.tier_basis == "in_force"
    # Alice still silver at the end of 28 February; Bob gold.
    assert lines(before) == {"silver": EARNED + FROM_PARTNER, "gold": BONUS}
    assert [line.name for line in before.lines] == ["Gold", "Silver"]

    after = await liability(
        session, program, date(2025, 3, 31), LiabilityBreakdown.TIER, principal=PRINCIPAL
    )
    assert lines(after) == {"gold": EARNED + FROM_PARTNER - REDEEMED, "none": BONUS}

    # Before the first change, the tier before it: none for both.
    first = await liability(
        session, program, date(2025, 1, 10), LiabilityBreakdown.TIER, principal=PRINCIPAL
    )
    assert lines(first) == {"none": EARNED}
    # The program's total does not depend on the breakdown.
    whole = await liability(session, program, date(2025, 2, 28), principal=PRINCIPAL)
    assert whole.points == before.points
