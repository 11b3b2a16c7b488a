"""Exchange rates in the journal: lines in another currency than the
program's carry the operator's rate in force on the accounting date (the
period's last day), the functional amount rounded half to even to the
functional currency's minor unit; no rate fails the export with a clear
problem before any byte; the export (SQL, COPY) is the row-by-row
reference line for line; the rates themselves are validated and never
changed."""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import asyncpg
import msgspec
import pyarrow.parquet as pq
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core import calendar
from core.codes import AccountCode, TransferCode, money_account_id
from core.errors import AlreadyExists
from core.exports import ExportFormat
from core.models import Program
from core.principal import system
from finance.exchange_rate_schemas import ExchangeRateBody
from finance.exchange_rates import (
    ExchangeRateMissing,
    FunctionalCurrencyRate,
    RateInClosedPeriod,
    add_exchange_rate,
    conversion_factor,
    functional_minor,
    list_exchange_rates,
)
from finance.journal import SCHEMA, JournalProgram, export_journal, journal_lines
from finance.report_dates import accounting_zone
from finance.revenue.schemas import RevenueSettingsBody
from finance.revenue.settings import store_revenue_settings
from ledger import Ledger, Transfer
from ledger import periods as ledger_periods
from ledger.schemas import BATCH_MAX
from partners.money_ledger import money_ledger, open_money_accounts
from rewards.connections import session_connection
from tests.conftest import NewProgram
from tests.finance.revenue_helpers import at, month

WHO = system("test")


def facts(program: Program) -> JournalProgram:
    return JournalProgram(program.id, program.slug, program.currency, program.time_zone)


async def exported(pool: asyncpg.Pool, program: Program, export_format: ExportFormat) -> bytes:
    async with pool.acquire() as connection:
        return b"".join(
            [
                chunk
                async for chunk in export_journal(
                    connection, facts(program), month(1), export_format
                )
            ]
        )


async def reference(pool: asyncpg.Pool, program: Program) -> list[dict[str, str]]:
    """The row-by-row lines, as CSV gives them back."""
    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
        rows = [row async for row in journal_lines(connection, facts(program), month(1))]
    text = [
        {
            name: ""
            if value is None
            else value.isoformat()
            if isinstance(value, date)
            else str(value)
            for name, value in zip(SCHEMA.names, row, strict=True)
        }
        for row in rows
    ]
    return text


async def rate(session: AsyncSession, program: Program, currency: str, value: str, day: date):  # type: ignore[no-untyped-def]
    added = await add_exchange_rate(
        session,
        program,
        ExchangeRateBody(currency=currency, rate=Decimal(value), effective_on=day),
        principal=WHO,
    )
    await session.commit()
    return added


async def money_moves(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    currency: str,
    amounts: list[int],
) -> list[uuid.UUID]:
    """Settlements of ``amounts`` in ``currency``, dated in January 2025."""
    partner = uuid.uuid4()
    ledger_id = await money_ledger(session, ledger, program, currency)
    await session.commit()
    await open_money_accounts(ledger, program, currency, ledger_id, partner)
    ids = [uuid.uuid4() for _ in amounts]
    transfers = [
        Transfer(
            id=i,
            debit_account_id=money_account_id(
                program.id, currency, AccountCode.PARTNER_RECEIVABLE, partner
            ),
            credit_account_id=money_account_id(
                program.id, currency, AccountCode.PARTNER_REVENUE, None
            ),
            amount=amount,
            ledger=ledger_id,
            code=TransferCode.PARTNER_SETTLEMENT,
            effective_at=at(1, 2) + timedelta(minutes=n),
        )
        for n, (i, amount) in enumerate(zip(ids, amounts, strict=True))
    ]
    for first in range(0, len(transfers), BATCH_MAX):
        outcomes = await ledger.create_transfers(transfers[first : first + BATCH_MAX])
        assert {o.result for o in outcomes} == {"ok"}, outcomes[:3]
    return ids


def test_conversion_rounds_half_to_even_to_the_functional_minor_unit() -> None:
    factor = conversion_factor(Decimal("20.5"), "EUR", "ZAR")
    assert [functional_minor(amount, factor) for amount in (1, 3, 5, 2)] == [20, 62, 102, 41]
    # 1,000 yen (no minor unit) at 0.1234 ZAR: 123.40 ZAR, 12,340 cents.
    assert functional_minor(1_000, conversion_factor(Decimal("0.1234"), "JPY", "ZAR")) == 12_340
    # 1.234 KWD (three decimals) at 59.5 ZAR: 73.423 ZAR -> 7,342 cents.
    assert functional_minor(1_234, conversion_factor(Decimal("59.5"), "KWD", "ZAR")) == 7_342


async def test_a_currency_without_a_rate_fails_the_export_before_any_byte(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await new_program()
    await money_moves(session, ledger, program, "EUR", [100])
    # A rate from after the period's last day is not in force on it.
    await rate(session, program, "EUR", "20", date(2025, 2, 1))
    for export_format in ExportFormat:
        async with pool.acquire() as connection:
            chunks = export_journal(connection, facts(program), month(1), export_format)
            with pytest.raises(ExchangeRateMissing, match="no exchange rate for EUR on 2025-01-31"):
                await anext(chunks)


async def test_lines_in_another_currency_take_the_rate_in_force_on_the_accounting_date(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await new_program()
    await money_moves(session, ledger, program, program.currency, [700])
    await money_moves(session, ledger, program, "EUR", [1, 3, 5, 2])
    await money_moves(session, ledger, program, "JPY", [1_000])
    await rate(session, program, "EUR", "19", date(2024, 12, 1))
    await rate(session, program, "EUR", "20.5", date(2025, 1, 15))  # in force on 2025-01-31
    await rate(session, program, "EUR", "25", date(2025, 2, 1))
    await rate(session, program, "JPY", "0.1234", date(2025, 1, 1))

    text = (await exported(pool, program, ExportFormat.CSV)).decode()
    lines = list(csv.DictReader(io.StringIO(text)))
    euro = [line for line in lines if line["currency"] == "EUR"]
    assert [
        (line["side"], line["amount_minor"], line["functional_amount_minor"]) for line in euro
    ] == [
        ("debit", "1", "20"),
        ("credit", "1", "20"),
        ("debit", "3", "62"),
        ("credit", "3", "62"),
        ("debit", "5", "102"),
        ("credit", "5", "102"),
        ("debit", "2", "41"),
        ("credit", "2", "41"),
    ]
    assert {
        (line["functional_currency"], line["exchange_rate"], line["exchange_rate_date"])
        for line in euro
    } == {("ZAR", "20.5", "2025-01-15")}
    yen = [line for line in lines if line["currency"] == "JPY"]
    assert [(line["functional_amount_minor"], line["exchange_rate"]) for line in yen] == [
        ("12340", "0.1234"),
        ("12340", "0.1234"),
    ]
    own = [line for line in lines if line["currency"] == program.currency]
    assert {(line["exchange_rate"], line["exchange_rate_date"]) for line in own} == {
        ("1", "2025-01-31")
    }
    assert [line["functional_amount_minor"] for line in own] == ["700", "700"]

    # Every journal balances in its currency and in the functional one.
    sides: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for line in lines:
        sides[line["journal_id"]][line["side"]] += int(line["amount_minor"])
        sides[line["journal_id"]][f"functional {line['side']}"] += int(
            line["functional_amount_minor"]
        )
    assert len(sides) == 3
    for totals in sides.values():
        assert totals["debit"] == totals["credit"]
        assert totals["functional debit"] == totals["functional credit"]

    # PostgreSQL's lines are the row-by-row reference's, line for line.
    assert lines == await reference(pool, program)
    # Again: the same bytes, CSV and Parquet; Parquet holds the same values.
    assert (await exported(pool, program, ExportFormat.CSV)).decode() == text
    parquet = await exported(pool, program, ExportFormat.PARQUET)
    assert await exported(pool, program, ExportFormat.PARQUET) == parquet
    table = pq.read_table(io.BytesIO(parquet)).to_pylist()
    assert [row["functional_amount_minor"] for row in table] == [
        int(line["functional_amount_minor"]) for line in lines
    ]
    assert [row["exchange_rate_date"] for row in table] == [
        date.fromisoformat(line["exchange_rate_date"]) for line in lines
    ]
    assert {row["drill_down"] for row in table} == {None}


async def test_rates_are_validated_found_again_and_never_changed(
    session: AsyncSession, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await new_program()
    for bad, why in (
        ({"currency": "XXY", "rate": "1", "effective_on": "2025-01-01"}, "ISO 4217"),
        ({"currency": "EUR", "rate": "0", "effective_on": "2025-01-01"}, "above 0"),
        ({"currency": "EUR", "rate": "-2", "effective_on": "2025-01-01"}, "above 0"),
        ({"currency": "EUR", "rate": "1.0000000000001", "effective_on": "2025-01-01"}, "12"),
        ({"currency": "EUR", "rate": "1e12", "effective_on": "2025-01-01"}, "below"),
        ({"currency": "eur", "rate": "1", "effective_on": "2025-01-01"}, "regex"),
    ):
        with pytest.raises(msgspec.ValidationError, match=why):
            msgspec.json.decode(msgspec.json.encode(bad), type=ExchangeRateBody)
    with pytest.raises(FunctionalCurrencyRate):
        await rate(session, program, program.currency, "1", date(2025, 1, 1))
    first = await rate(session, program, "EUR", "20.50", date(2025, 1, 1))
    assert first.created and str(first.view.rate) == "20.5"
    again = await rate(session, program, "EUR", "20.5", date(2025, 1, 1))
    assert (again.created, again.view.id) == (False, first.view.id)
    with pytest.raises(AlreadyExists, match="from 2025-01-01 already"):
        await rate(session, program, "EUR", "21", date(2025, 1, 1))
    await rate(session, program, "USD", "18", date(2025, 1, 1))
    listed = await list_exchange_rates(session, program, limit=1, cursor=None)
    assert [view.currency for view in listed.items] == ["USD"] and listed.next_cursor
    rest = await list_exchange_rates(session, program, limit=5, cursor=listed.next_cursor)
    assert [view.currency for view in rest.items] == ["EUR"] and rest.next_cursor is None
    euro = await list_exchange_rates(session, program, limit=5, cursor=None, currency="EUR")
    assert [str(view.rate) for view in euro.items] == ["20.5"]
    for change in (
        "UPDATE finance_exchange_rates SET rate = 2 WHERE program_id = $1",
        "DELETE FROM finance_exchange_rates WHERE program_id = $1",
    ):
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="never changed"):
            await pool.execute(change, program.id)


async def test_an_export_stopped_early_leaves_its_connection_usable(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    """A client that leaves mid-stream: the COPY still holding the
    connection must end before the snapshot's rollback and the pool's reuse."""
    program = await new_program()
    # 64,000 lines, 14 MB of CSV: more than one Parquet row group, many CSV pieces.
    await money_moves(session, ledger, program, program.currency, [5] * 32_000)
    for export_format, read in ((ExportFormat.CSV, 2), (ExportFormat.PARQUET, 1)):
        async with pool.acquire() as connection:
            chunks = export_journal(connection, facts(program), month(1), export_format)
            taken = [await anext(chunks) for _ in range(read)]
            assert all(taken)
            await chunks.aclose()
            assert not connection.is_in_transaction()
            assert await connection.fetchval("SELECT 1") == 1


async def test_names_with_commas_and_quotes_are_quoted_as_csv_does(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    """PostgreSQL writes the money lines, Python the revenue ones: both quote
    alike, and Parquet reads back the same names."""
    program = await new_program()
    name = 'Points sold, to "partners"'
    await store_revenue_settings(
        session,
        program,
        RevenueSettingsBody(gl_accounts={f"account:{AccountCode.PARTNER_REVENUE}": name}),
        principal=WHO,
    )
    await session.commit()
    await money_moves(session, ledger, program, program.currency, [10, 20])
    text = (await exported(pool, program, ExportFormat.CSV)).decode()
    assert '"Points sold, to ""partners"""' in text
    lines = list(csv.DictReader(io.StringIO(text)))
    assert [line["gl_account"] for line in lines if line["side"] == "credit"] == [name, name]
    assert lines == await reference(pool, program)
    table = pq.read_table(io.BytesIO(await exported(pool, program, ExportFormat.PARQUET)))
    assert table.column("gl_account").to_pylist() == [line["gl_account"] for line in lines]


async def test_a_rate_that_would_change_a_closed_month_is_refused(
    session: AsyncSession, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await new_program()
    await rate(session, program, "EUR", "20", date(2025, 1, 1))
    # January closed (its last instant in the ledger's zone).
    connection = await session_connection(session)
    zone = await accounting_zone(connection, program.ledger_id)
    _, end = calendar.month_bounds(date(2025, 1, 1), zone)
    await ledger_periods.close_through(
        connection, program.ledger_id, end - ledger_periods.RESOLUTION
    )
    await session.commit()
    before = await pool.fetchval(
        "SELECT count(*) FROM finance_exchange_rates WHERE program_id = $1", program.id
    )
    with pytest.raises(RateInClosedPeriod, match="closed through 2025-01-31"):
        await rate(session, program, "EUR", "21", date(2025, 1, 20))
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM finance_exchange_rates WHERE program_id = $1", program.id
        )
        == before
    )
    # From the open period on, and a currency's first rate, are taken.
    assert (await rate(session, program, "EUR", "21", date(2025, 2, 1))).created
    assert (await rate(session, program, "USD", "18", date(2025, 1, 1))).created
