"""The liability by tier from the ledger's class aggregates (each tier an
account class, every change of tier a change of the wallet's class at the
instant the history of tiers records) equals the scan it replaces (every
wallet's lots, each member's tier in force from ``rewards.tier_history``),
over random workloads: earns and partner issuance dated in the past or now,
redemptions, gifts, purchases that upgrade (through the ledger's writer or
in the caller's transaction, and settled), direct updates of the tier dated
in the past, earns dated before a change recorded earlier, downgrades. And
a ledger whose classes were assigned after it held points
(``classes_since``) is answered from the scan for the days before."""

from __future__ import annotations

import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import AccountCode, TransferCode
from core.models import Member, Program
from core.principal import system
from finance import liability as liability_module
from finance.liability import LiabilityBreakdown, liability
from finance.report_dates import end_of_day
from ledger import Account, AccountFlags, Ledger, classes
from rewards.connections import session_connection
from rewards.models import Tier
from rewards.purchase_recording import record_purchase
from rewards.purchases import PurchaseEvent
from rewards.settlement import settle_matured_earnings
from rewards.tiers import evaluate_tiers
from tests.conftest import NewProgram
from tests.finance.liability_helpers import PRINCIPAL, post
from tests.rewards.test_tiers import enrol, ladder_program

ZONE = "Africa/Johannesburg"
TIERS = ("blue", "silver", "gold")
#: Before the 2026 calendar window: a member in a tier since then is
#: reviewed by the downgrade job once the window's grace has passed.
LAPSED_SINCE = datetime(2025, 6, 1, 8, tzinfo=UTC)


def _lines(rows: list[tuple[str, str, int]]) -> dict[str, int]:
    return {code: points for code, _, points in rows}


#: The scan itself, kept before a test refuses it to the report.
_SCAN: Callable[..., Awaitable[list[tuple[str, str, int]]]] = liability_module.tier_lines_by_scan


async def _scan(session: AsyncSession, program: Program, day: date) -> dict[str, int]:
    return _lines(await _SCAN(session, program, day, end_of_day(day, ZONE)))


def _no_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """From here on the report must come from the aggregates."""

    async def refused(*args: object) -> object:
        raise AssertionError("the report fell back to the scan")

    monkeypatch.setattr(liability_module, "tier_lines_by_scan", refused)


class Workload:
    """A program with a three-tier ladder in Johannesburg and its members,
    moved at random; ``days`` the accounting days touched."""

    def __init__(
        self,
        session: AsyncSession,
        ledger: Ledger,
        program: Program,
        members: list[Member],
        rng: random.Random,
        now: datetime,
    ) -> None:
        self.session, self.ledger, self.program = session, ledger, program
        self.members, self.rng, self.now = members, rng, now
        self.zone = ZoneInfo(ZONE)
        self.days: set[date] = {now.astimezone(self.zone).date()}
        self.orders = 0

    def _when(self, most_days: int = 40) -> datetime:
        at = self.now - timedelta(
            days=self.rng.randint(0, most_days), minutes=self.rng.randint(0, 24 * 60 - 1)
        )
        self.days.add(at.astimezone(self.zone).date())
        return at

    async def _available(self, member: Member) -> int:
        (state,) = await self.ledger.lookup_accounts([member.wallet_account_id])
        return state.credits_posted - state.debits_posted - state.debits_pending

    async def earn(self) -> None:
        member = self.rng.choice(self.members)
        code = self.rng.choice([TransferCode.PURCHASE_EARN, TransferCode.EVENT_EARN])
        at = None if self.rng.random() < 0.3 else self._when()
        await post(
            self.ledger, self.program, self.program.issuance_account_id,
            member.wallet_account_id, self.rng.randint(1, 900), code, at,  # type: ignore[arg-type]
        )  # fmt: skip

    async def earn_before_last_change(self) -> None:
        """An earn dated before the member's last change of tier, posted after it."""
        member = self.rng.choice(self.members)
        latest = await self.session.scalar(
            text("SELECT max(valid_from) FROM member_tier_changes WHERE member_id = :m"),
            {"m": member.id},
        )
        if latest is None or latest < self.now - timedelta(days=45):
            return await self.earn()
        at = latest - timedelta(hours=self.rng.randint(1, 72))
        self.days.add(at.astimezone(self.zone).date())
        self.days.add((at - timedelta(days=1)).astimezone(self.zone).date())
        await post(
            self.ledger, self.program, self.program.issuance_account_id,
            member.wallet_account_id, self.rng.randint(1, 900), TransferCode.PURCHASE_EARN, at,
        )  # fmt: skip

    async def redeem(self) -> None:
        member = self.rng.choice(self.members)
        available = await self._available(member)
        if available <= 0:
            return
        await post(
            self.ledger, self.program, member.wallet_account_id,
            self.program.redemption_account_id, self.rng.randint(1, available),
            TransferCode.CATALOG_REDEMPTION, None,  # type: ignore[arg-type]
        )  # fmt: skip

    async def gift(self) -> None:
        giver, receiver = self.rng.sample(self.members, 2)
        available = await self._available(giver)
        if available <= 0:
            return
        await post(
            self.ledger, self.program, giver.wallet_account_id, receiver.wallet_account_id,
            self.rng.randint(1, available), TransferCode.GIFT, None,  # type: ignore[arg-type]
        )  # fmt: skip

    async def purchase(self) -> None:
        """A purchase dated in the past: it may upgrade the member then."""
        member = self.rng.choice(self.members)
        at = self._when()
        self.orders += 1
        await record_purchase(
            self.session,
            self.ledger,
            self.program,
            PurchaseEvent(
                member=member.external_id,
                order_id=f"O-{self.orders}",
                amount_minor=self.rng.choice([800, 4_000, 12_000, 30_000, 55_000]),
                currency="ZAR",
                occurred_at=at,
            ),
            now=self.now,
            principal=system("test"),
            atomic=self.rng.random() < 0.5,
        )
        await self.session.commit()

    async def settle(self) -> None:
        await settle_matured_earnings(self.session, self.ledger, self.now, program=self.program)
        await self.session.commit()

    async def move(self) -> None:
        """A direct update of the tier, dated in the past (or none)."""
        member = self.rng.choice(self.members)
        tier = self.rng.choice([*TIERS, None])
        await self.session.execute(
            update(Member)
            .where(Member.id == member.id)
            .values(tier_code=tier, tier_since=self._when())
        )
        await self.session.commit()

    async def two_moves_at_once(self) -> None:
        """Two changes of one member in one transaction."""
        member = self.rng.choice(self.members)
        first, second = sorted([self._when(), self._when()])
        for tier, at in (
            (self.rng.choice(TIERS), first),
            (self.rng.choice([*TIERS, None]), second),
        ):
            await self.session.execute(
                update(Member).where(Member.id == member.id).values(tier_code=tier, tier_since=at)
            )
        await self.session.commit()

    async def downgrade(self) -> None:
        """Gold since before the 2026 window, then the downgrade job now."""
        member = self.rng.choice(self.members)
        await self.session.execute(
            update(Member)
            .where(Member.id == member.id)
            .values(tier_code="gold", tier_since=LAPSED_SINCE, tier_reviewed_at=None)
        )
        await self.session.commit()
        await evaluate_tiers(self.session, self.program, self.now)
        await self.session.commit()


async def _workload(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, seed: int
) -> Workload:
    program = await ladder_program(session, new_program, time_zone=ZONE)
    members = [await enrol(session, ledger, program, f"m{seed}-{n}") for n in range(5)]
    work = Workload(session, ledger, program, members, random.Random(seed), datetime.now(UTC))
    steps = [
        work.earn, work.earn, work.earn, work.earn_before_last_change, work.redeem,
        work.gift, work.purchase, work.purchase, work.move, work.two_moves_at_once,
        work.downgrade, work.settle,
    ]  # fmt: skip
    for _ in range(45):
        await work.rng.choice(steps)()
    await work.settle()
    return work


@pytest.mark.parametrize("seed", range(4))
async def test_by_tier_from_the_aggregates_equals_the_scan_every_day(
    session: AsyncSession,
    ledger: Ledger,
    new_program: NewProgram,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
) -> None:
    work = await _workload(session, ledger, new_program, seed)
    program = work.program
    connection = await session_connection(session)
    assert await classes.classes_since(connection, ledger=program.ledger_id) is None
    _no_scan(monkeypatch)
    first, last = min(work.days) - timedelta(days=1), max(work.days)
    # Every wallet's class is its member's tier's.
    assert await _classes_of_wallets(session, program) == await _tiers_of_wallets(session, program)
    seen_tiers: set[str] = set()
    day = first
    while day <= last:
        report = await liability(
            session, program, day, LiabilityBreakdown.TIER, principal=PRINCIPAL
        )
        lines = {line.group: line.points for line in report.lines}
        assert lines == await _scan(session, program, day), day
        whole = await liability(session, program, day, principal=PRINCIPAL)
        assert report.points == whole.points == sum(lines.values()), day
        assert report.value_minor == whole.value_minor
        seen_tiers |= set(lines)
        day += timedelta(days=1)
    # The workload did move points between tiers (the test could fail).
    assert len(seen_tiers) >= 2


async def _classes_of_wallets(session: AsyncSession, program: Program) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        text(
            "SELECT m.wallet_account_id, a.account_class FROM members m"
            " JOIN accounts a ON a.id = m.wallet_account_id WHERE m.program_id = :p"
        ),
        {"p": program.id},
    )
    return {wallet: cls for wallet, cls in rows.all()}


async def _tiers_of_wallets(session: AsyncSession, program: Program) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        select(Member.wallet_account_id, Tier.ledger_class)
        .outerjoin(Tier, (Tier.program_id == Member.program_id) & (Tier.code == Member.tier_code))
        .where(Member.program_id == program.id)
    )
    return {wallet: cls or 0 for wallet, cls in rows.all()}


async def _recorded_without_class(
    session: AsyncSession, member: Member, tier: str, at: datetime
) -> None:
    """A change of tier as before migration 0053: in the history, not in the
    ledger's classes (the queued move taken away before the commit)."""
    await session.execute(
        update(Member).where(Member.id == member.id).values(tier_code=tier, tier_since=at)
    )
    await session.execute(text("DELETE FROM tier_classes_due"))
    await session.commit()


async def _assign_as_the_migration_does(
    session: AsyncSession, program: Program, since: datetime | None = None
) -> datetime:
    """Migration 0053's backfill for one program: each member's tier as its
    wallet's class now, then the ledger's ``classes_since`` (``since``, or
    the instant after the moves)."""
    rows = (
        await session.execute(
            select(Member.wallet_account_id, Tier.ledger_class)
            .join(Tier, (Tier.program_id == Member.program_id) & (Tier.code == Member.tier_code))
            .where(Member.program_id == program.id)
        )
    ).all()
    connection = await session_connection(session)
    await classes.set_account_classes(
        connection, [w for w, _ in rows], [c for _, c in rows], [None] * len(rows)
    )
    marked = await session.scalar(
        text("UPDATE ledgers SET classes_since = coalesce(:since, clock_timestamp())"
             " WHERE id = :ledger RETURNING classes_since"),
        {"since": since, "ledger": program.ledger_id},
    )  # fmt: skip
    await session.commit()
    assert isinstance(marked, datetime)
    return marked


async def test_a_day_before_the_classes_were_assigned_is_answered_by_the_scan(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = await ladder_program(session, new_program, time_zone=ZONE)
    alice, bob = [await enrol(session, ledger, program, name) for name in ("alice", "bob")]
    now = datetime.now(UTC)
    issuance = program.issuance_account_id
    for member, points in ((alice, 500), (bob, 300)):
        await post(
            ledger, program, issuance, member.wallet_account_id, points,
            TransferCode.PURCHASE_EARN, now - timedelta(days=10),
        )  # fmt: skip
    # Alice gold from six days ago, recorded before the ledger had classes.
    await _recorded_without_class(session, alice, "gold", now - timedelta(days=6))
    since = await _assign_as_the_migration_does(session, program)
    await post(
        ledger, program, issuance, alice.wallet_account_id, 40, TransferCode.EVENT_EARN,
        now - timedelta(days=2),
    )  # fmt: skip
    connection = await session_connection(session)
    assert await classes.classes_since(connection, ledger=program.ledger_id) == since

    past = (now - timedelta(days=4)).astimezone(ZoneInfo(ZONE)).date()
    report = await liability(session, program, past, LiabilityBreakdown.TIER, principal=PRINCIPAL)
    assert {line.group: line.points for line in report.lines} == {"gold": 500, "none": 300}
    assert {line.group: line.points for line in report.lines} == await _scan(session, program, past)
    # What the aggregates hold for that day: every wallet still in class 0.
    assert await classes.points_by_class(connection, ledger=program.ledger_id, as_of=past) == {
        0: 800
    }

    _no_scan(monkeypatch)
    today = now.astimezone(ZoneInfo(ZONE)).date()
    report = await liability(session, program, today, LiabilityBreakdown.TIER, principal=PRINCIPAL)
    assert {line.group: line.points for line in report.lines} == {"gold": 540, "none": 300}
    assert [line.name for line in report.lines] == ["Gold", ""]


async def test_the_aggregates_answer_from_the_first_day_that_ends_after_classes_since(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = await ladder_program(session, new_program, time_zone=ZONE)
    await enrol(session, ledger, program, "cy")
    day = date(2026, 3, 10)
    await _assign_as_the_migration_does(session, program, since=end_of_day(day, ZONE))
    scanned: list[date] = []

    async def scan(
        session: AsyncSession, program: Program, as_of: date, day_end: datetime
    ) -> object:
        scanned.append(as_of)
        return await _SCAN(session, program, as_of, day_end)

    monkeypatch.setattr(liability_module, "tier_lines_by_scan", scan)
    for as_of in (day - timedelta(days=1), day, day + timedelta(days=1)):
        await liability(session, program, as_of, LiabilityBreakdown.TIER, principal=PRINCIPAL)
    # The day that ends at the instant is the scan's: a move at it is the next day's.
    assert scanned == [day - timedelta(days=1), day]


async def test_a_member_created_with_a_tier_is_in_it_from_the_beginning(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = await ladder_program(session, new_program, time_zone=ZONE)
    now = datetime.now(UTC)
    wallet = uuid.uuid4()
    (outcome,) = await ledger.create_accounts(
        [
            Account(
                id=wallet,
                ledger=program.ledger_id,
                code=AccountCode.MEMBER_WALLET,
                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            )
        ]
    )
    assert outcome.result == "ok"
    # Points dated before the member's row: the history has no change for
    # the member, so counts it in its tier at every instant.
    await post(
        ledger, program, program.issuance_account_id, wallet, 80, TransferCode.PURCHASE_EARN,
        now - timedelta(days=5),
    )  # fmt: skip
    session.add(
        Member(
            program_id=program.id,
            external_id="dee",
            wallet_account_id=wallet,
            tier_code="silver",
            tier_since=now,
        )
    )
    await session.commit()
    assert await _classes_of_wallets(session, program) == await _tiers_of_wallets(session, program)
    _no_scan(monkeypatch)
    for day in (_day_of(now - timedelta(days=6)), _day_of(now - timedelta(days=5)), _day_of(now)):
        report = await liability(
            session, program, day, LiabilityBreakdown.TIER, principal=PRINCIPAL
        )
        assert {line.group: line.points for line in report.lines} == await _scan(
            session, program, day
        )
    assert {line.group: line.points for line in report.lines} == {"silver": 80}


def _day_of(at: datetime) -> date:
    return at.astimezone(ZoneInfo(ZONE)).date()
