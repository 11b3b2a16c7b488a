"""The operator's exchange rates (migration 0049): per program, currency and
effective date, the rate of one unit of the currency in the program's
(functional) currency. Rows are immutable (a trigger refuses changes): a
later row supersedes an earlier one from its own date."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import Date, ForeignKey, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import taken

#: Twelve digits either side of the point: 1 JPY in KWD and 1 KWD in VND fit.
RATE = Numeric(24, 12)
RATE_INTEGER_DIGITS = 12
RATE_FRACTION_DIGITS = 12


class ExchangeRateRecord(UUIDv7AuditBase):
    __tablename__ = "finance_exchange_rates"
    __table_args__ = (UniqueConstraint("program_id", "currency", "effective_on"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: ISO 4217 code of the currency the rate converts from.
    currency: Mapped[str] = mapped_column(String(3))
    #: Functional currency units for one unit of ``currency``.
    rate: Mapped[Decimal] = mapped_column(RATE)
    #: In force from this day (the program's calendar) until a later row's.
    effective_on: Mapped[date] = mapped_column(Date)
    #: The operator (key) who recorded it.
    recorded_by: Mapped[str] = mapped_column(String(200))


CONSTRAINTS = (
    taken(
        "uq_finance_exchange_rates_program_id",
        "effective_on",
        "the program has a rate for this currency from this date already"
        " (rates are never changed: add one from a later date)",
    ),
)
