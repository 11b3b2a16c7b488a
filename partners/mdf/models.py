"""Tables of market development funds (migration 0034): the funds a funder
(the program's operator, or a brand partner) allocates to a partner for a
period, the activities the partner asks to run against them, and the
claims of what it spent, each paid once through the ledger.

A fund's figures (``committed``, ``claimed``, ``paid``) are kept on its row
and moved only under its row lock, with CHECK constraints that the schema
itself enforces (``committed <= amount``, ``paid <= claimed <= committed``):
whatever the race, a fund is never overdrawn. An activity keeps its own
(``claimed``, ``paid`` against its ``approved_amount``) the same way.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import BigInteger, Date, DateTime, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import taken


class FundUnit(enum.StrEnum):
    #: The program's points, paid to the partner's issuance account.
    POINTS = "points"
    #: Money in minor units of ``currency``, paid to the partner's payable
    #: account on the program's money ledger (the payouts pay it out).
    MONEY = "money"


class ActivityStatus(enum.StrEnum):
    REQUESTED = "requested"
    APPROVED = "approved"
    REFUSED = "refused"


class ClaimStatus(enum.StrEnum):
    #: Editable by the partner; counts towards nothing.
    DRAFT = "draft"
    #: Sent to the funder: counts towards the activity's and the fund's claimed.
    SUBMITTED = "submitted"
    #: Approved and paid through the ledger (``transfer_id``), once.
    PAID = "paid"
    REFUSED = "refused"


class MdfFund(UUIDv7AuditBase):
    __tablename__ = "mdf_funds"
    __table_args__ = (
        UniqueConstraint("program_id", "reference"),
        Index("ix_mdf_funds_partner_id", "partner_id", "id"),
        Index("ix_mdf_funds_funder_partner_id", "funder_partner_id", "id"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: The partner the fund is for (who requests activities and claims).
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    #: The brand partner that funds it; None: the program's operator.
    funder_partner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partners.id"))
    #: The funder's key of the fund, unique in the program (allocating again
    #: with the same reference answers the first fund).
    reference: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    period_start: Mapped[date] = mapped_column(Date)
    #: The last day activities may be requested and approved.
    period_end: Mapped[date] = mapped_column(Date)
    #: The last day claims may be submitted (on or after ``period_end``).
    claims_until: Mapped[date] = mapped_column(Date)
    unit: Mapped[str] = mapped_column(String(6))
    #: ISO 4217 of a money fund; None for points.
    currency: Mapped[str | None] = mapped_column(String(3))
    #: The ledger the payments post on (the program's, or its money ledger).
    ledger_id: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    #: Sum of the approved activities' amounts.
    committed: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Sum of the submitted and paid claims.
    claimed: Mapped[int] = mapped_column(BigInteger, default=0)
    #: Sum of the paid claims.
    paid: Mapped[int] = mapped_column(BigInteger, default=0)
    created_by: Mapped[str] = mapped_column(String(200))


class MdfActivity(UUIDv7AuditBase):
    __tablename__ = "mdf_activities"
    __table_args__ = (
        Index("ix_mdf_activities_fund_id", "fund_id", "id"),
        Index("ix_mdf_activities_partner_id", "partner_id", "id"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    fund_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mdf_funds.id"))
    #: The fund's partner, who requested it.
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    title: Mapped[str] = mapped_column(String(200))
    plan: Mapped[str] = mapped_column(String(5000))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    #: What the partner asked for.
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default=ActivityStatus.REQUESTED)
    #: What the funder approved (at most ``amount``); None until approved.
    approved_amount: Mapped[int | None] = mapped_column(BigInteger)
    claimed: Mapped[int] = mapped_column(BigInteger, default=0)
    paid: Mapped[int] = mapped_column(BigInteger, default=0)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_note: Mapped[str | None] = mapped_column(String(1000))
    requested_by: Mapped[str] = mapped_column(String(200))


class MdfClaim(UUIDv7AuditBase):
    __tablename__ = "mdf_claims"
    __table_args__ = (
        Index("ix_mdf_claims_activity_id", "activity_id", "id"),
        Index("ix_mdf_claims_partner_id", "partner_id", "id"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    fund_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mdf_funds.id"))
    activity_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("mdf_activities.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(String(5000))
    #: ``[{"url", "description"}]``: where the proof of the spend is.
    proof: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    status: Mapped[str] = mapped_column(String(10), default=ClaimStatus.DRAFT)
    submitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    decision_note: Mapped[str | None] = mapped_column(String(1000))
    #: The ledger transfer that paid it (derived from the claim's id).
    transfer_id: Mapped[uuid.UUID | None] = mapped_column()


CONSTRAINTS = (
    taken(
        "uq_mdf_funds_program_id",
        "reference",
        "a fund of this program already has this reference, with other fields",
    ),
)
