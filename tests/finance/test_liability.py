"""The point liability as of a day: outstanding points by partner, cohort,
origin and tier, on the program's accounting days, valued at the point
value in force at the end of the day."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from core.models import Member
from finance.liability import Liability, LiabilityBreakdown, liability, share_by_largest_remainder
from finance.report_dates import InvalidReportDate, parse_day
from ledger import Ledger
from rewards.point_values import record_point_value
from rewards.tiers import TierSpec, define_tier
from tests.conftest import NewProgram
from tests.finance.liability_helpers import PRINCIPAL, Book, open_book, post
from tests.partners.conftest import NewPartner
from tests.partners.conftest import new_partner as new_partner

ZONE = "Africa/Johannesburg"  # UTC+2, no daylight saving
EARNED = 1000
FROM_PARTNER = 501
BONUS = 301
REDEEMED = 1200
#: The value from 1 March, local midnight (22:00 UTC the day before).
CHANGED_AT = datetime(2025, 2, 28, 22, tzinfo=UTC)
LATER_VALUE = Decimal("0.5")


async def _scenario(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> Book:
    program = await new_program(
        point_value_minor=Decimal(1), time_zone=ZONE, started_at=datetime(2025, 1, 1, tzinfo=UTC)
    )
    partner = await new_partner(program, name="Fuel & Go")
    book = await open_book(session, ledger, program, ("alice", "bob"), partner)
    issuance = program.issuance_account_id
    await post(
        ledger, program, issuance, book.wallet("alice"), EARNED, TransferCode.PURCHASE_EARN,
        datetime(2025, 1, 10, 10, tzinfo=UTC),
    )  # fmt: skip
    # 23:30 UTC on 31 January is 1 February in Johannesburg: a February point.
    await post(
        ledger, program, book.partner_issuance, book.wallet("alice"), FROM_PARTNER,
        TransferCode.PARTNER_ISSUANCE, datetime(2025, 1, 31, 23, 30, tzinfo=UTC),
    )  # fmt: skip
    await post(
        ledger, program, issuance, book.wallet("bob"), BONUS, TransferCode.THRESHOLD_BONUS,
        datetime(2025, 2, 20, 12, tzinfo=UTC),
    )  # fmt: skip
    # Oldest first: all of January's earning, then part of the partner's lot.
    await post(
        ledger, program, book.wallet("alice"), program.redemption_account_id, REDEEMED,
        TransferCode.CATALOG_REDEMPTION, datetime(2025, 3, 3, 9, tzinfo=UTC),
    )  # fmt: skip
    await record_point_value(session, program.id, CHANGED_AT, LATER_VALUE)
    await session.commit()
    return book


def _lines(report: Liability) -> dict[str, tuple[int, int]]:
    return {line.group: (line.points, line.value_minor) for line in report.lines}


async def test_outstanding_points_by_partner_on_the_programs_days(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    book = await _scenario(session, ledger, new_program, new_partner)
    program, partner = book.program, book.partner
    assert partner is not None
    own, theirs = f"program:{program.slug}", f"partner:{partner.slug}"

    january = await liability(
        session, program, date(2025, 1, 31), LiabilityBreakdown.PARTNER, principal=PRINCIPAL
    )
    assert (january.points, january.time_zone) == (EARNED, ZONE)
    assert _lines(january) == {own: (EARNED, EARNED)}

    february = await liability(
        session, program, date(2025, 2, 28), LiabilityBreakdown.PARTNER, principal=PRINCIPAL
    )
    assert february.point_value_minor == 1
    assert _lines(february) == {
        own: (EARNED + BONUS, EARNED + BONUS),
        theirs: (FROM_PARTNER, FROM_PARTNER),
    }
    assert [line.name for line in february.lines] == ["Fuel & Go", program.name]


async def test_valued_at_the_value_in_force_at_the_end_of_the_day(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    book = await _scenario(session, ledger, new_program, new_partner)
    program, partner = book.program, book.partner
    assert partner is not None

    march = await liability(
        session, program, date(2025, 3, 31), LiabilityBreakdown.PARTNER, principal=PRINCIPAL
    )

    left_of_partner = EARNED + FROM_PARTNER - REDEEMED
    assert march.point_value_minor == LATER_VALUE
    assert march.points == left_of_partner + BONUS
    exact = (left_of_partner + BONUS) * LATER_VALUE
    assert march.value_minor == int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))
    # Both lines are worth x.5: the unit left over goes to the first listed.
    assert _lines(march) == {
        f"partner:{partner.slug}": (left_of_partner, int(left_of_partner * LATER_VALUE) + 1),
        f"program:{program.slug}": (BONUS, int(BONUS * LATER_VALUE)),
    }
    assert sum(line.value_minor for line in march.lines) == march.value_minor


async def test_outstanding_points_by_cohort_and_by_origin(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    book = await _scenario(session, ledger, new_program, new_partner)
    program = book.program

    february = await liability(
        session, program, date(2025, 2, 28), LiabilityBreakdown.COHORT, principal=PRINCIPAL
    )
    assert _lines(february) == {
        "2025-01": (EARNED, EARNED),
        "2025-02": (FROM_PARTNER + BONUS, FROM_PARTNER + BONUS),
    }
    march = await liability(
        session, program, date(2025, 3, 31), LiabilityBreakdown.COHORT, principal=PRINCIPAL
    )
    # The redemption consumed January's lot whole.
    assert {g: p for g, (p, _) in _lines(march).items()} == {
        "2025-02": EARNED + FROM_PARTNER - REDEEMED + BONUS
    }

    by_origin = await liability(
        session, program, date(2025, 2, 28), LiabilityBreakdown.ORIGIN, principal=PRINCIPAL
    )
    assert {g: p for g, (p, _) in _lines(by_origin).items()} == {
        "earn": EARNED,
        "partner_earn": FROM_PARTNER,
        "threshold_bonus": BONUS,
    }
    assert {line.name for line in by_origin.lines} == {
        "purchase_earn",
        "partner_issuance",
        "threshold_bonus",
    }


async def test_outstanding_points_by_the_members_tier(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    book = await _scenario(session, ledger, new_program, new_partner)
    program = book.program
    await define_tier(
        session,
        program,
        TierSpec(code="gold", name="Gold", rank=1, threshold=0),
        principal=PRINCIPAL,
    )
    # Gold from before every day asked (tiers_in_force: the tier held then).
    await session.execute(
        update(Member)
        .where(Member.id == book.members["alice"].id)
        .values(tier_code="gold", tier_since=datetime(2025, 1, 1, tzinfo=UTC))
    )
    await session.commit()

    # A past day (movements after it) and a day after the last movement.
    for day, alice in (
        (date(2025, 2, 28), EARNED + FROM_PARTNER),
        (date(2025, 3, 31), EARNED + FROM_PARTNER - REDEEMED),
    ):
        report = await liability(
            session, program, day, LiabilityBreakdown.TIER, principal=PRINCIPAL
        )
        assert report.tier_basis == "in_force"
        assert {line.group: line.points for line in report.lines} == {"gold": alice, "none": BONUS}
        assert [line.name for line in report.lines] == ["Gold", ""]
        assert report.points == alice + BONUS


async def test_a_day_before_any_movement_owes_nothing(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    book = await _scenario(session, ledger, new_program, new_partner)
    for by in LiabilityBreakdown:
        report = await liability(session, book.program, date(2024, 12, 31), by, principal=PRINCIPAL)
        assert (report.points, report.value_minor) == (0, 0)
        assert all(line.points == 0 for line in report.lines)


@pytest.mark.parametrize("text", ["2025-02-30", "2025-2-01", "yesterday", "1899-12-31", ""])
def test_a_day_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(InvalidReportDate, match="as_of"):
        parse_day("as_of", text)


@given(
    points=st.lists(st.integers(min_value=0, max_value=10**12), max_size=30),
    value=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(1000), places=6),
)
def test_the_lines_share_the_rounded_total_exactly(points: list[int], value: Decimal) -> None:
    exact = [Decimal(p) * value for p in points]
    total = int(sum(exact, Decimal(0)).to_integral_value(rounding=ROUND_HALF_EVEN))

    shares = share_by_largest_remainder(total, exact)

    assert sum(shares) == total
    assert all(abs(share - amount) < 1 for share, amount in zip(shares, exact, strict=True))
