"""Finance counts in one zone, the ledger's accounting days
(``ledgers.time_zone``): periods, their close, liability dates, the
roll-forward and revenue periods. A later change of the program's
``time_zone`` does not move the books' days: a month closed is still the
days its reports covered, and the ledger's boundary is at its end there."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from finance.journal import JournalProgram
from finance.journal_plan import plan_journal
from finance.liability import liability
from finance.periods import close_period, list_periods
from finance.report_dates import parse_month
from finance.revenue.runs import recognise_period
from finance.rollforward import roll_forward
from ledger import Ledger
from rewards.connections import session_connection
from rewards.program_settings import SettingsChange, change_settings
from tests.conftest import NewProgram
from tests.finance.liability_helpers import PRINCIPAL, open_book, post
from tests.finance.revenue_helpers import Cohorts

LEDGER_ZONE = "Africa/Johannesburg"  # UTC+2: months start at 22:00 UTC the day before
NEW_ZONE = "America/New_York"  # UTC-5 in winter: they would start at 05:00 UTC
#: 31 January 23:00 UTC: 1 February in Johannesburg, still 31 January in New York.
LATE = datetime(2025, 1, 31, 23, tzinfo=UTC)
NOW = datetime(2025, 2, 1, 1, tzinfo=UTC)  # January over in Johannesburg, not in New York


async def test_a_program_zone_change_leaves_the_books_on_the_ledgers_days(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(
        time_zone=LEDGER_ZONE, started_at=datetime(2024, 12, 31, 22, tzinfo=UTC)
    )
    book = await open_book(session, ledger, program, ("ann",))
    await post(
        ledger, program, program.issuance_account_id, book.wallet("ann"), 100,
        TransferCode.PURCHASE_EARN, datetime(2025, 1, 10, tzinfo=UTC),
    )  # fmt: skip
    await change_settings(session, program, SettingsChange(time_zone=NEW_ZONE), principal=PRINCIPAL)
    await session.commit()
    assert program.time_zone == NEW_ZONE

    listed = await list_periods(session, program, NOW)
    assert listed.time_zone == LEDGER_ZONE
    january = listed.periods[0]
    assert (january.month, january.starts_at, january.ends_at, january.ended) == (
        "2025-01",
        datetime(2024, 12, 31, 22, tzinfo=UTC),
        datetime(2025, 1, 31, 22, tzinfo=UTC),
        True,
    )
    assert listed.next_to_close == "2025-01"

    closing = await close_period(session, program, "2025-01", NOW, principal=PRINCIPAL)
    await session.commit()
    assert closing.closed_through == datetime(2025, 1, 31, 21, 59, 59, 999999, tzinfo=UTC)
    # After the close, a movement of the ledger's 1 February still posts:
    # the close ended where the ledger's January ends.
    await post(
        ledger, program, program.issuance_account_id, book.wallet("ann"), 7,
        TransferCode.PURCHASE_EARN, LATE,
    )  # fmt: skip

    # The reports count the same days: January's liability without it, February's
    # roll-forward with it.
    owed = await liability(session, program, date(2025, 1, 31), principal=PRINCIPAL)
    assert (owed.time_zone, owed.points) == (LEDGER_ZONE, 100)
    february = await roll_forward(
        session, program, parse_month("period", "2025-02"), principal=PRINCIPAL
    )
    assert (february.opening, february.closing) == (100, 107)

    # January is over and closed on the ledger's days: its final run goes.
    run = await recognise_period(
        session, program, date(2025, 1, 1), NOW, principal=PRINCIPAL, development=Cohorts().read
    )
    assert (run.period, run.replayed, run.preview) == ("2025-01", False, False)


async def test_the_journal_counts_a_period_in_the_ledgers_zone(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(
        time_zone=LEDGER_ZONE, started_at=datetime(2024, 12, 31, 22, tzinfo=UTC)
    )
    await change_settings(session, program, SettingsChange(time_zone=NEW_ZONE), principal=PRINCIPAL)
    await session.commit()
    facts = JournalProgram(program.id, program.slug, program.currency, program.time_zone)
    plan = await plan_journal(await session_connection(session), facts, date(2025, 1, 1))
    assert (plan.start, plan.end, plan.program.time_zone) == (
        datetime(2024, 12, 31, 22, tzinfo=UTC),
        datetime(2025, 1, 31, 22, tzinfo=UTC),
        LEDGER_ZONE,
    )
