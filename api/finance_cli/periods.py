"""`coalition finance` commands: periods (close, reopen, list).

Each prints one line per period (or per change) on stdout; bad input (a
month that is not one, a month out of order, an unknown program) is one
plain line on stderr and exit code 1, with nothing written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import click
import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from api.cli_runtime import in_program, plain_errors
from api.finance_cli.group import finance_group
from core.models import Program
from finance.period_schemas import FinancePeriod, FinancePeriodReopenRequest
from finance.periods import close_period, list_periods, reopen_period

T = TypeVar("T")

_PROGRAM = click.option("--program", required=True, help="The program's slug.")
_MONTH = click.option("--month", required=True, help="The calendar month, YYYY-MM.")


def _in_program(slug: str, use: Callable[[AsyncSession, Program], Awaitable[T]]) -> T:
    """Run ``use`` on the program ``slug`` in one transaction, committed at the end."""
    return in_program(slug, lambda session, _, program: use(session, program), write=True)


def _line(period: FinancePeriod) -> str:
    line = f"{period.month}  {period.status:<6}"
    if period.closed_at is not None and period.status == "closed":
        line += f"  closed {period.closed_at:%Y-%m-%d %H:%M} by {period.closed_by}"
    elif period.reopened_at is not None:
        line += f"  reopened {period.reopened_at:%Y-%m-%d %H:%M} by {period.reopened_by}"
    elif not period.ended:
        line += "  (not ended)"
    return line


@finance_group.command("close")
@_PROGRAM
@_MONTH
def close(program: str, month: str) -> None:
    """Close a month: the ledger refuses every movement dated in it or before."""
    from api.access import CONSOLE

    with plain_errors():
        closing = _in_program(
            program,
            lambda session, found: close_period(
                session, found, month, datetime.now(UTC), principal=CONSOLE
            ),
        )
    state = "closed" if closing.changed else "was closed already"
    click.echo(
        f"finance: {program} {closing.period.month} {state};"
        f" the ledger is closed through {closing.closed_through.isoformat()}"
    )


@finance_group.command("reopen")
@_PROGRAM
@_MONTH
@click.option("--reason", required=True, help="Why it reopens, for the audit trail.")
def reopen(program: str, month: str, reason: str) -> None:
    """Reopen a month and every later closed month, with a reason."""
    from api.access import CONSOLE

    with plain_errors():
        # The same bounds as the API's body (3 to 500 characters, no NUL).
        msgspec.convert({"reason": reason}, FinancePeriodReopenRequest)
        reopening = _in_program(
            program,
            lambda session, found: reopen_period(
                session, found, month, reason, datetime.now(UTC), principal=CONSOLE
            ),
        )
    if not reopening.reopened:
        click.echo(f"finance: {program} {month} is open; nothing reopened")
        return
    months = ", ".join(period.month for period in reopening.reopened)
    boundary = reopening.closed_through.isoformat() if reopening.closed_through else "none"
    click.echo(f"finance: {program} reopened {months}; the ledger is closed through {boundary}")


@finance_group.command("periods")
@_PROGRAM
def periods(program: str) -> None:
    """List the program's months from its start month, closed or open."""
    with plain_errors():
        listed = _in_program(
            program, lambda session, found: list_periods(session, found, datetime.now(UTC))
        )
    for period in listed.periods:
        click.echo(_line(period))
