"""``coalition finance exchange-rates add|list``: the operator's exchange
rates to the program's currency (as ``POST``/``GET .../finance/exchange-
rates``). Bad input (an unknown currency code, a rate not above 0, another
rate for a day that has one) is one plain line on stderr, exit code 1, and
nothing written."""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

import click
import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from api.cli_runtime import in_program, plain_errors
from api.finance_cli.group import finance_group
from core.models import Program
from core.pagination import PAGE_LIMIT_MAX
from finance.currencies import is_currency
from finance.exchange_rate_schemas import ExchangeRateBody, ExchangeRateView
from finance.exchange_rates import add_exchange_rate, list_exchange_rates
from ledger import Ledger

_PROGRAM = click.option("--program", required=True, help="The program's slug.")


@finance_group.group("exchange-rates")
def exchange_rates_group() -> None:
    """Exchange rates to the program's (functional) currency, by effective date."""


def _body(currency: str, rate: str, effective_on: str) -> ExchangeRateBody:
    try:
        amount = Decimal(rate)
    except InvalidOperation:
        raise ValueError(f"rate: {rate!r} is not a decimal number") from None
    try:
        day = date.fromisoformat(effective_on)
    except ValueError:
        raise ValueError(f"effective-on: {effective_on!r} is not a date (YYYY-MM-DD)") from None
    try:
        return msgspec.convert(
            {"currency": currency, "rate": amount, "effective_on": day}, ExchangeRateBody
        )
    except msgspec.ValidationError as error:
        raise ValueError(str(error)) from None


def _line(rate: ExchangeRateView) -> str:
    return (
        f"{rate.currency} {rate.rate:f} {rate.functional_currency} from"
        f" {rate.effective_on.isoformat()} (recorded by {rate.recorded_by}"
        f" at {rate.recorded_at.isoformat(timespec='seconds')})"
    )


@exchange_rates_group.command("add")
@_PROGRAM
@click.option("--currency", required=True, help="ISO 4217 code converted from, e.g. EUR.")
@click.option("--rate", required=True, help="Program currency units for one unit, e.g. 18.41.")
@click.option("--effective-on", required=True, help="The first day in force, YYYY-MM-DD.")
def add(program: str, currency: str, rate: str, effective_on: str) -> None:
    """Record a rate (never changed: a correction is a rate from a later day)."""
    from api.access import CONSOLE

    with plain_errors():
        body = _body(currency, rate, effective_on)
        added = in_program(
            program,
            lambda session, _, found: add_exchange_rate(session, found, body, principal=CONSOLE),
            write=True,
        )
    state = "recorded" if added.created else "was recorded already"
    click.echo(f"finance: {program} exchange rate {state}: {_line(added.view)}")


@exchange_rates_group.command("list")
@_PROGRAM
@click.option("--currency", default=None, help="Only this currency's rates.")
def list_rates(program: str, currency: str | None) -> None:
    """List the program's rates, latest recorded first (one per line)."""
    with plain_errors():
        views: list[ExchangeRateView] = []

        if currency is not None and not is_currency(currency):
            raise ValueError(f"currency: {currency!r} is not an ISO 4217 currency code")

        async def every(session: AsyncSession, _ledger: Ledger, found: Program) -> None:
            cursor = None
            while True:
                page = await list_exchange_rates(
                    session, found, limit=PAGE_LIMIT_MAX, cursor=cursor, currency=currency
                )
                views.extend(page.items)
                if page.next_cursor is None:
                    return
                cursor = page.next_cursor

        in_program(program, every, write=False)
    for view in views:
        click.echo(_line(view))
    if not views:
        click.echo(f"finance: {program} has no exchange rates")
