"""`coalition finance` commands: segments and analytics.

``segment-count`` prints how many members a saved segment holds now;
``segment-export`` writes its members to a file, streamed from a
server-side cursor (a temporary file beside it, renamed at the end: a
failed export leaves no file); ``partner-profitability`` prints one line
per partner for a month. Bad input is one plain line on stderr and exit
code 1 (2 for bad settings), with nothing written.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import click

from api.cli_runtime import in_program, plain_errors, sessions_on
from api.database import database_url
from api.finance_cli.group import finance_group
from api.settings import load_settings
from core.exports import ExportFormat, export_chunks
from finance.analytics.partner_profitability import partner_profitability
from finance.report_dates import parse_month
from partners.segments.members import EXPORT_SCHEMA, count_members, export_rows
from partners.segments.saved import resolved_segment

_PROGRAM = click.option("--program", required=True, help="The program's slug.")
_SEGMENT = click.option("--segment", required=True, help="The saved segment's name.")


async def _count(url: str, slug: str, name: str) -> int:
    from api.access import CONSOLE
    from core.programs import get_program

    async with sessions_on(url) as sessions, sessions() as session:
        program = await get_program(session, CONSOLE, slug)
        resolved = await resolved_segment(session, program, name, principal=CONSOLE)
        return await count_members(session, program, resolved, datetime.now(UTC))


@finance_group.command("segment-count")
@_PROGRAM
@_SEGMENT
def segment_count(program: str, segment: str) -> None:
    """How many members a saved segment holds now."""
    with plain_errors(), database_url(load_settings()) as url:
        members = asyncio.run(_count(url, program, segment))
    click.echo(f"finance: {program} segment {segment}: {members} members")


async def _export(
    url: str, slug: str, name: str, export_format: ExportFormat, output: Path
) -> tuple[int, int]:
    from api.access import CONSOLE
    from core.programs import get_program

    partial = output.with_name(f".{output.name}.partial")
    rows = size = 0
    try:
        async with sessions_on(url) as sessions:
            async with sessions() as session:
                program = await get_program(session, CONSOLE, slug)
                resolved = await resolved_segment(session, program, name, principal=CONSOLE)
            engine = sessions.kw["bind"]
            async with engine.connect() as connection, connection.begin():

                async def counted() -> AsyncIterator[Sequence[object]]:
                    nonlocal rows
                    async for row in export_rows(connection, program, resolved, datetime.now(UTC)):
                        rows += 1
                        yield row

                with partial.open("wb") as file:
                    async for chunk in export_chunks(export_format, EXPORT_SCHEMA, counted()):
                        file.write(chunk)
                        size += len(chunk)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, output)
    return rows, size


@finance_group.command("segment-export")
@_PROGRAM
@_SEGMENT
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
def segment_export(program: str, segment: str, export_format: str, output: Path) -> None:
    """Write a saved segment's members to a CSV or Parquet file."""
    with plain_errors(), database_url(load_settings()) as url:
        rows, size = asyncio.run(
            _export(url, program, segment, ExportFormat(export_format), output)
        )
    click.echo(
        f"finance: {program} segment {segment}: {rows} members written to {output} ({size} bytes)"
    )


@finance_group.command("partner-profitability")
@_PROGRAM
@click.option("--period", required=True, help="The calendar month, YYYY-MM.")
def partner_profitability_command(program: str, period: str) -> None:
    """Each partner's month: points issued and redeemed, money in and out, position."""
    with plain_errors():
        from api.access import CONSOLE

        month = parse_month("period", period)  # a bad month fails before anything is opened
        report = in_program(
            program,
            lambda session, ledger, found: partner_profitability(
                session, ledger, found, month, principal=CONSOLE
            ),
            write=False,
        )
    click.echo(
        "partner\tcurrency\tpoints_issued\tpoints_redeemed\tbilled\tpaid_in\treimbursed"
        "\tpaid_out\tnet_contribution\tbalance"
    )
    for p in report.partners:
        click.echo(
            f"{p.partner}\t{p.currency}\t{p.points_issued}\t{p.points_redeemed}"
            f"\t{p.billed_minor}\t{p.paid_in_minor}\t{p.reimbursed_minor}\t{p.paid_out_minor}"
            f"\t{p.net_contribution_minor}\t{p.balance_minor}"
        )
