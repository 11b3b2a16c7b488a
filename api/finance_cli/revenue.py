"""`coalition finance` commands: revenue recognition and the journal.

``recognise`` runs a period's recognition (as ``POST .../finance/revenue/
recognitions``) and prints one line; ``journal`` writes a period's journal
to a file, streamed (a temporary file beside it, renamed at the end: a
failed export leaves no file). Bad input is one plain line on stderr and
exit code 1 (2 for bad settings), with nothing written.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import click

from api.cli_runtime import in_program, plain_errors, sessions_on, with_pool
from api.database import database_url
from api.finance_cli.group import finance_group
from api.settings import load_settings
from core.exports import ExportFormat
from finance.journal import JournalProgram, export_journal
from finance.revenue.runs import recognise_period
from finance.revenue.schemas import period_start

_PROGRAM = click.option("--program", required=True, help="The program's slug.")
_PERIOD = click.option("--period", required=True, help="The calendar month, YYYY-MM.")


async def _program(url: str, slug: str) -> JournalProgram:
    from api.access import CONSOLE
    from core.programs import get_program

    async with sessions_on(url) as sessions, sessions() as session:
        found = await get_program(session, CONSOLE, slug)
        return JournalProgram(found.id, found.slug, found.currency, found.time_zone)


@finance_group.command("recognise")
@_PROGRAM
@_PERIOD
@click.option(
    "--preview",
    is_flag=True,
    help="Compute the run of an ended month not closed yet and write nothing.",
)
def recognise(program: str, period: str, preview: bool) -> None:
    """Recognise a period's revenue: re-estimate breakage, allocate, recognise (once).
    The month must be closed (`coalition finance close`), or ask for --preview."""
    from api.access import CONSOLE

    with plain_errors():
        start = period_start(period)
        run = in_program(
            program,
            lambda session, _, found: recognise_period(
                session, found, start, datetime.now(UTC), principal=CONSOLE, preview=preview
            ),
            write=True,
        )
    if run.preview:
        state = "previewed (nothing written)"
    else:
        state = "was recognised already" if run.replayed else "recognised"
    click.echo(
        f"finance: {program} {run.period} {state}: {run.allocations} allocations,"
        f" {run.estimates} estimates, revenue {run.recognised_minor} + service"
        f" {run.service_recognised_minor} {run.currency} minor units"
    )


async def _write_journal(
    url: str, slug: str, period: str, export_format: ExportFormat, output: Path
) -> int:
    start = period_start(period)
    program = await _program(url, slug)
    partial = output.with_name(f".{output.name}.partial")

    async def write(pool: asyncpg.Pool) -> int:
        written = 0
        async with pool.acquire() as connection:
            with partial.open("wb") as file:
                async for chunk in export_journal(connection, program, start, export_format):
                    file.write(chunk)
                    written += len(chunk)
        return written

    try:
        size = await with_pool(url, write)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, output)
    return size


@finance_group.command("journal")
@_PROGRAM
@_PERIOD
@click.option(
    "--format",
    "export_format",
    type=click.Choice([f.value for f in ExportFormat]),
    default=ExportFormat.CSV.value,
    show_default=True,
    help="The file's format.",
)
@click.option(
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="The file to write (replaced if it exists).",
)
def journal(program: str, period: str, export_format: str, output: Path) -> None:
    """Write a period's journal (revenue and money ledger lines) to a file."""
    with plain_errors():
        period_start(period)  # a bad period fails before anything is opened
        with database_url(load_settings()) as url:
            size = asyncio.run(
                _write_journal(url, program, period, ExportFormat(export_format), output)
            )
    click.echo(f"finance: {program} {period} journal written to {output} ({size} bytes)")
