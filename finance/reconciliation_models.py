"""Tables of reconciliation (migration 0042): each run and every difference
it found. A difference is stored as found and never changed: a later run
that no longer finds it says so by not listing it."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import Date, DateTime, ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

#: Wide enough for a sum of bigints and the difference of two of them.
AMOUNT = Numeric(21, 0)


class ReconciliationRun(UUIDv7AuditBase):
    __tablename__ = "reconciliation_runs"
    __table_args__ = (Index("ix_reconciliation_runs_program_id", "program_id", "id"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: Who ran it: an operator's key, or ``system:reconcile-ledgers``.
    actor: Mapped[str] = mapped_column(String(200))
    #: The day a scheduled run is for (one a day); none for one on demand.
    scheduled_for: Mapped[date | None] = mapped_column(Date)
    #: The accounting days whose daily aggregates it compared with the transfers.
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)
    #: The ledgers it read: the program's points ledger and its money ledgers.
    ledgers: Mapped[list[int]] = mapped_column(ARRAY(Integer))
    #: Check -> {"checked": subjects compared, "differences": found}.
    checks: Mapped[dict[str, Any]] = mapped_column(JSONB)
    differences: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReconciliationDifference(UUIDv7AuditBase):
    __tablename__ = "reconciliation_differences"
    __table_args__ = (Index("ix_reconciliation_differences_run_id", "run_id", "id"),)

    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("reconciliation_runs.id"))
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    check: Mapped[str] = mapped_column(String(32))
    #: What was compared: an account, a statement, a payment, a lot account...
    subject: Mapped[str] = mapped_column(String(200))
    #: Which figure of it: a balance column, a statement's total...
    measure: Mapped[str] = mapped_column(String(64))
    #: The figure derived from the source of truth (the transfers).
    expected: Mapped[Decimal] = mapped_column(AMOUNT)
    #: The figure kept beside it, under check.
    found: Mapped[Decimal] = mapped_column(AMOUNT)
    #: found - expected.
    difference: Mapped[Decimal] = mapped_column(AMOUNT)
    #: Where to look: the ids behind both figures and the query listing the rest.
    drill_down: Mapped[dict[str, Any]] = mapped_column(JSONB)
