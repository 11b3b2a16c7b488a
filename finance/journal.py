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
currency (the program's) with its exchange rate and the rate's date: rate
1 dated the period's last day for the program's own currency; for another,
the operator's rate in force on the accounting date (``finance.
exchange_rates``: its effective date is the rate's date; the functional
amount is rounded half to even), and no rate in force fails the export
before its first byte. Each line says what is behind it: a money line the
id of its ledger transfer (``transfer_ids``); an aggregated revenue line a
reference that drills down (``drill_down``: the table, period, cohort and
source or element of its rows, which ``GET .../finance/revenue/
allocations`` and the recognition run list). The other one is empty (NULL).

Every journal balances (debits = credits, per currency, and in the
functional currency: a line pair converts one amount). The order of the
lines is fixed (journal, then cohort or code, business time, ledger
order), and the export depends only on the rows, so a period exported
twice gives the same bytes.

Speed: the money lines, nearly all of a large period's, are written as CSV
by PostgreSQL (``ledger.journal_reads.period_lines_csv``, ``COPY ... TO
STDOUT``) and streamed; Parquet parses those pieces with Arrow's CSV reader
into row groups. ``journal_lines`` builds the same lines row by row in
Python: the reference the tests hold the export to.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from core.codes import AccountCode, TransferCode, movement_name
from core.exports import ExportFormat, csv_lines, csv_tables, parquet_from_tables, rows_table
from finance.gl_accounts import RevenueRole
from finance.journal_plan import (
    JournalPlan,
    JournalProgram,
    gl_accounts_of,
    journal_id,
    period_range,
    plan_journal,
)
from finance.revenue.returns import period_reversals
from ledger.journal_reads import (
    Connection,
    JournalLineTemplate,
    NamedLedger,
    ledger_account_codes,
    period_lines_csv,
    period_transfers,
    transfer_codes_around,
)

__all__ = [
    "SCHEMA",
    "JournalProgram",
    "export_journal",
    "gl_accounts_of",
    "journal_id",
    "journal_lines",
    "period_range",
    "plan_journal",
]

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


class _Journal:
    """The constant columns of one journal's lines, and its line count."""

    def __init__(self, plan: JournalPlan, source: str, category: str, currency: str) -> None:
        self.head = (
            str(journal_id(plan.program.id, plan.label, source, category)),
            plan.last_day,
            plan.label,
            source,
            category,
        )
        self.currency = currency
        self.functional = plan.functional[currency]
        self.lines = 0

    def line(
        self,
        account: str,
        side: str,
        amount: int,
        memo: str,
        transfers: str | None,
        drill: str | None,
    ) -> Row:
        self.lines += 1
        functional = self.functional
        return (
            *self.head,
            self.lines,
            account,
            side,
            self.currency,
            amount,
            functional.currency,
            functional.amount(amount),
            functional.rate,
            functional.rate_date,
            memo,
            transfers,
            drill,
        )

    def pair(self, debit: str, credit: str, amount: int, memo: str, drill: str) -> Iterable[Row]:
        """A debit and a credit of ``amount``; sides swapped for a negative one."""
        if amount < 0:
            debit, credit, amount = credit, debit, -amount
        if amount == 0:
            return ()
        return (
            self.line(debit, DEBIT, amount, memo, None, drill),
            self.line(credit, CREDIT, amount, memo, None, drill),
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


async def revenue_lines(connection: Connection, plan: JournalPlan) -> list[Row]:
    """The revenue journals' lines (a few per cohort: kept in memory)."""
    program, period, label, gl = plan.program, plan.period, plan.label, plan.gl
    lines: list[Row] = []
    liability = gl.for_role(RevenueRole.CONTRACT_LIABILITY)
    deferred_service = gl.for_role(RevenueRole.DEFERRED_SERVICE_REVENUE)
    sold = gl.for_account(AccountCode.PARTNER_REVENUE, TransferCode.PARTNER_SETTLEMENT)
    deferral = _Journal(plan, REVENUE, "deferral", program.currency)
    for cohort, source, points, service in await connection.fetch(_DEFERRALS, program.id, period):
        month = cohort.strftime("%Y-%m")
        drill = f"revenue_allocations period={label} cohort={month} source={source}"
        if source == "sale":
            rows = deferral.pair(
                gl.for_role(RevenueRole.SALES_REVENUE),
                liability,
                points,
                f"points' share of sales, cohort {month}",
                drill,
            )
        else:
            rows = (
                *deferral.pair(
                    sold,
                    liability,
                    points,
                    f"partner fees' redemption element, cohort {month}",
                    drill,
                ),
                *deferral.pair(
                    sold,
                    deferred_service,
                    service,
                    f"partner fees' service element, cohort {month}",
                    drill,
                ),
            )
        lines.extend(rows)
    # Returns after allocation (finance.revenue.returns): the points' share
    # of the returned part comes off the contract liability, back to sales.
    for cohort, amount in await period_reversals(connection, program.id, period):
        month = cohort.strftime("%Y-%m")
        lines.extend(
            deferral.pair(
                liability,
                gl.for_role(RevenueRole.SALES_REVENUE),
                amount,
                f"points' share of returned sales, cohort {month}",
                f"revenue_return_reversals period={label} cohort={month}",
            )
        )
    recognition = _Journal(plan, REVENUE, "recognition", program.currency)
    for cohort, element, amount in await connection.fetch(_RECOGNITIONS, program.id, period):
        month = cohort.strftime("%Y-%m")
        drill = f"revenue_recognitions period={label} cohort={month} element={element}"
        if element == "points":
            rows = recognition.pair(
                liability,
                gl.for_role(RevenueRole.LOYALTY_REVENUE),
                amount,
                f"points redeemed, cohort {month}",
                drill,
            )
        else:
            rows = recognition.pair(
                deferred_service,
                gl.for_role(RevenueRole.SERVICE_REVENUE),
                amount,
                f"service element, cohort {month}",
                drill,
            )
        lines.extend(rows)
    return lines


async def _money_lines(connection: Connection, plan: JournalPlan) -> AsyncIterator[Row]:
    """The money journals' lines row by row (the reference of the export's SQL)."""
    zone = ZoneInfo(plan.program.time_zone)
    gl = plan.gl
    for money, currency in plan.money_ledgers:
        source = f"money_ledger:{currency}"
        journal: _Journal | None = None
        code_now = -1
        accounts: dict[tuple[int, int], str] = {}
        async for transfer_id, code, debit_code, credit_code, amount, at in period_transfers(
            connection, ledger=money.id, start=plan.start, end=plan.end
        ):
            if code != code_now or journal is None:
                code_now = code
                journal = _Journal(plan, source, movement_name(code), currency)
                name = movement_name(code)
            for account_code in (debit_code, credit_code):
                if (code, account_code) not in accounts:
                    accounts[(code, account_code)] = gl.for_account(account_code, code)
            memo = f"{name} {at.astimezone(zone).date().isoformat()}"
            ids = str(transfer_id)
            yield journal.line(accounts[(code, debit_code)], DEBIT, amount, memo, ids, None)
            yield journal.line(accounts[(code, credit_code)], CREDIT, amount, memo, ids, None)


async def journal_lines(
    connection: Connection, program: JournalProgram, period: date
) -> AsyncIterator[Row]:
    """The period's lines in ``SCHEMA``'s order of columns, built row by row
    in Python. Call inside a transaction (a repeatable read one gives one
    snapshot)."""
    plan = await plan_journal(connection, program, period)
    for row in await revenue_lines(connection, plan):
        yield row
    async for row in _money_lines(connection, plan):
        yield row


async def _line_template(
    connection: Connection, plan: JournalPlan, money: NamedLedger, currency: str
) -> JournalLineTemplate:
    """The constant columns of a money ledger's lines, the journal of every
    transfer code it may hold (the registry's and those its daily totals
    name around the period) and the GL account of every code and account
    code pair."""
    codes = sorted(
        {int(code) for code in TransferCode}
        | set(await transfer_codes_around(connection, money.id, plan.start.date(), plan.last_day))
    )
    source = f"money_ledger:{currency}"
    account_codes = await ledger_account_codes(connection, money.id)
    functional = plan.functional[currency]
    return JournalLineTemplate(
        accounting_date=plan.last_day,
        period=plan.label,
        source=source,
        currency=currency,
        functional_currency=functional.currency,
        functional_factor=functional.factor,
        exchange_rate=functional.rate,
        exchange_rate_date=functional.rate_date,
        time_zone=plan.program.time_zone,
        journals=[
            (
                code,
                movement_name(code),
                journal_id(plan.program.id, plan.label, source, movement_name(code)),
            )
            for code in codes
        ],
        gl_accounts=[
            (code, account_code, plan.gl.for_account(account_code, code))
            for code in codes
            for account_code in account_codes
        ],
    )


async def _money_csv(connection: Connection, plan: JournalPlan) -> AsyncGenerator[bytes, None]:
    for money, currency in plan.money_ledgers:
        template = await _line_template(connection, plan, money, currency)
        pieces = period_lines_csv(
            connection, ledger=money.id, start=plan.start, end=plan.end, template=template
        )
        # Closed at once when the export stops early: its COPY holds the connection.
        async with contextlib.aclosing(pieces):
            async for piece in pieces:
                yield piece


async def export_journal(
    connection: Connection, program: JournalProgram, period: date, export_format: ExportFormat
) -> AsyncGenerator[bytes, None]:
    """The period's journal as CSV or Parquet bytes, streamed, in one
    repeatable-read snapshot on ``connection`` (held until the last chunk).
    What can refuse the export (a missing exchange rate) does so before the
    first chunk."""
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        plan = await plan_journal(connection, program, period)
        revenue = await revenue_lines(connection, plan)
        if export_format is ExportFormat.CSV:
            yield csv_lines(SCHEMA, revenue, header=True)
            async with contextlib.aclosing(_money_csv(connection, plan)) as pieces:
                async for piece in pieces:
                    yield piece
            return

        async def tables() -> AsyncGenerator[pa.Table, None]:
            yield rows_table(SCHEMA, revenue)
            async with contextlib.aclosing(_money_csv(connection, plan)) as pieces:
                async for table in csv_tables(SCHEMA, pieces):
                    yield table

        async with (
            contextlib.aclosing(tables()) as parts,
            contextlib.aclosing(parquet_from_tables(SCHEMA, parts)) as chunks,
        ):
            async for chunk in chunks:
                yield chunk
