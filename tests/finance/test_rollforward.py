"""The roll-forward: opening + one line per kind of movement = closing,
tied to the ledger's own totals; every transfer code has its place."""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from finance.report_dates import InvalidReportDate, Period, parse_period
from finance.rollforward import LINES, Category, UnknownIssuer, category_of, roll_forward
from ledger import Ledger
from tests.conftest import NewProgram
from tests.finance.liability_helpers import PRINCIPAL, Book, open_book, post
from tests.partners.conftest import NewPartner
from tests.partners.conftest import new_partner as new_partner

ZONE = "Africa/Johannesburg"
START = datetime(2025, 1, 1, tzinfo=UTC)
FEBRUARY = Period(date(2025, 2, 1), date(2025, 2, 28))


def test_every_transfer_code_has_its_place_in_the_roll_forward() -> None:
    assert set(LINES) == set(TransferCode)


def test_a_code_that_moves_no_members_points_is_shown_as_unexpected_if_it_does() -> None:
    assert category_of(TransferCode.PARTNER_SETTLEMENT) is Category.UNEXPECTED
    assert category_of(9999) is Category.UNEXPECTED
    assert category_of(TransferCode.CATALOG_REDEMPTION) is Category.REDEEMED


@pytest.mark.parametrize(
    ("period", "first", "last"),
    [
        (None, None, None),
        ("2025-02", "2025-02-01", None),
        ("2025-13", None, None),
        ("25-02", None, None),
        (None, "2025-03-01", "2025-02-01"),
        (None, "2025-02-01", None),
    ],
)
def test_a_period_that_is_not_one_is_refused(
    period: str | None, first: str | None, last: str | None
) -> None:
    with pytest.raises(InvalidReportDate):
        parse_period(period, first, last)


def test_a_month_is_its_first_to_its_last_day() -> None:
    assert parse_period("2024-02", None, None) == Period(date(2024, 2, 1), date(2024, 2, 29))
    assert parse_period("2024-02", None, None).label == "2024-02"
    assert parse_period(None, "2024-02-03", "2024-02-05").label == "2024-02-03..2024-02-05"


async def test_one_line_per_kind_of_movement_from_opening_to_closing(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program(time_zone=ZONE, started_at=START)
    partner = await new_partner(program)
    book = await open_book(session, ledger, program, ("alice", "bob"), partner)
    issuance, alice, bob = program.issuance_account_id, book.wallet("alice"), book.wallet("bob")
    jan, feb = datetime(2025, 1, 15, tzinfo=UTC), datetime(2025, 2, 10, tzinfo=UTC)
    await post(ledger, program, issuance, alice, 700, TransferCode.PURCHASE_EARN, jan)
    await post(ledger, program, book.partner_issuance, bob, 400, TransferCode.PARTNER_ISSUANCE, jan)
    await post(ledger, program, issuance, alice, 90, TransferCode.PURCHASE_EARN, feb)
    await post(ledger, program, issuance, bob, 50, TransferCode.THRESHOLD_BONUS, feb)
    await post(ledger, program, alice, program.redemption_account_id, 600,
               TransferCode.CATALOG_REDEMPTION, feb)  # fmt: skip
    await post(ledger, program, bob, alice, 100, TransferCode.GIFT, feb)
    await post(ledger, program, bob, program.breakage_account_id, 120, TransferCode.EXPIRY, feb)
    # The last minute of February in Johannesburg is the 28th's; one later is March's.
    await post(ledger, program, issuance, alice, 5, TransferCode.ADJUSTMENT,
               datetime(2025, 2, 28, 21, 59, tzinfo=UTC))  # fmt: skip
    await post(ledger, program, issuance, alice, 7, TransferCode.ADJUSTMENT,
               datetime(2025, 2, 28, 22, 0, tzinfo=UTC))  # fmt: skip

    report = await roll_forward(session, program, FEBRUARY, principal=PRINCIPAL)

    assert (report.period, report.time_zone) == ("2025-02", ZONE)
    assert report.opening == 700 + 400
    assert [(line.category, line.kind, line.points) for line in report.lines] == [
        (Category.EARNED, "earn", 90),
        (Category.BONUSES, "threshold_bonus", 50),
        (Category.REDEEMED, "redemption", -600),
        (Category.EXPIRED, "expiry", -120),
        (Category.TRANSFERRED, "gift", 0),
        (Category.ADJUSTMENTS, "adjustment", 5),
    ]
    assert report.closing == 700 + 400 + 90 + 50 - 600 - 120 + 5
    assert report.difference == 0
    tie = report.tie
    assert tie is not None and tie.tied
    assert (tie.opening_ledger, tie.closing_ledger) == (report.opening, report.closing)
    assert all(line.difference == 0 for line in tie.lines)

    # Only what the partner issued: bob's 400, of which the gift and the
    # expiry (oldest first) took 100 and 120.
    theirs = await roll_forward(
        session, program, FEBRUARY, partner=partner.slug, principal=PRINCIPAL
    )
    assert (theirs.opening, theirs.closing, theirs.tie) == (400, 400 - 120, None)
    assert {line.kind: line.points for line in theirs.lines} == {"gift": 0, "expiry": -120}
    with pytest.raises(UnknownIssuer):
        await roll_forward(session, program, FEBRUARY, partner="nobody", principal=PRINCIPAL)


# --- the property: after any workload, the roll-forward ties to the ledger


@dataclass
class Model:
    """What the test expects, kept beside the ledger: wallet balances, and
    every movement's signed effect on the members' points by day and code."""

    balances: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    moves: list[tuple[date, int, int]] = field(default_factory=list)
    spends: list[tuple[uuid.UUID, str, int, TransferCode]] = field(default_factory=list)

    def held_through(self, day: date) -> int:
        return sum(points for moved, _, points in self.moves if moved <= day)

    def by_code(self, period: Period) -> dict[int, int]:
        found: dict[int, int] = defaultdict(int)
        for moved, code, points in self.moves:
            if period.first_day <= moved <= period.last_day:
                found[code] += points
        return dict(found)


_KINDS = ("earn", "partner", "bonus", "bought", "redeem", "gift", "expire", "return", "cancel")
_operation = st.tuples(
    st.sampled_from(_KINDS),
    st.sampled_from(("alice", "bob", "carol")),
    st.sampled_from(("alice", "bob", "carol")),
    st.integers(min_value=1, max_value=500),
    st.integers(min_value=0, max_value=89 * 24),  # hours from 1 January
)
_runs = itertools.count()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(_operation, min_size=1, max_size=25))
async def test_the_roll_forward_ties_to_the_ledger_after_any_workload(
    session: AsyncSession,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
    operations: list[tuple[str, str, str, int, int]],
) -> None:
    program = await new_program(time_zone=ZONE, started_at=START, point_value_minor=Decimal(1))
    partner = await new_partner(program)
    book = await open_book(session, ledger, program, ("alice", "bob", "carol"), partner)
    model = Model()
    # Posted in business-time order, as the ledger's days run.
    for kind, who, other, amount, hours in sorted(operations, key=lambda o: o[4]):
        at = START + timedelta(hours=hours, minutes=next(_runs) % 60)
        await _apply(ledger, book, model, kind, who, other, amount, at)

    for period in (
        Period(date(2025, 1, 1), date(2025, 1, 31)),
        FEBRUARY,
        Period(date(2025, 1, 20), date(2025, 3, 31)),
    ):
        report = await roll_forward(session, program, period, principal=PRINCIPAL)
        tie = report.tie
        assert tie is not None
        assert tie.tied, tie
        assert report.difference == 0
        assert report.opening == model.held_through(period.first_day - timedelta(days=1))
        assert report.closing == model.held_through(period.last_day)
        lines = {line.code: line.points for line in report.lines}
        assert {c: p for c, p in lines.items() if p} == {
            c: p for c, p in model.by_code(period).items() if p
        }


async def _apply(
    ledger: Ledger,
    book: Book,
    model: Model,
    kind: str,
    who: str,
    other: str,
    amount: int,
    at: datetime,
) -> None:
    program = book.program
    day = at.astimezone(ZoneInfo(ZONE)).date()
    balances = model.balances
    credits = {
        "earn": (program.issuance_account_id, TransferCode.PURCHASE_EARN),
        "partner": (book.partner_issuance, TransferCode.PARTNER_ISSUANCE),
        "bonus": (program.issuance_account_id, TransferCode.THRESHOLD_BONUS),
        "bought": (program.issuance_account_id, TransferCode.BOUGHT_POINTS),
    }
    debits = {
        "redeem": (program.redemption_account_id, TransferCode.CATALOG_REDEMPTION),
        "expire": (program.breakage_account_id, TransferCode.EXPIRY),
        "return": (program.issuance_account_id, TransferCode.RETURN_REVERSAL),
    }
    if kind in credits:
        source, code = credits[kind]
        await post(ledger, program, source, book.wallet(who), amount, code, at)
        balances[who] += amount
        model.moves.append((day, code, amount))
    elif kind in debits:
        amount = min(amount, balances[who])
        if amount == 0:
            return
        target, code = debits[kind]
        spent = await post(ledger, program, book.wallet(who), target, amount, code, at)
        balances[who] -= amount
        model.moves.append((day, code, -amount))
        model.spends.append((spent, who, amount, code))
    elif kind == "gift":
        amount = min(amount, balances[who])
        if amount == 0 or who == other:
            return
        await post(ledger, program, book.wallet(who), book.wallet(other), amount,
                   TransferCode.GIFT, at)  # fmt: skip
        balances[who] -= amount
        balances[other] += amount
        model.moves.append((day, TransferCode.GIFT, 0))
    elif kind == "cancel" and model.spends:
        # Cancel (part of) the latest redemption or expiry: its lots come back.
        spent, owner, spent_amount, code = model.spends.pop()
        restore = min(amount, spent_amount)
        cancel = {
            TransferCode.CATALOG_REDEMPTION: TransferCode.REDEMPTION_CANCELLATION,
            TransferCode.EXPIRY: TransferCode.EXPIRY_REINSTATEMENT,
            TransferCode.RETURN_REVERSAL: TransferCode.ADJUSTMENT,
        }[code]
        target = {
            TransferCode.CATALOG_REDEMPTION: program.redemption_account_id,
            TransferCode.EXPIRY: program.breakage_account_id,
            TransferCode.RETURN_REVERSAL: program.issuance_account_id,
        }[code]
        await post(ledger, program, target, book.wallet(owner), restore, cancel, at,
                   metadata={"restores": str(spent)})  # fmt: skip
        balances[owner] += restore
        model.moves.append((day, cancel, restore))
