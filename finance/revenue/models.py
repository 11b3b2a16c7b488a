"""Tables of revenue deferral (migration 0041): a program's revenue
settings, the allocation of each sale (and each partner's issuance fee,
converted to the program's currency when billed in another: 0051),
the breakage estimates of each period and cohort, and the revenue
recognised per period, cohort and element.

Allocations are immutable: the table refuses updates and deletes (a
trigger), so a later estimate can never change a split already made.
Estimates and recognitions are written once per period by its run
(``revenue_periods``) and read after; they are never rewritten.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race

#: Rates, to ``finance.revenue.rounding.RATE_PLACES`` places.
RATE = Numeric(11, 10)


class AllocationSource(enum.StrEnum):
    #: A member's purchase (rewards' ``purchases``).
    SALE = "sale"
    #: An issuance fee billed to a partner (a statement line).
    PARTNER_FEE = "partner_fee"


class Element(enum.StrEnum):
    #: The points' share: recognised as the cohort's points are redeemed.
    POINTS = "points"
    #: A partner fee's service element: recognised straight-line.
    SERVICE = "service"


class RevenueSettings(UUIDv7AuditBase):
    __tablename__ = "revenue_settings"
    __table_args__ = (UniqueConstraint("program_id", name="uq_revenue_settings_program_id"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    rounding_policy: Mapped[str] = mapped_column(String(5))
    rounding_mode: Mapped[str] = mapped_column(String(9))
    ratio_places: Mapped[int] = mapped_column(Integer)
    default_breakage_rate: Mapped[Decimal] = mapped_column(RATE)
    development_months: Mapped[int] = mapped_column(Integer)
    service_life_months: Mapped[int] = mapped_column(Integer)
    #: Overrides of the default GL accounts (``finance.gl_accounts``).
    gl_accounts: Mapped[dict[str, Any]] = mapped_column(JSONB)


class RevenuePeriod(UUIDv7AuditBase):
    """A period's recognition run: once per program and month."""

    __tablename__ = "revenue_periods"
    __table_args__ = (UniqueConstraint("program_id", "period", name="uq_revenue_periods_period"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: The month's first day.
    period: Mapped[date] = mapped_column(Date)
    recognised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    currency: Mapped[str] = mapped_column(String(3))
    allocations: Mapped[int] = mapped_column(Integer)
    estimates: Mapped[int] = mapped_column(Integer)
    #: New contract liability of the period's allocations (points' shares
    #: and partner fees' redemption elements).
    deferred_minor: Mapped[int] = mapped_column(BigInteger)
    #: New deferred service revenue (partner fees' service elements).
    service_deferred_minor: Mapped[int] = mapped_column(BigInteger)
    recognised_minor: Mapped[int] = mapped_column(BigInteger)
    service_recognised_minor: Mapped[int] = mapped_column(BigInteger)
    #: Contract liability reversed by the period's returns (migration 0047).
    reversed_minor: Mapped[int] = mapped_column(BigInteger, server_default="0")


class RevenueAllocation(UUIDv7AuditBase):
    __tablename__ = "revenue_allocations"
    __table_args__ = (
        UniqueConstraint("purchase_id", name="uq_revenue_allocations_purchase_id"),
        UniqueConstraint("statement_line_id", name="uq_revenue_allocations_statement_line_id"),
        Index("ix_revenue_allocations_program_id", "program_id", "id"),
        Index("ix_revenue_allocations_cohort", "program_id", "cohort"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: The period whose run made it.
    period: Mapped[date] = mapped_column(Date)
    source: Mapped[str] = mapped_column(String(11))
    purchase_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("purchases.id"))
    statement_line_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("partner_statement_lines.id")
    )
    #: The month the points were earned (their lots' cohort).
    cohort: Mapped[date] = mapped_column(Date)
    #: When the points were posted (a sale) or billed (a partner fee).
    sold_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    currency: Mapped[str] = mapped_column(String(3))
    price_minor: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)
    point_value_minor: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    breakage_rate: Mapped[Decimal | None] = mapped_column(RATE)
    #: The estimate the breakage rate came from; None: the default rate.
    breakage_estimate_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("breakage_estimates.id")
    )
    goods_ssp: Mapped[Decimal | None] = mapped_column(Numeric())
    points_ssp: Mapped[Decimal | None] = mapped_column(Numeric())
    rounding_policy: Mapped[str] = mapped_column(String(5))
    rounding_mode: Mapped[str] = mapped_column(String(9))
    ratio_places: Mapped[int] = mapped_column(Integer)
    ratio: Mapped[Decimal | None] = mapped_column(Numeric())
    goods_minor: Mapped[int] = mapped_column(BigInteger)
    #: The contract liability: the points' share, or a fee's redemption element.
    points_minor: Mapped[int] = mapped_column(BigInteger)
    service_minor: Mapped[int] = mapped_column(BigInteger)
    # A fee billed in another currency than the program's (migration 0051):
    # the amounts above are converted; what the conversion started from.
    # All None for a sale or a fee in the program's currency.
    original_currency: Mapped[str | None] = mapped_column(String(3))
    original_minor: Mapped[int | None] = mapped_column(BigInteger)
    #: The rate in force on the statement's issue day (ledger's zone).
    exchange_rate: Mapped[Decimal | None] = mapped_column(Numeric(24, 12))
    #: The day that rate took effect (on or before the issue day).
    exchange_rate_date: Mapped[date | None] = mapped_column(Date)


class RevenueReturnReversal(UUIDv7AuditBase):
    """A period's reversal of a sale's points' share for the part of its
    price returned after it was allocated (migration 0047): cumulative to
    date, the period's part the difference. Immutable like the allocations."""

    __tablename__ = "revenue_return_reversals"
    __table_args__ = (
        UniqueConstraint(
            "program_id", "period", "purchase_id", name="uq_revenue_return_reversals_purchase"
        ),
        Index("ix_revenue_return_reversals_latest", "program_id", "purchase_id", "period"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    period: Mapped[date] = mapped_column(Date)
    purchase_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("purchases.id"))
    allocation_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("revenue_allocations.id"))
    #: The allocation's cohort: the liability comes off where it was put.
    cohort: Mapped[date] = mapped_column(Date)
    allocated_price_minor: Mapped[int] = mapped_column(BigInteger)
    allocated_points_minor: Mapped[int] = mapped_column(BigInteger)
    #: Price returned after the allocation, through the period's end.
    returned_minor: Mapped[int] = mapped_column(BigInteger)
    reversed_to_date_minor: Mapped[int] = mapped_column(BigInteger)
    reversed_before_minor: Mapped[int] = mapped_column(BigInteger)
    #: The period's reversal (contract liability back to sales revenue).
    points_minor: Mapped[int] = mapped_column(BigInteger)
    #: The operator's ids of the purchase's returns through the period's end.
    return_ids: Mapped[list[str]] = mapped_column(JSONB)


class BreakageEstimate(UUIDv7AuditBase):
    __tablename__ = "breakage_estimates"
    __table_args__ = (
        UniqueConstraint("program_id", "period", "cohort", name="uq_breakage_estimates_cohort"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    period: Mapped[date] = mapped_column(Date)
    cohort: Mapped[date] = mapped_column(Date)
    age_months: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(12))
    issued_points: Mapped[int] = mapped_column(BigInteger)
    redeemed_points: Mapped[int] = mapped_column(BigInteger)
    expired_points: Mapped[int] = mapped_column(BigInteger)
    #: The factors f(age) .. f(M-1) applied, as decimal strings.
    development_factors: Mapped[list[str]] = mapped_column(JSONB)
    development_months: Mapped[int] = mapped_column(Integer)
    default_breakage_rate: Mapped[Decimal] = mapped_column(RATE)
    expected_redemption_rate: Mapped[Decimal] = mapped_column(RATE)
    breakage_rate: Mapped[Decimal] = mapped_column(RATE)


class RevenueRecognition(UUIDv7AuditBase):
    __tablename__ = "revenue_recognitions"
    __table_args__ = (
        UniqueConstraint(
            "program_id", "period", "cohort", "element", name="uq_revenue_recognitions_cohort"
        ),
        Index("ix_revenue_recognitions_latest", "program_id", "cohort", "element", "period"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    period: Mapped[date] = mapped_column(Date)
    cohort: Mapped[date] = mapped_column(Date)
    element: Mapped[str] = mapped_column(String(7))
    deferred_minor: Mapped[int] = mapped_column(BigInteger)
    issued_points: Mapped[int] = mapped_column(BigInteger)
    expected_points: Mapped[Decimal] = mapped_column(Numeric())
    redeemed_points: Mapped[int] = mapped_column(BigInteger)
    ratio: Mapped[Decimal] = mapped_column(RATE)
    recognised_to_date_minor: Mapped[int] = mapped_column(BigInteger)
    recognised_before_minor: Mapped[int] = mapped_column(BigInteger)
    recognised_in_period_minor: Mapped[int] = mapped_column(BigInteger)
    breakage_estimate_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("breakage_estimates.id")
    )


# A period's run holds the program's revenue lock: these are the net for a
# run that raced it anyway.
CONSTRAINTS = (
    race("uq_revenue_settings_program_id", "revenue settings"),
    race("uq_revenue_periods_period", "revenue recognition run"),
    race("uq_revenue_allocations_purchase_id", "revenue allocation"),
    race("uq_revenue_allocations_statement_line_id", "revenue allocation"),
    race("uq_breakage_estimates_cohort", "breakage estimate"),
    race("uq_revenue_recognitions_cohort", "revenue recognition"),
    race("uq_revenue_return_reversals_purchase", "revenue return reversal"),
)
