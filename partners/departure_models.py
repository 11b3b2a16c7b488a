"""The table of a partner leaving the coalition (migration 0028): its last
issuing day, its last accepting day, its valuation date, and, once issued,
its final statement with the figures that statement valued.

A departure belongs to a contract holder (the firm whose accounts move),
one per firm. Its days are dates of the program's calendar; the instants
they end at (the next local midnight, ``core.calendar``) are stored beside
them, taken when the departure is recorded, so that the issuance path
compares instants and counts no calendar.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import BigInteger, Date, DateTime, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race


class PartnerDeparture(UUIDv7AuditBase):
    __tablename__ = "partner_departures"
    __table_args__ = (UniqueConstraint("partner_id"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: The contract holder that leaves (its member companies acting under
    #: its contract leave with it).
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    last_issuing_day: Mapped[date] = mapped_column(Date)
    last_accepting_day: Mapped[date] = mapped_column(Date)
    valuation_date: Mapped[date] = mapped_column(Date)
    #: The end of each day (its next local midnight) as an instant.
    issuing_ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    accepting_ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The valuation instant: the end of the valuation date, where the
    #: final statement's period ends and its figures are taken.
    valuation_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str | None] = mapped_column(String(500))
    #: Who recorded the departure as it stands, and when.
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    final_statement_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("partner_statements.id")
    )
    # What the final statement valued, taken from the ledger at the
    # valuation instant and kept with it (none before it is issued): its
    # recomputation and the report read them back.
    points_issued: Mapped[int | None] = mapped_column(BigInteger)
    points_captured: Mapped[int | None] = mapped_column(BigInteger)
    points_refunded: Mapped[int | None] = mapped_column(BigInteger)
    program_points_issued: Mapped[int | None] = mapped_column(BigInteger)
    program_points_outstanding: Mapped[int | None] = mapped_column(BigInteger)


#: Looked up before it is written, under the partner's row lock.
CONSTRAINTS = (race("uq_partner_departures_partner_id", "partner departure"),)
