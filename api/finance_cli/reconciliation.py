"""`coalition finance reconcile`: reconcile one program's ledgers, or every
program's, now; print each difference (one line, then its first transfer
ids); exit 1 when there is any, 0 when everything ties. Bad input (an
unknown program, a window that is not one) is one plain line on stderr and
exit code 2, with nothing written."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import click
from sqlalchemy import select

from api.cli_runtime import fail, plain_errors, sessions_on
from api.database import database_url
from api.finance_cli.group import finance_group
from api.settings import load_settings
from core.errors import NotFound
from core.models import Program
from finance.reconciliation import InvalidReconciliationWindow
from finance.reconciliation_schemas import (
    ReconciliationDifferenceView,
    ReconciliationRunDetail,
    ReconciliationRunRequest,
)

EXIT_DIFFERENCES = 1
EXIT_BAD_INPUT = 2
#: Transfer ids printed under a difference; its drill-down's query lists all.
_SHOWN = 5


def _request(first_day: datetime | None, last_day: datetime | None) -> ReconciliationRunRequest:
    try:
        return ReconciliationRunRequest(
            first_day=first_day.date() if first_day else None,
            last_day=last_day.date() if last_day else None,
        )
    except ValueError as error:
        fail(str(error), EXIT_BAD_INPUT)


async def _reconcile(
    url: str, slug: str | None, request: ReconciliationRunRequest
) -> list[tuple[str, ReconciliationRunDetail, list[ReconciliationDifferenceView]]]:
    from api.access import CONSOLE
    from core.programs import get_program
    from finance.reconciliation import get_run, run_reconciliation

    done = []
    async with sessions_on(url) as sessions:
        async with sessions() as session:
            if slug is not None:
                programs = [await get_program(session, CONSOLE, slug)]
            else:
                programs = list(await session.scalars(select(Program).order_by(Program.slug)))
        for program in programs:
            async with sessions() as session, session.begin():
                detail = await run_reconciliation(
                    session, program, request, datetime.now(UTC), principal=CONSOLE
                )
            differences = list(detail.differences)
            cursor = detail.next_cursor
            while cursor is not None:
                async with sessions() as session:
                    page = await get_run(
                        session,
                        program,
                        uuid.UUID(detail.run.id),
                        principal=CONSOLE,
                        limit=200,
                        cursor=cursor,
                    )
                differences.extend(page.differences)
                cursor = page.next_cursor
            done.append((program.slug, detail, differences))
    return done


def _line(slug: str, difference: ReconciliationDifferenceView) -> str:
    return (
        f"{slug}  {difference.check}  {difference.subject}  {difference.measure}:"
        f" expected {difference.expected}, found {difference.found}"
        f" (difference {difference.difference:+d})"
    )


def _drill_down(difference: ReconciliationDifferenceView) -> list[str]:
    lines = []
    transfers = difference.drill_down.get("transfers") or []
    if transfers:
        more = int(difference.drill_down.get("transfers_count") or len(transfers))
        shown = ", ".join(str(t) for t in transfers[:_SHOWN])
        rest = f" and {more - _SHOWN} more" if more > _SHOWN else ""
        lines.append(f"    transfers: {shown}{rest}")
    query = difference.drill_down.get("transfers_query") or difference.drill_down.get("query")
    if query:
        lines.append(f"    all of them: {query}")
    return lines


@finance_group.command("reconcile")
@click.option("--program", default=None, help="The program's slug (every program if left out).")
@click.option(
    "--first-day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The first accounting day of the daily aggregates compared (YYYY-MM-DD).",
)
@click.option(
    "--last-day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The last accounting day of the daily aggregates compared (today if left out).",
)
def reconcile(program: str | None, first_day: datetime | None, last_day: datetime | None) -> None:
    """Reconcile the ledgers now: balances, statements, payments, lots and
    daily aggregates against the transfers; exit 1 on any difference."""
    request = _request(first_day, last_day)
    with plain_errors():
        try:
            with database_url(load_settings()) as url:
                done = asyncio.run(_reconcile(url, program, request))
        except (NotFound, InvalidReconciliationWindow) as error:
            fail(str(error), EXIT_BAD_INPUT)
    total = 0
    for slug, detail, differences in done:
        run = detail.run
        click.echo(
            f"finance: {slug} reconciliation {run.id}: {run.differences} differences"
            f" (ledgers {', '.join(map(str, run.ledgers))};"
            f" daily aggregates {run.first_day}..{run.last_day})"
        )
        for difference in differences:
            click.echo(_line(slug, difference))
            for line in _drill_down(difference):
                click.echo(line)
        total += run.differences
    if total:
        raise SystemExit(EXIT_DIFFERENCES)
