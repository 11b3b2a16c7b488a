"""The ``recognise-revenue`` job: for every program, the last month that
has ended in its time zone, once (a run of a recognised period writes
nothing, so the job is safe to run again and from two workers at once:
the program's revenue lock makes one of them wait and find the run)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from core.models import Program
from core.modules import JobContext
from core.principal import system
from finance.revenue.models import RevenuePeriod
from finance.revenue.runs import recognise_period

JOB_NAME = "recognise-revenue"


def last_ended_period(now: datetime, zone: str) -> date:
    local = now.astimezone(ZoneInfo(zone))
    year, month = divmod(local.year * 12 + local.month - 2, 12)
    return date(year, month + 1, 1)


async def recognise_revenue(context: JobContext) -> int:
    """Runs made (programs whose last ended month was not recognised yet)."""
    async with context.sessions() as session:
        programs = [(p.id, p.time_zone) for p in await session.scalars(select(Program))]
    made = 0
    for program_id, zone in programs:
        period = last_ended_period(context.now, zone)
        async with context.sessions() as session, session.begin():
            done = await session.scalar(
                select(RevenuePeriod.id).where(
                    RevenuePeriod.program_id == program_id,
                    RevenuePeriod.period >= period,
                )
            )
            if done is not None:
                continue
            program = await session.get(Program, program_id)
            assert program is not None
            run = await recognise_period(
                session, program, period, context.now, principal=system(JOB_NAME)
            )
            made += 0 if run.replayed else 1
    return made
