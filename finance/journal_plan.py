"""What a period's journal export reads before its first line
(``finance.journal``): the program's facts, the period's bounds, the GL map,
the money ledgers and, for each currency other than the program's, the
exchange rate in force on the accounting date (the period's last day), and
how that currency's amounts reach the functional currency. A missing rate
fails here (``ExchangeRateMissing``), before any byte is sent."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from finance.exchange_rates import (
    RateInForce,
    conversion_factor,
    functional_minor,
    plain_rate,
    rate_in_force,
)
from finance.gl_accounts import GlAccounts
from finance.report_dates import accounting_zone
from ledger.journal_reads import Connection, NamedLedger, ledgers_named_from

NAMESPACE = uuid.UUID("6c1f0e8a-3b7d-5a42-9e51-2d8c4f7b0a13")


@dataclass(frozen=True)
class JournalProgram:
    id: uuid.UUID
    slug: str
    currency: str
    time_zone: str


def journal_id(program_id: uuid.UUID, period: str, source: str, category: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{program_id}:{period}:{source}:{category}")


def period_range(period: date, zone: str) -> tuple[datetime, datetime, date]:
    """[first instant, next period's first instant) and the last day."""
    tz = ZoneInfo(zone)
    year, month = divmod(period.year * 12 + period.month, 12)
    nxt = date(year, month + 1, 1)
    start = datetime(period.year, period.month, 1, tzinfo=tz)
    return start, datetime(nxt.year, nxt.month, 1, tzinfo=tz), nxt - timedelta(days=1)


@dataclass(frozen=True)
class Functional:
    """How a currency's lines reach the functional currency."""

    currency: str
    #: The rate as the line shows it ("1" for the functional currency).
    rate: str
    rate_date: date
    #: Functional minor units per minor unit of the line's currency.
    factor: Decimal

    def amount(self, amount_minor: int) -> int:
        return amount_minor if self.factor == 1 else functional_minor(amount_minor, self.factor)


def functional_of(
    program: JournalProgram, currency: str, last_day: date, rate: RateInForce | None
) -> Functional:
    if currency == program.currency or rate is None:
        return Functional(program.currency, "1", last_day, Decimal(1))
    return Functional(
        program.currency,
        f"{plain_rate(rate.rate):f}",
        rate.effective_on,
        conversion_factor(rate.rate, currency, program.currency),
    )


@dataclass(frozen=True)
class JournalPlan:
    """What a period's export reads before its first line: the GL map, the
    money ledgers, and each other currency's rate in force on the
    accounting date (the period's last day)."""

    program: JournalProgram
    period: date
    label: str
    start: datetime
    end: datetime
    last_day: date
    gl: GlAccounts
    money_ledgers: list[tuple[NamedLedger, str]]
    functional: dict[str, Functional] = field(default_factory=dict)


async def plan_journal(
    connection: Connection, program: JournalProgram, period: date
) -> JournalPlan:
    """Read what the export needs first; ``ExchangeRateMissing`` when a money
    ledger's currency has no rate in force on the period's last day."""
    label = period.strftime("%Y-%m")
    # The ledger's accounting days, not the program's current zone (which a
    # change may have moved since): the periods finance closes are dated so.
    ledger = await connection.fetchval("SELECT ledger_id FROM programs WHERE id = $1", program.id)
    if ledger is not None:
        program = replace(program, time_zone=await accounting_zone(connection, ledger))
    start, end, last_day = period_range(period, program.time_zone)
    prefix = f"money:{program.slug}:"
    ledgers = [
        (money, money.name[len(prefix) :]) for money in await ledgers_named_from(connection, prefix)
    ]
    functional = {program.currency: functional_of(program, program.currency, last_day, None)}
    for _, currency in ledgers:
        if currency not in functional:
            rate = await rate_in_force(connection, program.id, currency, last_day)
            functional[currency] = functional_of(program, currency, last_day, rate)
    return JournalPlan(
        program=program,
        period=period,
        label=label,
        start=start,
        end=end,
        last_day=last_day,
        gl=await gl_accounts_of(connection, program.id),
        money_ledgers=ledgers,
        functional=functional,
    )


async def gl_accounts_of(connection: Connection, program_id: uuid.UUID) -> GlAccounts:
    found = await connection.fetchval(
        "SELECT gl_accounts::text FROM revenue_settings WHERE program_id = $1", program_id
    )
    if found is None:
        return GlAccounts()
    return GlAccounts(json.loads(found))
