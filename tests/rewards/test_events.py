"""Behaviour events: points within daily and monthly caps and a budget."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.members import get_member
from core.models import Program
from core.principal import system
from core.programs import get_program
from ledger import Ledger
from rewards.events import BehaviourEvent, record_event
from rewards.programs import Enrolment, enrol_member, member_balance
from rewards.rule_versions import draft_rules, publish_rules
from rewards.rules import EarnRules, EventRule
from tests.conftest import NewProgram

START = datetime(2026, 3, 1, tzinfo=UTC)


async def event_program(session: AsyncSession, new_program: NewProgram) -> Program:
    program = await new_program()
    rules = EarnRules(
        points_per_unit=Decimal(1),
        events={
            "gym-visit": EventRule(points=50, per_member_per_day=50, per_member_per_month=120),
            "survey": EventRule(points=10, budget_points=50),
        },
    )
    version = await draft_rules(session, program, rules, principal=system("test"))
    await publish_rules(
        session,
        program,
        version.version,
        START - timedelta(days=1),
        now=START - timedelta(days=1),
        principal=system("test"),
    )
    await session.commit()
    return program


async def test_daily_and_monthly_caps(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await event_program(session, new_program)
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="gym"), principal=system("test")
    )
    await session.commit()
    now = START + timedelta(days=40)

    async def visit(n: int, at: datetime) -> tuple[int, str | None]:
        outcome = await record_event(
            session,
            ledger,
            program,
            BehaviourEvent(member="gym", event_id=f"V-{n}", event="gym-visit", occurred_at=at),
            now,
            principal=system("test"),
        )
        await session.commit()
        return outcome.points, outcome.limited_by

    assert await visit(1, START + timedelta(hours=8)) == (50, None)
    assert await visit(2, START + timedelta(hours=18)) == (0, "day_cap")
    assert await visit(3, START + timedelta(days=1)) == (50, None)
    assert await visit(4, START + timedelta(days=2)) == (20, "month_cap")
    assert await visit(5, START + timedelta(days=31)) == (50, None)  # April
    replay = await record_event(
        session,
        ledger,
        program,
        BehaviourEvent(
            member="gym", event_id="V-4", event="gym-visit", occurred_at=START + timedelta(days=2)
        ),
        now,
        principal=system("test"),
    )
    assert (replay.points, replay.replayed) == (20, True)
    unknown = await record_event(
        session,
        ledger,
        program,
        BehaviourEvent(member="gym", event_id="X-1", event="skydive", occurred_at=START),
        now,
        principal=system("test"),
    )
    assert (unknown.points, unknown.limited_by) == (0, "no_rule")
    assert (await member_balance(ledger, program, member)).available == 170


async def test_budget_is_never_overspent(
    engine: AsyncEngine, session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await event_program(session, new_program)
    for n in range(12):
        await enrol_member(
            session, ledger, program, Enrolment(external_id=f"s{n}"), principal=system("test")
        )
    await session.commit()
    slug = program.slug

    async def answer(n: int) -> int:
        async with AsyncSession(engine, expire_on_commit=False) as own:
            own_program = await get_program(own, system("test"), slug)
            outcome = await record_event(
                own,
                ledger,
                own_program,
                BehaviourEvent(
                    member=f"s{n}", event_id=f"S-{n}", event="survey", occurred_at=START
                ),
                START + timedelta(hours=1),
                principal=system("test"),
            )
            await own.commit()
            return outcome.points

    granted = await asyncio.gather(*(answer(n) for n in range(12)))
    assert sum(granted) == 50
    assert sorted(granted, reverse=True)[:5] == [10] * 5
    total = 0
    for n in range(12):
        member = await get_member(session, program, f"s{n}")
        total += (await member_balance(ledger, program, member)).available
    assert total == 50


async def test_caps_count_the_event_s_own_day_even_when_late(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await event_program(session, new_program)
    await enrol_member(
        session, ledger, program, Enrolment(external_id="late"), principal=system("test")
    )
    await session.commit()
    now = START + timedelta(days=10)
    later = await record_event(
        session,
        ledger,
        program,
        BehaviourEvent(
            member="late", event_id="L-2", event="gym-visit", occurred_at=START + timedelta(days=1)
        ),
        now,
        principal=system("test"),
    )
    # Reported afterwards, a visit of the day before still has its own day's cap.
    earlier = await record_event(
        session,
        ledger,
        program,
        BehaviourEvent(member="late", event_id="L-1", event="gym-visit", occurred_at=START),
        now,
        principal=system("test"),
    )
    await session.commit()
    assert (later.points, earlier.points) == (50, 50)
