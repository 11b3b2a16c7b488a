"""The scheduled reconciliation (``reconcile-ledgers``): once a day, every
program's ledgers reconciled, one run per program and day of its zone."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from sqlalchemy import select, text

from core.models import Program
from core.modules import JobContext
from core.principal import system
from finance.reconciliation import run_reconciliation
from finance.reconciliation_models import ReconciliationRun
from finance.reconciliation_schemas import ReconciliationRunRequest
from finance.report_dates import accounting_zone
from rewards.connections import session_connection

log = logging.getLogger(__name__)

JOB_NAME = "reconcile-ledgers"
#: An advisory lock's first key: a program's scheduled run (second: the program).
_RUN_LOCK = 1380271955


async def reconcile_ledgers(context: JobContext) -> int:
    """Reconcile each program that has no scheduled run for its current day
    yet; answers how many runs it made. Two workers at once make one run a
    program (the second waits on the lock, then finds the first's)."""
    async with context.sessions() as session:
        programs = list(await session.scalars(select(Program).order_by(Program.id)))
    made = 0
    for program in programs:
        try:
            async with context.sessions() as session:
                zone = await accounting_zone(await session_connection(session), program.ledger_id)
                day = context.now.astimezone(ZoneInfo(zone)).date()
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(:key, hashtext(:program))"),
                    {"key": _RUN_LOCK, "program": str(program.id)},
                )
                done = await session.scalar(
                    select(ReconciliationRun.id)
                    .where(
                        ReconciliationRun.program_id == program.id,
                        ReconciliationRun.scheduled_for == day,
                    )
                    .limit(1)
                )
                if done is not None:
                    continue
                await run_reconciliation(
                    session,
                    program,
                    ReconciliationRunRequest(),
                    context.now,
                    principal=system(JOB_NAME),
                    scheduled_for=day,
                )
                await session.commit()
                made += 1
        except Exception:
            # One program's failure must not leave every other unreconciled.
            log.exception("reconciliation of program %s failed", program.slug)
    return made
