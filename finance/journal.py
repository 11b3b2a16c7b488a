"""A program's journal for a period, as the general ledger takes it.

Journals, each with a stable id (UUIDv5 of program, period, source and
category: exporting again gives the same ids), dated the period's last day:

- ``revenue`` / ``deferral``: the points' share of the sales the period's
  run allocated, out of sales revenue into the contract liability; partner
  fees' redemption elements (contract liability) and service elements
  (deferred service revenue), out of the points sold to partners. One pair
  of lines per cohort and source;
- ``revenue`` / ``recognition``: the period's revenue per cohort, from the
  contract liability to loyalty revenue (reversed when a revised estimate
  made it negative), and the service elements' straight-line share;
- ``money_ledger:<currency>`` / one category per transfer code: every
  posted movement of the program's money ledger in that currency
  (statements, payments, payouts, referral and MDF money) whose business
  time falls in the period (in the program's time zone), one debit and one
  credit line per transfer.

Lines carry the GL account (``finance.gl_accounts``), the side, the
currency and amount in minor units, and the amount in the functional
currency (the program's) with its exchange rate and date: 1 at the
period's last day for the program's own currency. No rate source exists
for another currency: its lines leave the functional amount, the rate and
its date empty (they balance in their own currency). Each line says what is
behind it: a money line the id of its ledger transfer (``transfer_ids``);
an aggregated revenue line a reference that drills down (``drill_down``:
the table, period, cohort and source or element of its rows, which
``GET .../finance/revenue/allocations`` and the recognition run list).

Every journal balances (debits = credits, per currency). The order of the
lines is fixed (journal, then cohort or code, business time, ledger
order), and the export depends only on the rows, so a period exported
twice gives the same bytes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from core.codes import AccountCode, TransferCode, movement_name
from core.exports import ExportFormat, export_chunks
from finance.gl_accounts import GlAccounts, RevenueRole
from ledger.journal_reads import Connection, ledgers_named_from, period_transfers

NAMESPACE = uuid.UUID("6c1f0e8a-3b7d-5a42-9e51-2d8c4f7b0a13")
DEBIT, CREDIT = "debit", "credit"
REVENUE = "revenue"

SCHEMA = pa.schema(
    [
        ("journal_id", pa.string()),
        ("accounting_date", pa.date32()),
        ("period", pa.string()),
        ("source", pa.string()),
        ("category", pa.string()),
        ("line", pa.int32()),
        ("gl_account", pa.string()),
        ("side", pa.string()),
        ("currency", pa.string()),
        ("amount_minor", pa.int64()),
        ("functional_currency", pa.string()),
        ("functional_amount_minor", pa.int64()),
        ("exchange_rate", pa.string()),
        ("exchange_rate_date", pa.date32()),
        ("memo", pa.string()),
        ("transfer_ids", pa.string()),
        ("drill_down", pa.string()),
    ]
)

Row = tuple[Any, ...]


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


class _Journal:
    """The constant columns of one journal's lines, and its line count."""

    def __init__(
        self,
        program: JournalProgram,
        label: str,
        last_day: date,
        source: str,
        category: str,
        currency: str,
    ) -> None:
        self.head = (
            str(journal_id(program.id, label, source, category)),
            last_day,
            label,
            source,
            category,
        )
        self.currency = currency
        own = currency == program.currency
        self.functional = (program.currency, "1", last_day) if own else (None, None, None)
        self.lines = 0

    def line(
        self, account: str, side: str, amount: int, memo: str, transfers: str, drill: str
    ) -> Row:
        self.lines += 1
        functional_currency, exchange_rate, rate_date = self.functional
        return (
            *self.head,
            self.lines,
            account,
            side,
            self.currency,
            amount,
            functional_currency,
            amount if functional_currency is not None else None,
            exchange_rate,
            rate_date,
            memo,
            transfers,
            drill,
        )

    def pair(
        self, debit: str, credit: str, amount: int, memo: str, transfers: str, drill: str
    ) -> Iterable[Row]:
        """A debit and a credit of ``amount``; sides swapped for a negative one."""
        if amount < 0:
            debit, credit, amount = credit, debit, -amount
        if amount == 0:
            return ()
        return (
            self.line(debit, DEBIT, amount, memo, transfers, drill),
            self.line(credit, CREDIT, amount, memo, transfers, drill),
        )


_DEFERRALS = """
SELECT cohort, source, sum(points_minor)::bigint, sum(service_minor)::bigint
FROM revenue_allocations WHERE program_id = $1 AND period = $2
GROUP BY cohort, source ORDER BY cohort, source
"""
_RECOGNITIONS = """
SELECT cohort, element, recognised_in_period_minor
FROM revenue_recognitions WHERE program_id = $1 AND period = $2
ORDER BY cohort, element
"""


async def _revenue_lines(
    connection: Connection,
    program: JournalProgram,
    period: date,
    label: str,
    last_day: date,
    gl: GlAccounts,
) -> AsyncIterator[Row]:
    liability = gl.for_role(RevenueRole.CONTRACT_LIABILITY)
    deferred_service = gl.for_role(RevenueRole.DEFERRED_SERVICE_REVENUE)
    sold = gl.for_account(AccountCode.PARTNER_REVENUE, TransferCode.PARTNER_SETTLEMENT)
    deferral = _Journal(program, label, last_day, REVENUE, "deferral", program.currency)
    for cohort, source, points, service in await connection.fetch(_DEFERRALS, program.id, period):
        month = cohort.strftime("%Y-%m")
        drill = f"revenue_allocations period={label} cohort={month} source={source}"
        if source == "sale":
            rows = deferral.pair(
                gl.for_role(RevenueRole.SALES_REVENUE),
                liability,
                points,
                f"points' share of sales, cohort {month}",
                "",
                drill,
            )
        else:
            rows = (
                *deferral.pair(
                    sold,
                    liability,
                    points,
                    f"partner fees' redemption element, cohort {month}",
                    "",
                    drill,
                ),
                *deferral.pair(
                    sold,
                    deferred_service,
                    service,
                    f"partner fees' service element, cohort {month}",
                    "",
                    drill,
                ),
            )
        for row in rows:
            yield row
    recognition = _Journal(program, label, last_day, REVENUE, "recognition", program.currency)
    for cohort, element, amount in await connection.fetch(_RECOGNITIONS, program.id, period):
        month = cohort.strftime("%Y-%m")
        drill = f"revenue_recognitions period={label} cohort={month} element={element}"
        if element == "points":
            rows = recognition.pair(
                liability,
                gl.for_role(RevenueRole.LOYALTY_REVENUE),
                amount,
                f"points redeemed, cohort {month}",
                "",
                drill,
            )
        else:
            rows = recognition.pair(
                deferred_service,
                gl.for_role(RevenueRole.SERVICE_REVENUE),
                amount,
                f"service element, cohort {month}",
                "",
                drill,
            )
        for row in rows:
            yield row


async def _money_lines(
    connection: Connection,
    program: JournalProgram,
    label: str,
    start: datetime,
    end: datetime,
    last_day: date,
    gl: GlAccounts,
) -> AsyncIterator[Row]:
    prefix = f"money:{program.slug}:"
    zone = ZoneInfo(program.time_zone)
    for money in await ledgers_named_from(connection, prefix):
        currency = money.name[len(prefix) :]
        source = f"money_ledger:{currency}"
        journal: _Journal | None = None
        code_now = -1
        accounts: dict[tuple[int, int], str] = {}
        async for transfer_id, code, debit_code, credit_code, amount, at in period_transfers(
            connection, ledger=money.id, start=start, end=end
        ):
            if code != code_now or journal is None:
                code_now = code
                journal = _Journal(program, label, last_day, source, movement_name(code), currency)
                name = movement_name(code)
            for account_code in (debit_code, credit_code):
                if (code, account_code) not in accounts:
                    accounts[(code, account_code)] = gl.for_account(account_code, code)
            memo = f"{name} {at.astimezone(zone).date().isoformat()}"
            ids = str(transfer_id)
            yield journal.line(accounts[(code, debit_code)], DEBIT, amount, memo, ids, "")
            yield journal.line(accounts[(code, credit_code)], CREDIT, amount, memo, ids, "")


async def journal_lines(
    connection: Connection, program: JournalProgram, period: date, gl: GlAccounts
) -> AsyncIterator[Row]:
    """The period's lines in ``SCHEMA``'s order of columns, streamed. Call
    inside a transaction (a repeatable read one gives one snapshot)."""
    label = period.strftime("%Y-%m")
    start, end, last_day = period_range(period, program.time_zone)
    async for row in _revenue_lines(connection, program, period, label, last_day, gl):
        yield row
    async for row in _money_lines(connection, program, label, start, end, last_day, gl):
        yield row


async def gl_accounts_of(connection: Connection, program_id: uuid.UUID) -> GlAccounts:
    found = await connection.fetchval(
        "SELECT gl_accounts::text FROM revenue_settings WHERE program_id = $1", program_id
    )
    if found is None:
        return GlAccounts()
    return GlAccounts(json.loads(found))


async def export_journal(
    connection: Connection, program: JournalProgram, period: date, export_format: ExportFormat
) -> AsyncIterator[bytes]:
    """The period's journal as CSV or Parquet bytes, streamed, in one
    repeatable-read snapshot on ``connection`` (held until the last chunk)."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        gl = await gl_accounts_of(connection, program.id)
        rows = journal_lines(connection, program, period, gl)
        async for chunk in export_chunks(export_format, SCHEMA, rows):
            yield chunk
