"""Tables of settlement (migration 0025): partners' statements and their
lines, payments received against them and payouts made.

A statement is stored when issued, lines and all: it never changes after
(only its payment status moves). What it read is stored with it (the
ledger timestamps of its window, its period), so that recomputing it from
the ledger reads exactly the same transfers.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race


class StatementKind(enum.StrEnum):
    REGULAR = "regular"
    #: A leaving partner's last statement (its share of the liability).
    FINAL = "final"


class Direction(enum.StrEnum):
    PARTNER_OWES = "partner_owes"
    PROGRAM_OWES = "program_owes"
    SETTLED = "settled"


class PaymentStatus(enum.StrEnum):
    #: Nothing to collect (the program owes, or nothing is due).
    NONE = "none"
    DUE = "due"
    PAID = "paid"
    FAILED = "failed"


class LineKind(enum.StrEnum):
    ISSUED = "points_issued"
    REDEEMED = "points_redeemed"
    REFUNDED = "points_refunded"
    DEFERRED = "deferred_issue_price"
    SHORTFALL = "minimum_commitment_shortfall"
    PREPAID_CREDIT = "prepaid_credit_drawn"
    LIABILITY = "liability_transferred"


class PartnerStatement(UUIDv7AuditBase):
    __tablename__ = "partner_statements"
    __table_args__ = (
        UniqueConstraint("partner_id", "number"),
        UniqueConstraint("partner_id", "kind", "period_start", name="uq_partner_statements_period"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: The contract holder whose accounts the statement reads.
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))
    period_label: Mapped[str] = mapped_column(String(16))
    period_unit: Mapped[str] = mapped_column(String(8))
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    currency: Mapped[str] = mapped_column(String(3))
    contract_version: Mapped[int] = mapped_column(Integer)
    #: Ledger timestamps read: (scan_from, cutoff]; of those up to
    #: settled_up_to (the previous cutoff) only ones of its own period.
    scan_from: Mapped[int] = mapped_column(BigInteger)
    settled_up_to: Mapped[int] = mapped_column(BigInteger)
    cutoff: Mapped[int] = mapped_column(BigInteger)
    #: The first timestamp it read of a later period (the next reads from it).
    carry_from: Mapped[int | None] = mapped_column(BigInteger)
    #: Issued points whose deferred price is not billed yet, after it.
    deferred_open_points: Mapped[int] = mapped_column(BigInteger)
    #: Prepaid credit drawn by it and the statements before it.
    prepaid_drawn_minor: Mapped[int] = mapped_column(BigInteger)
    billed_minor: Mapped[int] = mapped_column(BigInteger)
    reimbursed_minor: Mapped[int] = mapped_column(BigInteger)
    #: The sum of the lines: > 0 the partner owes, < 0 the program owes.
    total_minor: Mapped[int] = mapped_column(BigInteger)
    direction: Mapped[str] = mapped_column(String(16))
    payment_status: Mapped[str] = mapped_column(String(10))
    paid_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    money_ledger_id: Mapped[int] = mapped_column(Integer)
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PartnerStatementLine(UUIDv7AuditBase):
    __tablename__ = "partner_statement_lines"
    __table_args__ = (UniqueConstraint("statement_id", "line"),)

    statement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partner_statements.id"))
    line: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    #: The closed period a late transfer belongs to (an adjustment line).
    late_period: Mapped[str | None] = mapped_column(String(16))
    contract_version: Mapped[int | None] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(BigInteger)
    #: Minor units per point applied (price x share, rate...), exact.
    rate: Mapped[Decimal | None] = mapped_column(Numeric(24, 12))
    #: Rounded once, half-even: > 0 the partner owes, < 0 the program owes.
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    tax_code: Mapped[str | None] = mapped_column(String(32))
    # Where the line's transfers are (its drill-down); none for a line
    # derived from others (a shortfall, prepaid credit).
    account_id: Mapped[uuid.UUID | None]
    debit: Mapped[bool | None] = mapped_column(Boolean)
    code: Mapped[int | None] = mapped_column(Integer)
    business_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    business_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    transfers: Mapped[int] = mapped_column(BigInteger, default=0)


class PartnerPayout(UUIDv7AuditBase):
    """Money the program paid a partner, under the payment's reference."""

    __tablename__ = "partner_payouts"
    __table_args__ = (UniqueConstraint("partner_id", "reference"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    reference: Mapped[str] = mapped_column(String(200))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    paid_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    transfer_id: Mapped[uuid.UUID]


class PartnerStatementPayment(UUIDv7AuditBase):
    """A payment of a statement the partner owes: a bank transfer recorded
    by an operator, or a Stripe PaymentIntent, by its reference."""

    __tablename__ = "partner_statement_payments"
    __table_args__ = (UniqueConstraint("statement_id", "reference"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    statement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partner_statements.id"))
    reference: Mapped[str] = mapped_column(String(200))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10))
    transfer_id: Mapped[uuid.UUID | None]


#: Each key is looked up before it is written, under the partner's row lock:
#: a violation is a lost race.
CONSTRAINTS = (
    race("uq_partner_statements_partner_id", "statement number"),
    race("uq_partner_statements_period", "statement period"),
    race("uq_partner_statement_lines_statement_id", "statement line"),
    race("uq_partner_payouts_partner_id", "payout reference"),
    race("uq_partner_statement_payments_statement_id", "statement payment reference"),
)
