"""Tables of the operations on lots: cancelled spends, reinstatements of
expired points, and programs' sunsets. The points themselves move in the
ledger; these rows say what was done, by which transfers, with what totals."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy import text as sql
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race


class SpendKind(enum.StrEnum):
    REDEMPTION = "redemption"
    POINTS_PAYMENT = "points_payment"


class SpendCancellation(UUIDv7AuditBase):
    """A completed spend undone: the credit that restored its points."""

    __tablename__ = "spend_cancellations"
    __table_args__ = (
        UniqueConstraint("program_id", "cancellation_id", name="uq_spend_cancellations_id"),
        UniqueConstraint("kind", "spend_id", name="uq_spend_cancellations_spend"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    #: The operator's id of the cancellation: its idempotency key.
    cancellation_id: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    #: The redemption's or the hold's row.
    spend_id: Mapped[uuid.UUID]
    #: The debit whose consumed lots the cancellation restores.
    spent_transfer_id: Mapped[uuid.UUID]
    transfer_id: Mapped[uuid.UUID]
    points: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(500))


class ReinstatementStatus(enum.StrEnum):
    RUNNING = "running"
    DONE = "done"


class Reinstatement(UUIDv7AuditBase):
    """ "Restore every lot expired since": its parameters and what it restored."""

    __tablename__ = "reinstatements"
    __table_args__ = (
        UniqueConstraint("program_id", "reference", name="uq_reinstatements_reference"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    reference: Mapped[str] = mapped_column(String(200))
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The restored lots' new expiry; None: they never expire.
    lot_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Expiry transfers whose points were restored.
    expiries: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SunsetStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class ProgramSunset(UUIDv7AuditBase):
    """A program's announced end, and the mass expiry that closed it."""

    __tablename__ = "program_sunsets"
    __table_args__ = (
        Index(
            "uq_program_sunsets_standing",
            "program_id",
            unique=True,
            postgresql_where=sql("status <> 'cancelled'"),
        ),
        Index("ix_program_sunsets_due", "sunset_at", postgresql_where=sql("status = 'scheduled'")),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    sunset_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: From then on nothing new is earned; redemptions go on to ``sunset_at``.
    earning_ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    notice_days: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: What the mass expiry took, so far: points and wallets.
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    wallets: Mapped[int] = mapped_column(Integer, default=0)


CONSTRAINTS = (
    # Looked up first, under the member's lock: a violation is a lost race.
    race("uq_spend_cancellations_id", "cancellation id"),
    race("uq_spend_cancellations_spend", "cancellation"),
    race("uq_reinstatements_reference", "reinstatement reference"),
    race("uq_program_sunsets_standing", "sunset"),
)
