"""Period close: a program's calendar months close in order, once each has
ended, and reopen with a reason.

The months are months of the ledger's accounting days (``ledgers.time_zone``,
``finance.report_dates.accounting_zone``), the days its lots and daily
aggregates are dated by and every finance report counts in. The ledger's
zone is set from the program's when the ledger is made and not moved by a
later change of the program's ``time_zone``: the books keep their days, so
a closed month is still exactly the days its reports covered.

Closing a month moves the ledger's boundary (``ledger.periods``) to the
month's last instant: from then on the ledger itself refuses every transfer
dated in it or before, whatever door it comes through. A correction of a
closed month posts in the open period and names what it corrects
(``rewards.adjustments``). Nothing here posts in the ledger.

Each use case runs in the session's transaction under the ledger's lock,
taken first (``closed_through(..., hold=True)``): two closes at once
serialize, no batch of the ledger posts while the boundary moves, and the
boundary, the month's row and the audit line commit together.
"""

from __future__ import annotations

import re
from datetime import date, datetime

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, calendar
from core.errors import DomainError, ErrorKind
from core.models import Program
from core.principal import Principal
from finance.models import FinancePeriodRecord as PeriodRow
from finance.models import PeriodStatus
from finance.period_schemas import (
    FinancePeriod,
    FinancePeriodClosing,
    FinancePeriodList,
    FinancePeriodReopening,
)
from finance.report_dates import accounting_zone
from finance.revenue.models import RevenuePeriod
from finance.revenue.runs import REVENUE_LOCK
from ledger import periods as ledger_periods
from rewards.connections import session_connection

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


class InvalidMonth(DomainError):
    """Not a month written YYYY-MM."""

    type_slug = "invalid-month"
    kind = ErrorKind.INVALID


class PeriodBeforeProgram(DomainError):
    """The month is before the program's start month: it has no period."""

    type_slug = "period-before-program"
    kind = ErrorKind.INVALID


class PeriodNotEnded(DomainError):
    """Only a month that is over may close."""

    type_slug = "period-not-ended"
    kind = ErrorKind.INVALID


class PeriodOutOfOrder(DomainError):
    """Months close in order: an earlier month is still open."""

    type_slug = "period-out-of-order"
    kind = ErrorKind.CONFLICT


class PeriodRecognised(DomainError):
    """A month whose revenue was recognised stays closed: its stored run (and
    the journal's revenue lines) read it as final. Corrections post in the
    open period."""

    type_slug = "period-recognised"
    kind = ErrorKind.CONFLICT


def parse_month(text: str) -> date:
    """The first day of the month ``text`` names (``YYYY-MM``)."""
    found = _MONTH.fullmatch(text)
    if found is None or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1:
        raise InvalidMonth(f"month: {text[:20]!r} is not a month written YYYY-MM (e.g. 2026-11)")
    return date(int(found[1]), int(found[2]), 1)


def month_label(month: date) -> str:
    return f"{month.year:04d}-{month.month:02d}"


def _view(month: date, row: PeriodRow | None, zone: str, now: datetime) -> FinancePeriod:
    starts_at, ends_at = calendar.month_bounds(month, zone)
    if row is None:
        return FinancePeriod(
            month=month_label(month),
            starts_at=starts_at,
            ends_at=ends_at,
            status="open",
            ended=ends_at <= now,
        )
    return FinancePeriod(
        month=month_label(month),
        starts_at=starts_at,
        ends_at=ends_at,
        status="closed" if row.status == PeriodStatus.CLOSED else "open",
        ended=ends_at <= now,
        closed_at=row.closed_at,
        closed_by=row.closed_by,
        reopened_at=row.reopened_at,
        reopened_by=row.reopened_by,
        reopen_reason=row.reopen_reason,
    )


async def _rows(session: AsyncSession, program: Program) -> dict[date, PeriodRow]:
    rows = await session.scalars(select(PeriodRow).where(PeriodRow.program_id == program.id))
    return {row.month: row for row in rows}


def _first_open(rows: dict[date, PeriodRow], program: Program, zone: str) -> date:
    """The earliest open month: closed months are always the first ones."""
    month = calendar.month_of(program.started_at, zone)
    while (row := rows.get(month)) is not None and row.status == PeriodStatus.CLOSED:
        month = calendar.next_month(month)
    return month


def _subject(program: Program, month: date) -> str:
    return f"program:{program.slug}:finance:period:{month_label(month)}"


def _within_program(month: date, program: Program, zone: str) -> None:
    start = calendar.month_of(program.started_at, zone)
    if month < start:
        raise PeriodBeforeProgram(
            f"month: {month_label(month)} is before the program's start month"
            f" ({month_label(start)})"
        )


async def list_periods(session: AsyncSession, program: Program, now: datetime) -> FinancePeriodList:
    """Every month from the program's start month to the current one, oldest first."""
    connection = await session_connection(session)
    zone = await accounting_zone(connection, program.ledger_id)
    rows = await _rows(session, program)
    current = calendar.month_of(now, zone)
    month = calendar.month_of(program.started_at, zone)
    periods = []
    while month <= current:
        periods.append(_view(month, rows.get(month), zone, now))
        month = calendar.next_month(month)
    first_open = _first_open(rows, program, zone)
    return FinancePeriodList(
        periods=periods,
        next_to_close=month_label(first_open)
        if calendar.month_bounds(first_open, zone)[1] <= now
        else None,
        closed_through=await ledger_periods.closed_through(connection, program.ledger_id),
        time_zone=zone,
    )


async def close_period(
    session: AsyncSession, program: Program, month: str, now: datetime, *, principal: Principal
) -> FinancePeriodClosing:
    """Close ``month`` (YYYY-MM): the earliest open month, once it has ended.
    A closed month answers as it is, and nothing is written."""
    first_day = parse_month(month)
    connection = await session_connection(session)
    zone = await accounting_zone(connection, program.ledger_id)
    _within_program(first_day, program, zone)
    await ledger_periods.closed_through(connection, program.ledger_id, hold=True)
    rows = await _rows(session, program)
    row = rows.get(first_day)
    if first_day >= calendar.month_of(now, zone):
        raise PeriodNotEnded(f"month: {month_label(first_day)} has not ended in {zone}")
    _, ends_at = calendar.month_bounds(first_day, zone)
    last_instant = ends_at - ledger_periods.RESOLUTION
    if row is not None and row.status == PeriodStatus.CLOSED:
        # The ledger's boundary is at or past it already: nothing moves.
        boundary = await ledger_periods.close_through(connection, program.ledger_id, last_instant)
        return FinancePeriodClosing(
            period=_view(first_day, row, zone, now), changed=False, closed_through=boundary
        )
    first_open = _first_open(rows, program, zone)
    if first_day != first_open:
        raise PeriodOutOfOrder(f"months close in order: close {month_label(first_open)} first")
    if row is None:
        row = PeriodRow(program_id=program.id, month=first_day)
        session.add(row)
    row.status = PeriodStatus.CLOSED
    row.closed_at = now
    row.closed_by = principal.actor
    boundary = await ledger_periods.close_through(connection, program.ledger_id, last_instant)
    await session.flush()
    await audit.record(
        session,
        principal,
        "finance.period.close",
        _subject(program, first_day),
        {"month": month_label(first_day), "closed_through": boundary.isoformat()},
    )
    return FinancePeriodClosing(
        period=_view(first_day, row, zone, now), changed=True, closed_through=boundary
    )


async def reopen_period(
    session: AsyncSession,
    program: Program,
    month: str,
    reason: str,
    now: datetime,
    *,
    principal: Principal,
) -> FinancePeriodReopening:
    """Reopen ``month`` and every later closed month, with ``reason``. An
    open month answers with nothing reopened, and nothing is written."""
    first_day = parse_month(month)
    connection = await session_connection(session)
    zone = await accounting_zone(connection, program.ledger_id)
    _within_program(first_day, program, zone)
    # The revenue runs' lock first: a run that read the month closed has
    # committed its row before this looks, and none starts meanwhile.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:key, hashtext(:program))"),
        {"key": REVENUE_LOCK, "program": str(program.id)},
    )
    recognised = await session.scalar(
        select(func.min(RevenuePeriod.period)).where(
            RevenuePeriod.program_id == program.id, RevenuePeriod.period >= first_day
        )
    )
    if recognised is not None:
        raise PeriodRecognised(
            f"month: {month_label(recognised)}'s revenue was recognised; a recognised month"
            " stays closed (post corrections in the open period)"
        )
    boundary = await ledger_periods.closed_through(connection, program.ledger_id, hold=True)
    rows = await _rows(session, program)
    closed = sorted(
        (row for m, row in rows.items() if m >= first_day and row.status == PeriodStatus.CLOSED),
        key=lambda row: row.month,
    )
    if not closed or closed[0].month != first_day:
        return FinancePeriodReopening(reopened=[], closed_through=boundary)
    for row in closed:
        row.status = PeriodStatus.OPEN
        row.reopened_at = now
        row.reopened_by = principal.actor
        row.reopen_reason = reason
    starts_at, _ = calendar.month_bounds(first_day, zone)
    boundary = await ledger_periods.reopen_from(connection, program.ledger_id, starts_at)
    await session.flush()
    await audit.record(
        session,
        principal,
        "finance.period.reopen",
        _subject(program, first_day),
        {
            "month": month_label(first_day),
            "reason": reason,
            "reopened": [month_label(row.month) for row in closed],
            "closed_through": boundary.isoformat() if boundary else None,
        },
    )
    return FinancePeriodReopening(
        reopened=[_view(row.month, row, zone, now) for row in closed], closed_through=boundary
    )
