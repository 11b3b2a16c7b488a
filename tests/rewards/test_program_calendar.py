"""Every calendar rule of a program counts in its time zone (tier and
threshold windows, the daily gift limit, month-based expiry), and a
program's first rule version may start when the program did (a history
import)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core import calendar
from core.calendar import UnknownTimeZone
from core.principal import system
from ledger import Ledger
from rewards.errors import GiftLimitExceeded, PublishInPast
from rewards.events import BehaviourEvent, record_event
from rewards.expiry import cutoff
from rewards.program_settings import SettingsChange, change_settings
from rewards.purchase_recording import record_purchase
from rewards.purchases import PurchaseEvent
from rewards.redeeming import GiftRequest, give_gift
from rewards.rule_versions import draft_rules, publish_rules, rules_in_force
from rewards.rules import EarnRules, EventRule
from rewards.tiers import tier_progress
from tests.conftest import NewProgram
from tests.rewards.test_redeeming import funded
from tests.rewards.test_tiers import buy, enrol, ladder_program

JOBURG = "Africa/Johannesburg"  # UTC+2 all year
#: 1 January 2026, 00:00 in Johannesburg: still 31 December in UTC.
JOBURG_NEW_YEAR = datetime(2025, 12, 31, 22, tzinfo=UTC)
OPERATOR = system("test")


def test_local_boundaries_as_instants() -> None:
    late = datetime(2025, 12, 31, 22, 30, tzinfo=UTC)  # 00:30 on 1 January there
    assert calendar.local_year(late, JOBURG) == (
        JOBURG_NEW_YEAR,
        datetime(2026, 12, 31, 22, tzinfo=UTC),
    )
    assert calendar.local_year(late, "UTC") == (
        datetime(2025, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert calendar.local_day(late, JOBURG) == (
        JOBURG_NEW_YEAR,
        JOBURG_NEW_YEAR + timedelta(days=1),
    )
    assert calendar.local_month(late, JOBURG) == (
        JOBURG_NEW_YEAR,
        datetime(2026, 1, 31, 22, tzinfo=UTC),
    )
    # A day that loses an hour to summer time is 23 hours long.
    start, end = calendar.local_day(datetime(2026, 3, 29, 12, tzinfo=UTC), "Europe/London")
    assert (start, end - start) == (datetime(2026, 3, 29, tzinfo=UTC), timedelta(hours=23))
    # Months move on the local wall clock: 00:00 on 1 March there, a month
    # back, is 1 February there; in UTC it is 28 February, 22:00, and a
    # month back 28 January.
    march_there = datetime(2026, 2, 28, 22, tzinfo=UTC)
    assert calendar.add_months(march_there, -1, JOBURG) == datetime(2026, 1, 31, 22, tzinfo=UTC)
    assert calendar.add_months(march_there, -1, "UTC") == datetime(2026, 1, 28, 22, tzinfo=UTC)
    # Month ends clamp there too: 31 January + 1 month is 28 February.
    assert calendar.add_months(datetime(2026, 1, 31, 21, tzinfo=UTC), 1, JOBURG) == datetime(
        2026, 2, 28, 21, tzinfo=UTC
    )
    with pytest.raises(UnknownTimeZone, match=r"^time_zone: "):
        calendar.time_zone("Mars/Olympus_Mons")


async def test_purchase_after_local_midnight_counts_in_the_new_year(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await ladder_program(session, new_program, time_zone=JOBURG)
    member = await enrol(session, ledger, program, "thandi")
    # 23:59 on 31 December there: the old year.
    await buy(
        session, ledger, program, "thandi", "T-0", 9_999, JOBURG_NEW_YEAR - timedelta(minutes=1)
    )
    # 00:30 on 1 January there (22:30 on 31 December in UTC): the new year,
    # so not silver (10,000) with the purchase before.
    await buy(
        session, ledger, program, "thandi", "T-1", 9_999, JOBURG_NEW_YEAR + timedelta(minutes=30)
    )
    assert member.tier_code == "blue"
    await buy(session, ledger, program, "thandi", "T-2", 1, JOBURG_NEW_YEAR + timedelta(days=1))
    assert member.tier_code == "silver"
    progress = await tier_progress(session, program, member, JOBURG_NEW_YEAR + timedelta(days=2))
    assert (progress.window_start, progress.qualifying) == (JOBURG_NEW_YEAR, 10_000)
    assert progress.window_end == datetime(2026, 12, 31, 22, tzinfo=UTC)


async def test_gifts_count_in_the_local_day(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(time_zone=JOBURG, gift_daily_limit=100)
    sender = await funded(session, ledger, program, "sipho", 1_000)
    await funded(session, ledger, program, "lerato", 0)
    evening = datetime(2026, 3, 10, 21, 30, tzinfo=UTC)  # 23:30 on 10 March there
    await give_gift(
        session, ledger, program, sender, "g1", GiftRequest(to="lerato", points=60), evening
    )
    # The gift's time is the clock's; it is put at 23:30 local on purpose.
    await session.execute(
        text("UPDATE gifts SET created_at = :at WHERE sender_id = :id"),
        {"at": evening, "id": sender.id},
    )
    await session.commit()
    # Later that local day: the 23:30 gift counts towards it.
    with pytest.raises(GiftLimitExceeded):
        await give_gift(
            session,
            ledger,
            program,
            sender,
            "g2",
            GiftRequest(to="lerato", points=41),
            evening + timedelta(minutes=15),
        )
    # (The refusal wrote nothing: the session goes on.)
    # 00:30 on 11 March there (still 10 March in UTC): a new day, a new allowance.
    after_midnight = datetime(2026, 3, 10, 22, 30, tzinfo=UTC)
    outcome = await give_gift(
        session, ledger, program, sender, "g3", GiftRequest(to="lerato", points=41), after_midnight
    )
    assert outcome.points == 41


async def test_event_caps_count_in_the_local_day(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(time_zone=JOBURG)
    rules = EarnRules(
        points_per_unit=Decimal(1),
        events={"gym-visit": EventRule(points=50, per_member_per_day=50)},
    )
    version = await draft_rules(session, program, rules, principal=OPERATOR)
    since = datetime(2026, 3, 1, tzinfo=UTC)
    await publish_rules(session, program, version.version, since, now=since, principal=OPERATOR)
    await enrol(session, ledger, program, "zanele")

    async def visit(n: int, at: datetime) -> tuple[int, str | None]:
        outcome = await record_event(
            session,
            ledger,
            program,
            BehaviourEvent(member="zanele", event_id=f"V-{n}", event="gym-visit", occurred_at=at),
            at,
            principal=OPERATOR,
        )
        await session.commit()
        return outcome.points, outcome.limited_by

    evening = datetime(2026, 3, 10, 21, 30, tzinfo=UTC)  # 23:30 on 10 March there
    assert await visit(1, evening) == (50, None)
    assert await visit(2, evening + timedelta(minutes=15)) == (0, "day_cap")
    # 00:30 on 11 March there, still 10 March in UTC: the next day's cap.
    assert await visit(3, evening + timedelta(hours=1)) == (50, None)


async def test_month_based_expiry_lands_at_the_local_month_end(new_program: NewProgram) -> None:
    program = await new_program(expiry_policy="fixed", expiry_months=1, time_zone=JOBURG)
    credited = datetime(2026, 1, 31, 21, 30, tzinfo=UTC)  # 23:30 on 31 January there
    local_month_end = datetime(2026, 2, 28, 22, tzinfo=UTC)  # 1 March, 00:00 there
    # Points credited up to the cut-off have expired: this lot exactly at
    # the local end of February (one month, clamped), not two hours later.
    assert cutoff(program, local_month_end - timedelta(microseconds=1)) < credited
    assert cutoff(program, local_month_end) >= credited
    in_utc = await new_program(expiry_policy="fixed", expiry_months=1)
    assert cutoff(in_utc, local_month_end) < credited


async def test_first_version_may_start_when_the_program_did(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    started = datetime(2024, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    program = await new_program(started_at=started, return_window_days=0)
    await enrol(session, ledger, program, "nomsa")
    first = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(1)), principal=OPERATOR
    )
    second = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(2)), principal=OPERATOR
    )
    with pytest.raises(PublishInPast, match="program's start"):
        await publish_rules(
            session, program, first.version, started - timedelta(days=1), now, principal=OPERATOR
        )
    await publish_rules(session, program, first.version, started, now, principal=OPERATOR)
    await session.commit()
    # Only the first: once one is published, a start in the past would
    # reprice what was already priced.
    with pytest.raises(PublishInPast, match=f"version {first.version} is published"):
        await publish_rules(
            session, program, second.version, started + timedelta(days=30), now, principal=OPERATOR
        )
    imported = await record_purchase(
        session,
        ledger,
        program,
        PurchaseEvent(
            member="nomsa",
            order_id="H-1",
            amount_minor=10_000,
            currency="ZAR",
            occurred_at=datetime(2024, 6, 1, tzinfo=UTC),
        ),
        now,
        principal=system("test"),
    )
    await session.commit()
    assert (imported.points, imported.rule_version) == (100, first.version)
    in_force = await rules_in_force(session, program, started)
    assert in_force is not None and in_force.version == first.version


async def test_a_program_without_a_past_start_keeps_refusing_past_versions(
    session: AsyncSession, new_program: NewProgram
) -> None:
    program = await new_program()
    version = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(1)), principal=OPERATOR
    )
    now = datetime.now(UTC)
    with pytest.raises(PublishInPast):
        await publish_rules(
            session, program, version.version, now - timedelta(days=1), now, principal=OPERATOR
        )


async def _publish_lines(session: AsyncSession, slug: str, number: int) -> int:
    count = await session.scalar(
        text("SELECT count(*) FROM audit_events WHERE action = 'rules.publish' AND subject = :s"),
        {"s": f"program:{slug}:rules:{number}"},
    )
    assert count is not None
    return int(count)


async def test_a_publish_sent_again_after_its_start_has_passed_is_replayed(
    session: AsyncSession, new_program: NewProgram
) -> None:
    program = await new_program()
    now = datetime.now(UTC)
    first = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(1)), principal=OPERATOR
    )
    await publish_rules(session, program, first.version, now, now, principal=OPERATOR)
    second = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(2)), principal=OPERATOR
    )
    start = now + timedelta(hours=1)
    await publish_rules(session, program, second.version, start, now, principal=OPERATOR)
    await session.commit()
    # The answer was lost; the caller sends the same publish once the
    # version has taken effect: the first answer, not publish-in-past.
    again = await publish_rules(
        session, program, second.version, start, start + timedelta(hours=1), principal=OPERATOR
    )
    await session.commit()
    assert (again.version, again.effective_from) == (second.version, start)
    assert await _publish_lines(session, program.slug, second.version) == 1


async def test_the_first_version_is_checked_against_the_start_as_locked(
    session: AsyncSession, engine: AsyncEngine, new_program: NewProgram
) -> None:
    # The program as loaded (started 2024), then a settings change that
    # moves the start to 2025 commits before the publication locks the row:
    # a start in 2024 is before the program's start as it now stands.
    program = await new_program(started_at=datetime(2024, 1, 1, tzinfo=UTC))
    version = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(1)), principal=OPERATOR
    )
    await session.commit()
    async with AsyncSession(engine) as other, other.begin():
        await change_settings(
            other,
            program,
            SettingsChange(started_at=datetime(2025, 1, 1, tzinfo=UTC)),
            principal=OPERATOR,
        )
    now = datetime.now(UTC)
    with pytest.raises(PublishInPast, match="program's start"):
        await publish_rules(
            session,
            program,
            version.version,
            datetime(2024, 6, 1, tzinfo=UTC),
            now,
            principal=OPERATOR,
        )
