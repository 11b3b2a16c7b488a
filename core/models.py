"""Tables of programs and members, which every domain stands on.

They share the declarative base (advanced-alchemy's ``UUIDv7AuditBase``, one
metadata) with the domains' tables, so foreign keys such as
``ForeignKey("programs.id")`` resolve and Alembic sees one schema.
Balances are not here: every point lives in the ledger.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race


class MemberStatus(enum.StrEnum):
    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


class Program(UUIDv7AuditBase):
    __tablename__ = "programs"

    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    ledger_id: Mapped[int] = mapped_column(Integer, unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    minor_per_major: Mapped[int] = mapped_column(Integer, default=100)
    #: What one point is worth in the currency's minor units when redeemed.
    point_value_minor: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    return_window_days: Mapped[int] = mapped_column(Integer, default=30)
    #: Points a member may give away per calendar day (of ``time_zone``).
    gift_daily_limit: Mapped[int] = mapped_column(BigInteger, default=10000)
    #: What qualifies for tiers: "spend" (minor units) or "points" earned.
    tier_basis: Mapped[str] = mapped_column(String(8), default="spend")
    #: "calendar_year", "rolling_12_months" or "anniversary" (of enrolment).
    tier_window: Mapped[str] = mapped_column(String(20), default="calendar_year")
    tier_grace_days: Mapped[int] = mapped_column(Integer, default=30)
    #: "none", "fixed" (points expire ``expiry_months`` after they are
    #: credited) or "inactivity" (all expire after that long without activity).
    expiry_policy: Mapped[str] = mapped_column(String(12), default="none")
    expiry_months: Mapped[int] = mapped_column(Integer, default=24)
    #: The IANA zone every calendar rule counts in (days, months, years):
    #: see ``core.calendar``.
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    #: When the program began: its creation, or earlier for a program whose
    #: history is imported. Its first rule version may take effect from then.
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    issuance_account_id: Mapped[uuid.UUID]
    redemption_account_id: Mapped[uuid.UUID]
    breakage_account_id: Mapped[uuid.UUID]


class Member(UUIDv7AuditBase):
    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("program_id", "external_id"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    external_id: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    phone: Mapped[str | None] = mapped_column(String(32))
    consents: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=MemberStatus.ACTIVE)
    wallet_account_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    #: Opened when a return reverses more points than the wallet holds.
    debt_account_id: Mapped[uuid.UUID | None] = mapped_column(unique=True)
    tier_code: Mapped[str | None] = mapped_column(String(50))
    tier_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: When the member's tier was last evaluated for a downgrade.
    tier_reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


#: Every look-up of these keys comes before the write (slugs under a lock of
#: their own, members by external id; ledger ids from a sequence and account
#: ids derived from the enrolment), so a violation is a lost race.
CONSTRAINTS = (
    race("uq_programs_slug", "program slug"),
    race("uq_programs_ledger_id", "program ledger"),
    race("uq_members_program_id", "member external id"),
    race("uq_members_wallet_account_id", "member enrolment"),
    race("uq_members_debt_account_id", "member debt account"),
)
