"""Tables of finance (migration 0038 onwards).

``finance_periods``: one row per calendar month of a program (in its time
zone) that was ever closed, with who closed it and when, and who reopened
it, when and why. The lock itself is the ledger's (``ledgers.closed_through``,
``ledger.periods``): closing a month moves it to the month's last instant,
in the same transaction as the row.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import Date, DateTime, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race


class PeriodStatus(enum.StrEnum):
    CLOSED = "closed"
    #: Closed once, then reopened.
    OPEN = "open"


class FinancePeriodRecord(UUIDv7AuditBase):
    __tablename__ = "finance_periods"
    __table_args__ = (UniqueConstraint("program_id", "month"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: The month's first day, as a date of the program's time zone.
    month: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(8))
    #: The last close (a reopened month may close again).
    closed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_by: Mapped[str] = mapped_column(String(200))
    reopened_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reopened_by: Mapped[str | None] = mapped_column(String(200))
    reopen_reason: Mapped[str | None] = mapped_column(String(500))


#: Closing looks the month up first, under the ledger's lock: a violation is
#: a lost race (two closes at once), and a retry finds the month closed.
CONSTRAINTS = (race("uq_finance_periods_program_id", "period close"),)
