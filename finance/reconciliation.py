"""Reconciliation: a program's books re-derived from the ledger's transfers,
and every figure kept beside them tied to them, at one instant.

A run reads the program's points ledger and money ledgers on one snapshot
(a repeatable-read transaction of its own, so that a transfer committed
while it reads cannot show as a difference), runs every check
(``finance.reconciliation_checks``, ``finance.reconciliation_lots``) and
stores each difference it finds with its drill-down, whatever it is: a
difference is never netted against another nor left out. A run with
differences raises the alert: the outbox event ``ALERT_TOPIC`` and one
WARNING line naming the run and the count, both written with the run.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.errors import DomainError, ErrorKind, NotFound
from core.models import Program
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal
from finance import reconciliation_checks as checks
from finance import reconciliation_lots as lots
from finance.lot_settling import engine_of, settle_apart
from finance.reconciliation_checks import CheckResult, Difference
from finance.reconciliation_models import ReconciliationDifference, ReconciliationRun
from finance.reconciliation_schemas import (
    WINDOW_DAYS_MAX,
    ReconciliationCheckTally,
    ReconciliationDifferenceView,
    ReconciliationRunDetail,
    ReconciliationRunRequest,
    ReconciliationRunView,
)
from finance.report_dates import accounting_zone
from ledger import new_id
from ledger import reconciliation_reads as reads
from partners.money_ledger import ledger_name
from rewards.connections import session_connection

log = logging.getLogger(__name__)

#: The outbox topic of a run that found differences (subject ``program:<id>``).
ALERT_TOPIC = "finance.reconciliation_differences"
#: The daily aggregates' window when the request names none: through today.
DEFAULT_WINDOW_DAYS = 31
#: Differences answered with a run when it is made.
FIRST_PAGE = 50


class InvalidReconciliationWindow(DomainError):
    """The window of daily aggregates is not one a run compares: its first
    day after its last, or longer than ``WINDOW_DAYS_MAX`` days."""

    type_slug = "invalid-reconciliation-window"
    kind = ErrorKind.INVALID


@contextlib.asynccontextmanager
async def _snapshot(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """A read-only session of its own in a repeatable-read transaction: all
    its reads see one instant, whatever commits meanwhile."""
    async with engine_of(session).connect() as connection:
        await connection.execution_options(isolation_level="REPEATABLE READ")
        async with AsyncSession(bind=connection) as reader:
            await reader.execute(text("SET TRANSACTION READ ONLY"))
            yield reader
            await reader.rollback()


def window_of(zone: str, request: ReconciliationRunRequest, now: datetime) -> tuple[date, date]:
    """The accounting days (of the ledger's ``zone``) whose daily aggregates
    a run compares."""
    today = now.astimezone(ZoneInfo(zone)).date()
    last = request.last_day or today
    first = request.first_day or last - timedelta(days=DEFAULT_WINDOW_DAYS - 1)
    if first > last:
        raise InvalidReconciliationWindow(
            f"first_day: {first} is after the window's last day {last} (today when left out)"
        )
    if (last - first).days >= WINDOW_DAYS_MAX:
        raise InvalidReconciliationWindow(
            f"first_day: the window {first} to {last} is longer than {WINDOW_DAYS_MAX} days"
        )
    return first, last


async def _find(
    reader: AsyncSession, program: Program, first: date, last: date
) -> tuple[list[int], dict[str, CheckResult]]:
    conn = await session_connection(reader)
    # The driver's own connection (no pool proxy): what the ledger's reads take.
    assert isinstance(conn, asyncpg.Connection)
    ledgers = await reads.program_ledgers(
        conn,
        points_ledger=program.ledger_id,
        money_prefix=ledger_name(program, ""),
    )
    book = await checks.load_statements(reader, conn, program)
    results = {
        "balances": await checks.check_balances(conn, ledgers),
        "ledger_invariants": await checks.check_invariants(conn, ledgers),
        "statements": checks.check_statements(program, book),
        "payments": await checks.check_payments(reader, book),
        "funding_purchases": await checks.check_funding_purchases(reader, conn, program),
    }
    results.update(await lots.lot_checks(conn, ledgers, first, last))
    return ledgers, results


async def run_reconciliation(
    session: AsyncSession,
    program: Program,
    request: ReconciliationRunRequest,
    now: datetime,
    *,
    principal: Principal,
    scheduled_for: date | None = None,
) -> ReconciliationRunDetail:
    """Reconcile the program's ledgers now; store the run and every
    difference, its audit line and, with differences, the alert. The
    caller commits."""
    principal.require("finance:write")
    zone = await accounting_zone(await session_connection(session), program.ledger_id)
    first, last = window_of(zone, request, now)
    started = time.perf_counter()
    # The snapshot is read-only: what waits is written first, apart.
    await settle_apart(session, program.ledger_id)
    async with _snapshot(session) as reader:
        ledgers, results = await _find(reader, program, first, last)
    # The caller's clock gives the instant; how long the checks took, the run's own.
    finished_at = now + timedelta(seconds=time.perf_counter() - started)
    differences = [d for result in results.values() for d in result.differences]
    run = ReconciliationRun(
        program_id=program.id,
        actor=principal.actor[:200],
        scheduled_for=scheduled_for,
        first_day=first,
        last_day=last,
        ledgers=ledgers,
        checks={
            name: {"checked": result.checked, "differences": len(result.differences)}
            for name, result in results.items()
        },
        differences=len(differences),
        started_at=now,
        finished_at=finished_at,
    )
    session.add(run)
    await session.flush()
    # Ids ascending in the order found: a run's differences page in that order.
    ids = sorted(new_id() for _ in differences)
    rows = [_row(run, program, i, d) for i, d in zip(ids, differences, strict=True)]
    session.add_all(rows)
    await session.flush()
    await audit.record(
        session,
        principal,
        "finance.reconciliation.run",
        f"program:{program.slug}:reconciliation:{run.id}",
        {"differences": len(differences), "ledgers": ledgers, "window": [str(first), str(last)]},
    )
    if differences:
        await _alert(session, program, run)
    return ReconciliationRunDetail(
        run=_run_view(run),
        differences=[_difference_view(r) for r in rows[:FIRST_PAGE]],
        next_cursor=page_of(rows, [r.id for r in rows], FIRST_PAGE).next_cursor,
    )


def _row(
    run: ReconciliationRun, program: Program, row_id: uuid.UUID, found: Difference
) -> ReconciliationDifference:
    return ReconciliationDifference(
        id=row_id,
        run_id=run.id,
        program_id=program.id,
        check=found.check,
        subject=found.subject[:200],
        measure=found.measure[:64],
        expected=found.expected,
        found=found.found,
        difference=found.found - found.expected,
        drill_down=found.drill_down,
    )


async def _alert(session: AsyncSession, program: Program, run: ReconciliationRun) -> None:
    """The event for the operator's webhooks and the log line, once per run."""
    counts = {name: tally["differences"] for name, tally in run.checks.items()}
    await outbox.emit(
        session,
        ALERT_TOPIC,
        f"program:{program.id}",
        {
            "run_id": str(run.id),
            "program": program.slug,
            "ledgers": list(run.ledgers),
            "differences": run.differences,
            "checks": {name: n for name, n in counts.items() if n},
            "first_day": run.first_day.isoformat(),
            "last_day": run.last_day.isoformat(),
            # The run with its differences and their drill-downs (operator API).
            "path": f"/programs/{program.slug}/finance/reconciliations/{run.id}",
        },
    )
    log.warning(
        "reconciliation run %s of program %s found %d differences (%s)",
        run.id,
        program.slug,
        run.differences,
        ", ".join(f"{name} {n}" for name, n in counts.items() if n),
    )


def _run_view(run: ReconciliationRun) -> ReconciliationRunView:
    return ReconciliationRunView(
        id=str(run.id),
        actor=run.actor,
        scheduled_for=run.scheduled_for,
        first_day=run.first_day,
        last_day=run.last_day,
        ledgers=list(run.ledgers),
        checks={
            name: ReconciliationCheckTally(
                checked=int(tally["checked"]), differences=int(tally["differences"])
            )
            for name, tally in run.checks.items()
        },
        differences=run.differences,
        started_at=run.started_at,
        finished_at=run.finished_at,
    )


def _difference_view(row: ReconciliationDifference) -> ReconciliationDifferenceView:
    return ReconciliationDifferenceView(
        id=str(row.id),
        check=row.check,
        subject=row.subject,
        measure=row.measure,
        expected=int(row.expected),
        found=int(row.found),
        difference=int(row.difference),
        drill_down=row.drill_down,
    )


async def list_runs(
    session: AsyncSession,
    program: Program,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
) -> Page[ReconciliationRunView]:
    """The program's runs, newest first."""
    principal.require("finance:read")
    query = select(ReconciliationRun).where(ReconciliationRun.program_id == program.id)
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(ReconciliationRun.id < after)
    rows = list(await session.scalars(query.order_by(ReconciliationRun.id.desc()).limit(limit + 1)))
    return page_of([_run_view(r) for r in rows], [r.id for r in rows], limit)


async def get_run(
    session: AsyncSession,
    program: Program,
    run_id: uuid.UUID,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
) -> ReconciliationRunDetail:
    """A run of the program with a page of its differences, in the order
    they were found; another program's run is not found."""
    principal.require("finance:read")
    run = await session.scalar(
        select(ReconciliationRun).where(
            ReconciliationRun.id == run_id, ReconciliationRun.program_id == program.id
        )
    )
    if run is None:
        raise NotFound(f"no reconciliation run {run_id}")
    query = select(ReconciliationDifference).where(ReconciliationDifference.run_id == run.id)
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(ReconciliationDifference.id > after)
    rows = list(await session.scalars(query.order_by(ReconciliationDifference.id).limit(limit + 1)))
    page = page_of([_difference_view(r) for r in rows], [r.id for r in rows], limit)
    return ReconciliationRunDetail(
        run=_run_view(run), differences=page.items, next_cursor=page.next_cursor
    )
