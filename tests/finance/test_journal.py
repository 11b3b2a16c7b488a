"""The journal of a period: the revenue run's deferral and recognition and
the money ledger's movements, every journal balanced, the same bytes on
every export (CSV and Parquet), lines mapped to GL accounts (defaults and
a program's overrides)."""

from __future__ import annotations

import csv
import io
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pyarrow.parquet as pq
from sqlalchemy.ext.asyncio import AsyncSession

from core import calendar
from core.codes import AccountCode, TransferCode, money_account_id
from core.exports import ExportFormat
from core.models import Program
from core.principal import system
from finance.journal import JournalProgram, export_journal, journal_id
from finance.report_dates import accounting_zone
from finance.revenue.runs import recognise_period
from finance.revenue.schemas import RevenueSettingsBody
from finance.revenue.settings import store_revenue_settings
from ledger import Ledger, Transfer
from ledger import periods as ledger_periods
from partners.money_ledger import money_ledger, open_money_accounts
from rewards.connections import session_connection
from tests.conftest import NewProgram
from tests.finance.revenue_helpers import Cohorts, add_member, add_sale, at, month

WHO = system("test")


async def exported(pool: asyncpg.Pool, program: Program, export_format: ExportFormat) -> bytes:
    facts = JournalProgram(program.id, program.slug, program.currency, program.time_zone)
    async with pool.acquire() as connection:
        return b"".join(
            [chunk async for chunk in export_journal(connection, facts, month(1), export_format)]
        )


async def a_period(session: AsyncSession, ledger: Ledger, program: Program) -> uuid.UUID:
    """January 2025: two sales recognised, and a statement's money movements
    (dated in January) on the program's money ledger. Answers a transfer id."""
    member = await add_member(session, program)
    await add_sale(session, program, member, price=10_000, points=1_000, posted_at=at(1))
    await add_sale(session, program, member, price=2_500, points=300, posted_at=at(1, 20))
    await session.commit()
    # A final run needs the period closed (what finance.periods does to the ledger).
    connection = await session_connection(session)
    _, end = calendar.month_bounds(month(1), await accounting_zone(connection, program.ledger_id))
    await ledger_periods.close_through(
        connection, program.ledger_id, end - ledger_periods.RESOLUTION
    )
    await session.commit()
    await recognise_period(
        session,
        program,
        month(1),
        datetime(2026, 1, 1, tzinfo=UTC),
        principal=WHO,
        development=Cohorts().earn(1, 1_300).redeem(1, 1, 260).read,
    )
    await session.commit()
    partner = uuid.uuid4()
    ledger_id = await money_ledger(session, ledger, program, program.currency)
    await session.commit()
    await open_money_accounts(ledger, program, program.currency, ledger_id, partner)

    def account(role: AccountCode, of_partner: bool = True) -> uuid.UUID:
        return money_account_id(program.id, program.currency, role, partner if of_partner else None)

    billed = uuid.uuid4()
    moves = [
        (
            billed,
            TransferCode.PARTNER_SETTLEMENT,
            account(AccountCode.PARTNER_RECEIVABLE),
            account(AccountCode.PARTNER_REVENUE, False),
            4_200,
            at(1, 3),
        ),
        (
            uuid.uuid4(),
            TransferCode.PARTNER_REIMBURSEMENT,
            account(AccountCode.PARTNER_REDEMPTION_COST, False),
            account(AccountCode.PARTNER_PAYABLE),
            1_700,
            at(1, 4),
        ),
        (
            uuid.uuid4(),
            TransferCode.PARTNER_PAYMENT,
            account(AccountCode.PARTNER_CASH, False),
            account(AccountCode.PARTNER_RECEIVABLE),
            4_200,
            at(1, 28),
        ),
        # February's: not in January's journal.
        (
            uuid.uuid4(),
            TransferCode.PARTNER_PAYOUT,
            account(AccountCode.PARTNER_PAYABLE),
            account(AccountCode.PARTNER_CASH, False),
            1_700,
            at(2, 2),
        ),
    ]
    outcomes = await ledger.create_transfers(
        [
            Transfer(
                id=i,
                debit_account_id=d,
                credit_account_id=c,
                amount=a,
                ledger=ledger_id,
                code=code,
                effective_at=when,
            )
            for i, code, d, c, a, when in moves
        ]
    )
    assert [o.result for o in outcomes] == ["ok"] * 4, outcomes
    return billed


async def test_journals_balance_and_say_what_is_behind_each_line(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await new_program()
    billed = await a_period(session, ledger, program)

    lines = list(
        csv.DictReader(io.StringIO((await exported(pool, program, ExportFormat.CSV)).decode()))
    )

    totals: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for line in lines:
        totals[(line["source"], line["category"])][line["side"]] += int(line["amount_minor"])
        assert line["exchange_rate"] == "1" and line["exchange_rate_date"] == "2025-01-31"
        assert line["functional_amount_minor"] == line["amount_minor"]
        assert line["accounting_date"] == "2025-01-31" and line["period"] == "2025-01"
    assert {key: side["debit"] - side["credit"] for key, side in totals.items()} == {
        ("revenue", "deferral"): 0,
        ("revenue", "recognition"): 0,
        (f"money_ledger:{program.currency}", "partner_settlement"): 0,
        (f"money_ledger:{program.currency}", "partner_reimbursement"): 0,
        (f"money_ledger:{program.currency}", "partner_payment"): 0,
    }
    # Deferral: 10,000 x 800 / 10,800 = 740.74 -> 741 and 2,500 x 240 / 2,740 = 218.98 -> 219
    # (the default breakage 0.2); recognised: 960 x 260 / 1,040 = 240.
    deferral = [line for line in lines if line["category"] == "deferral"]
    assert [(line["gl_account"], line["side"], line["amount_minor"]) for line in deferral] == [
        ("4000 Sales revenue", "debit", "960"),
        ("2400 Contract liability: loyalty points", "credit", "960"),
    ]
    assert (
        deferral[0]["drill_down"] == "revenue_allocations period=2025-01 cohort=2025-01 source=sale"
    )
    recognition = [line for line in lines if line["category"] == "recognition"]
    assert [(line["gl_account"], line["side"], line["amount_minor"]) for line in recognition] == [
        ("2400 Contract liability: loyalty points", "debit", "240"),
        ("4100 Loyalty revenue: points redeemed", "credit", "240"),
    ]
    settled = [line for line in lines if line["category"] == "partner_settlement"]
    assert [(line["gl_account"], line["side"], line["transfer_ids"]) for line in settled] == [
        ("1200 Partner receivables", "debit", str(billed)),
        ("4200 Points sold to partners", "credit", str(billed)),
    ]
    assert settled[0]["journal_id"] == str(
        journal_id(program.id, "2025-01", f"money_ledger:{program.currency}", "partner_settlement")
    )
    assert [line["line"] for line in settled] == ["1", "2"]
    assert not [line for line in lines if line["category"] == "partner_payout"]


async def test_a_period_exports_byte_for_byte_again(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await new_program()
    await a_period(session, ledger, program)
    for export_format in ExportFormat:
        first = await exported(pool, program, export_format)
        assert await exported(pool, program, export_format) == first
    table = pq.read_table(io.BytesIO(await exported(pool, program, ExportFormat.PARQUET)))
    assert (
        table.num_rows
        == len((await exported(pool, program, ExportFormat.CSV)).decode().splitlines()) - 1
    )
    sides = table.group_by("side").aggregate([("amount_minor", "sum")]).to_pydict()
    assert len(set(sides["amount_minor_sum"])) == 1


async def test_a_programs_gl_overrides_name_its_accounts(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await new_program()
    await store_revenue_settings(
        session,
        program,
        RevenueSettingsBody(
            default_breakage_rate=Decimal("0.2"),
            gl_accounts={
                "revenue:contract_liability": "23000 Deferred loyalty",
                f"account:{AccountCode.PARTNER_RECEIVABLE}": "11000 Debtors",
            },
        ),
        principal=WHO,
    )
    await session.commit()
    await a_period(session, ledger, program)
    lines = list(
        csv.DictReader(io.StringIO((await exported(pool, program, ExportFormat.CSV)).decode()))
    )
    accounts = {line["gl_account"] for line in lines}
    assert {"23000 Deferred loyalty", "11000 Debtors"} <= accounts
    assert not {"2400 Contract liability: loyalty points", "1200 Partner receivables"} & accounts
