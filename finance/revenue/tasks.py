"""The ``recognise-revenue`` job: for every program, each month that has
ended and been closed since the last one recognised, in order (the final
run needs its period closed: ``finance.revenue.runs``); for a program with
none recognised yet, from its start month (periods run in order, so a month
skipped could never run after a later one). Months are the ledger's
(``finance.report_dates.accounting_zone``). A run of a recognised period
writes nothing, so the job is safe to run again and from two workers at
once: the program's revenue lock makes one of them wait and find the run.
A month refused for a partner fee with no exchange rate (which it refuses
before writing anything) waits for the rate, with a WARNING line, and so do
the program's later months; the other programs run."""

from __future__ import annotations

import logging
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from core import calendar
from core.models import Program
from core.modules import JobContext
from core.principal import system
from finance.exchange_rates import ExchangeRateMissing
from finance.report_dates import accounting_zone
from finance.revenue.models import RevenuePeriod
from finance.revenue.runs import recognise_period
from finance.revenue.schemas import period_label
from ledger import periods as ledger_periods
from rewards.connections import session_connection

JOB_NAME = "recognise-revenue"

log = logging.getLogger(__name__)


def last_ended_period(now: datetime, zone: str) -> date:
    local = now.astimezone(ZoneInfo(zone))
    year, month = divmod(local.year * 12 + local.month - 2, 12)
    return date(year, month + 1, 1)


async def recognise_revenue(context: JobContext) -> int:
    """Runs made (closed months of each program not recognised yet)."""
    async with context.sessions() as session:
        programs = list(await session.scalars(select(Program.id)))
    made = 0
    for program_id in programs:
        async with context.sessions() as session, session.begin():
            program = await session.get(Program, program_id)
            assert program is not None
            connection = await session_connection(session)
            zone = await accounting_zone(connection, program.ledger_id)
            boundary = await ledger_periods.closed_through(connection, program.ledger_id)
            if boundary is None:
                continue
            latest = await session.scalar(
                select(func.max(RevenuePeriod.period)).where(RevenuePeriod.program_id == program_id)
            )
            month = (
                calendar.next_month(latest)
                if latest is not None
                else calendar.month_of(program.started_at, zone)
            )
            last = last_ended_period(context.now, zone)
            while month <= last:
                _, end = calendar.month_bounds(month, zone)
                if not ledger_periods.closes(boundary, end):
                    break  # open: its final run waits for the close
                try:
                    run = await recognise_period(
                        session, program, month, context.now, principal=system(JOB_NAME)
                    )
                except ExchangeRateMissing as missing:
                    log.warning(
                        "%s: %s %s waits for an exchange rate: %s",
                        JOB_NAME,
                        program.slug,
                        period_label(month),
                        missing,
                    )
                    break
                made += 0 if run.replayed else 1
                month = calendar.next_month(month)
    return made
