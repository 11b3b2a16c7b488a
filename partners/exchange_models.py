"""Tables of the exchange of points between programs (migration 0026): the
agreement of two programs, the versions of its rates, and each member's
conversions.

An agreement is one per pair of programs, whichever proposed it: the pair
is stored in id order (``program_a_id < program_b_id``), so the unique key
holds whoever proposes. Points live in the ledger, never here: a conversion
row records what was asked, at which rate, and which two transfers carried
it.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    desc,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race, taken


class AgreementStatus(enum.StrEnum):
    #: Proposed by one program; no conversion until the other accepts a rate.
    PROPOSED = "proposed"
    #: A rate version was accepted by the other program.
    ACTIVE = "active"


class RateStatus(enum.StrEnum):
    PROPOSED = "proposed"
    ACCEPTED = "accepted"


class ExchangeAgreement(UUIDv7AuditBase):
    __tablename__ = "exchange_agreements"
    __table_args__ = (
        UniqueConstraint("program_a_id", "program_b_id", name="uq_exchange_agreements_pair"),
        Index("ix_exchange_agreements_program_b_id", "program_b_id"),
    )

    #: The pair, in id order (the smaller id is ``a``).
    program_a_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    program_b_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: One of the two: the program whose operator proposed the agreement.
    proposed_by_program_id: Mapped[uuid.UUID]
    status: Mapped[str] = mapped_column(String(16), default=AgreementStatus.PROPOSED)
    #: When the first rate version was accepted.
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def other(self, program_id: uuid.UUID) -> uuid.UUID:
        """The other program of the pair."""
        return self.program_b_id if program_id == self.program_a_id else self.program_a_id


class ExchangeRateVersion(UUIDv7AuditBase):
    """The terms of an agreement from a time on: per direction (keyed by the
    source program's id in ``terms``) the rate, the bounds of one
    conversion and the daily cap per member. Proposed by one program,
    accepted by the other; in force from ``in_force_from``."""

    __tablename__ = "exchange_rate_versions"
    __table_args__ = (
        UniqueConstraint("agreement_id", "version", name="uq_exchange_rate_versions_agreement_id"),
        Index(
            "ix_exchange_rate_versions_in_force",
            "agreement_id",
            desc("in_force_from"),
            postgresql_where=text("status = 'accepted'"),
        ),
    )

    agreement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("exchange_agreements.id"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=RateStatus.PROPOSED)
    proposed_by_program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: The actor who proposed it (``core.principal.Principal.actor``).
    proposed_by: Mapped[str] = mapped_column(String(200))
    #: The start the proposal asked for; none: as soon as it is accepted.
    effective_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: When it is in force: the asked start, never before its acceptance.
    in_force_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    accepted_by: Mapped[str | None] = mapped_column(String(200))
    #: ``{"<source program id>": {give, receive, min_points, max_points, daily_cap}}``.
    terms: Mapped[dict[str, Any]] = mapped_column(JSONB)


class Exchange(UUIDv7AuditBase):
    """One member's conversion of points of ``program_id`` into points of
    ``to_program_id``: two linked transfers, one on each ledger."""

    __tablename__ = "exchanges"
    __table_args__ = (
        UniqueConstraint("member_id", "idempotency_key", name="uq_exchanges_key"),
        Index("ix_exchanges_member_day", "member_id", "to_program_id", "occurred_at"),
        Index("ix_exchanges_member_id", "member_id", "id"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    to_program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    to_member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    agreement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("exchange_agreements.id"))
    rate_version: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    #: Points of ``program_id`` the member gave.
    points: Mapped[int] = mapped_column(BigInteger)
    #: Points of ``to_program_id`` the member received: ``points * receive
    #: // give``, rounded down.
    received_points: Mapped[int] = mapped_column(BigInteger)
    give: Mapped[int] = mapped_column(BigInteger)
    receive: Mapped[int] = mapped_column(BigInteger)
    out_transfer_id: Mapped[uuid.UUID]
    in_transfer_id: Mapped[uuid.UUID]
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


CONSTRAINTS = (
    taken(
        "uq_exchange_agreements_pair",
        "counterparty",
        "the two programs already have an exchange agreement",
    ),
    # Numbered from the last under the agreement's lock; keys looked up
    # under the member's lock: a violation is a lost race.
    race("uq_exchange_rate_versions_agreement_id", "exchange rate version number"),
    race("uq_exchanges_key", "exchange idempotency key"),
)
