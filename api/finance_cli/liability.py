"""`coalition finance` commands: liability, roll-forward, trial-balance.

Each reads one report (the API's, from ``finance``) and prints it: as text
(the default), JSON, or a CSV or Parquet file (``--format``), on stdout or
into ``--output``. Bad input (a day or period that is not one, an unknown
program or partner) is one plain line on stderr and exit code 1; these
commands write nothing to the database.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import click
import msgspec
import pyarrow as pa

from api.cli_runtime import in_program, plain_errors
from api.finance_cli.group import finance_group

T = TypeVar("T")

_PROGRAM = click.option("--program", required=True, help="The program's slug.")
_FORMAT = click.option(
    "--format",
    "output_format",
    default="text",
    show_default=True,
    help="text (for people), json, or the lines as a csv or parquet file.",
)
_OUTPUT = click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of stdout.",
)
_AS_OF = click.option(
    "--as-of", required=True, help="The accounting day, YYYY-MM-DD: as of its end."
)


FORMATS = ("text", "json", "csv", "parquet")


def _one_of(name: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` if allowed, else ValueError (one plain line, as every bad input)."""
    if value not in allowed:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _report(slug: str, read: Callable[[Any, Any, Any], Awaitable[T]]) -> T:
    """``read(session, ledger, program)`` on the program ``slug``, read only."""
    return in_program(slug, read, write=False)


def _emit(
    report: Any,
    output_format: str,
    output: Path | None,
    schema: pa.Schema,
    rows: Callable[[Any], AsyncIterator[Sequence[Any]]],
    text: Callable[[Any], list[str]],
) -> None:
    from core.exports import ExportFormat, export_chunks

    if output_format in ("text", "json"):
        lines = text(report) if output_format == "text" else [msgspec.json.encode(report).decode()]
        body = "\n".join(lines) + "\n"
        if output is None:
            click.echo(body, nl=False)
        else:
            output.write_text(body, encoding="utf-8")
        return

    async def send(sink: BinaryIO) -> None:
        async for chunk in export_chunks(ExportFormat(output_format), schema, rows(report)):
            sink.write(chunk)

    if output is None:
        asyncio.run(send(sys.stdout.buffer))
    else:
        with output.open("wb") as sink:
            asyncio.run(send(sink))


def _liability_text(report: Any) -> list[str]:
    head = (
        f"liability of {report.program} as of {report.as_of} ({report.time_zone}):"
        f" {report.points} points, {report.value_minor} minor units of {report.currency}"
        f" at {report.point_value_minor} per point"
    )
    if report.tier_basis:
        head += f"; tiers: {report.tier_basis}"
    return [head] + [
        f"  {line.group:<40} {line.points:>15} {line.value_minor:>15}  {line.name}"
        for line in report.lines
    ]


def _roll_forward_text(report: Any) -> list[str]:
    scope = f" issued by {report.partner}" if report.partner else ""
    out = [
        f"roll-forward of {report.program}{scope}, {report.period} ({report.time_zone})",
        f"  {'opening':<40} {report.opening:>15}",
    ]
    out += [f"  {line.category:<12} {line.kind:<27} {line.points:>15}" for line in report.lines]
    out.append(f"  {'closing':<40} {report.closing:>15}")
    out.append(f"  {'difference':<40} {report.difference:>15}")
    if report.tie is not None:
        tie = report.tie
        out.append(
            f"  tie to the ledger: {'tied' if tie.tied else 'NOT TIED'}; differences:"
            f" opening {tie.opening_difference}, movements {tie.movements_difference},"
            f" closing {tie.closing_difference}"
        )
    return out


def _trial_balance_text(report: Any) -> list[str]:
    out = [
        f"trial balance of {report.program} ({report.ledger}, {report.unit}) as of"
        f" {report.as_of} ({report.time_zone})"
    ]
    out += [
        f"  {line.account_code:>5} {line.gl_account:<36} {line.debits:>18} {line.credits:>18}"
        for line in report.lines
    ]
    out.append(f"  {'total':<42} {report.debits:>18} {report.credits:>18}")
    out.append(f"  {'balanced' if report.balanced else 'NOT BALANCED'} ({report.difference})")
    return out


@finance_group.command("liability")
@_PROGRAM
@_AS_OF
@click.option(
    "--by",
    default="program",
    show_default=True,
    help="The breakdown: program, partner, cohort, tier or origin.",
)
@_FORMAT
@_OUTPUT
def liability(program: str, as_of: str, by: str, output_format: str, output: Path | None) -> None:
    """Outstanding points as of a day, valued at the point value in force then."""
    import finance.liability as report
    from api.access import CONSOLE
    from finance.report_dates import parse_day

    with plain_errors():
        _one_of("--format", output_format, FORMATS)
        breakdown = report.LiabilityBreakdown(
            _one_of("--by", by, [b.value for b in report.LiabilityBreakdown])
        )
        day = parse_day("as_of", as_of)
        found = _report(
            program,
            lambda session, _ledger, found: report.liability(
                session, found, day, breakdown, principal=CONSOLE
            ),
        )
        _emit(
            found, output_format, output, report.EXPORT_SCHEMA, report.export_rows, _liability_text
        )


@finance_group.command("roll-forward")
@_PROGRAM
@click.option("--period", help="A calendar month, YYYY-MM (or --first-day and --last-day).")
@click.option("--first-day", help="The first day, YYYY-MM-DD (included).")
@click.option("--last-day", help="The last day, YYYY-MM-DD (included).")
@click.option("--partner", help="A partner's slug: only the points it issued.")
@_FORMAT
@_OUTPUT
def roll_forward(
    program: str,
    period: str | None,
    first_day: str | None,
    last_day: str | None,
    partner: str | None,
    output_format: str,
    output: Path | None,
) -> None:
    """Opening, one line per kind of movement, closing; tied to the ledger."""
    import finance.rollforward as report
    from api.access import CONSOLE
    from finance.report_dates import parse_period

    with plain_errors():
        _one_of("--format", output_format, FORMATS)
        days = parse_period(period, first_day, last_day)
        found = _report(
            program,
            lambda session, _ledger, found: report.roll_forward(
                session, found, days, partner=partner, principal=CONSOLE
            ),
        )
        _emit(
            found,
            output_format,
            output,
            report.EXPORT_SCHEMA,
            report.export_rows,
            _roll_forward_text,
        )
    if found.tie is not None and not found.tie.tied:
        raise SystemExit(1)


@finance_group.command("trial-balance")
@_PROGRAM
@_AS_OF
@click.option(
    "--ledger",
    "which",
    default="points",
    show_default=True,
    help="points (the points ledger), or money (the money ledger in --currency).",
)
@click.option("--currency", help="The money ledger's currency [default: the program's].")
@_FORMAT
@_OUTPUT
def trial_balance(
    program: str,
    as_of: str,
    which: str,
    currency: str | None,
    output_format: str,
    output: Path | None,
) -> None:
    """Debits and credits per account code through a day; they net to zero."""
    import finance.trial_balance as report
    from api.access import CONSOLE
    from finance.report_dates import parse_day

    with plain_errors():
        _one_of("--format", output_format, FORMATS)
        kind = report.TrialBalanceLedger(
            _one_of("--ledger", which, [k.value for k in report.TrialBalanceLedger])
        )
        day = parse_day("as_of", as_of)
        if currency is not None and not re.fullmatch(r"[A-Z]{3}", currency):
            raise ValueError(f"currency: {currency!r} is not an ISO 4217 code (e.g. ZAR)")
        found = _report(
            program,
            lambda session, ledger, found: report.trial_balance(
                session,
                ledger,
                found,
                day,
                kind,
                currency=currency,
                principal=CONSOLE,
            ),
        )
        _emit(
            found,
            output_format,
            output,
            report.EXPORT_SCHEMA,
            report.export_rows,
            _trial_balance_text,
        )
    if not found.balanced:
        raise SystemExit(1)
