"""(To add as tests/finance/test_revenue_returns_journal.py once
journal_return_reversals.patch is applied.) A period's return reversals in
its journal: per cohort, contract liability debited and sales revenue
credited in the revenue deferral journal; every journal balances."""

from __future__ import annotations

import csv
import io

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from core.exports import ExportFormat
from core.models import Program
from finance.journal import JournalProgram, export_journal
from tests.finance.revenue_helpers import month
from tests.finance.test_revenue_returns import (
    test_a_return_after_allocation_reverses_its_points_share as returned_in_february,
)
from tests.finance.test_revenue_runs import program as program


async def test_the_reversals_are_deferral_lines_of_the_journal(
    session: AsyncSession, program: Program, pool: asyncpg.Pool
) -> None:
    await returned_in_february(session, program)
    facts = JournalProgram(program.id, program.slug, program.currency, program.time_zone)
    async with pool.acquire() as connection:
        data = b"".join(
            [c async for c in export_journal(connection, facts, month(2), ExportFormat.CSV)]
        )
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    drill = "revenue_return_reversals period=2025-02 cohort=2025-01"
    assert [
        (r["gl_account"][:4], r["side"], r["amount_minor"], r["drill_down"])
        for r in rows
        if r["category"] == "deferral"
    ] == [("2400", "debit", "511", drill), ("4000", "credit", "511", drill)]
    for journal in {r["journal_id"] for r in rows}:
        lines = [r for r in rows if r["journal_id"] == journal]
        debits = sum(int(r["amount_minor"]) for r in lines if r["side"] == "debit")
        assert debits == sum(int(r["amount_minor"]) for r in lines if r["side"] == "credit")
