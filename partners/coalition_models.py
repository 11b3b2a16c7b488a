"""Tables of coalition points (migration 0023): a partner's contracts, the
blocks of points it bought, members' identifiers at the partner, and the
points it issued and accepted.

Every row names its program (the tenant) and the partner that holds the
contract it was made under (``partner_id``: the contract holder, whose
ledger accounts moved); issuances and holds also name the acting company
(``company_id``: the store of a group), so that statements can break down
by company. Points live in the ledger, never here: a row records what was
asked and which transfer carried it.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race, taken


class ContractStatus(enum.StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"


class ContractRoles(enum.StrEnum):
    ISSUER = "issuer"
    ACCEPTOR = "acceptor"
    BOTH = "both"

    @property
    def issues(self) -> bool:
        return self in (ContractRoles.ISSUER, ContractRoles.BOTH)

    @property
    def accepts(self) -> bool:
        return self in (ContractRoles.ACCEPTOR, ContractRoles.BOTH)


class FundingModel(enum.StrEnum):
    #: The partner buys blocks of points before it issues them.
    PREPAID = "prepaid"
    #: The partner issues up to its credit limit and pays by statement.
    POSTPAID = "postpaid"


class SettlementPeriod(enum.StrEnum):
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"


class HoldStatus(enum.StrEnum):
    HELD = "held"
    CAPTURED = "captured"
    RELEASED = "released"


class PartnerContract(UUIDv7AuditBase):
    """One version of a partner's terms: a draft, then published to be in
    force from ``effective_from`` until a published version with a later
    start takes over."""

    __tablename__ = "partner_contracts"
    __table_args__ = (
        UniqueConstraint("partner_id", "version"),
        Index(
            "ix_partner_contracts_in_force",
            "partner_id",
            "effective_from",
            postgresql_where=text("status = 'published'"),
        ),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    roles: Mapped[str] = mapped_column(String(8))
    #: Minor units of ``currency`` per point issued, exact to 6 places.
    issue_price_per_point: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    #: Minor units per point redeemed at the partner, reimbursed to it.
    redemption_rate_per_point: Mapped[Decimal] = mapped_column(Numeric(18, 6))
    #: The part of the issue price billed at issuance; the rest at redemption.
    issuance_share: Mapped[Decimal] = mapped_column(Numeric(7, 6))
    funding_model: Mapped[str] = mapped_column(String(8))
    #: Postpaid only (0 for prepaid): points it may issue before it pays.
    credit_limit_points: Mapped[int] = mapped_column(BigInteger)
    settlement_period: Mapped[str] = mapped_column(String(10))
    currency: Mapped[str] = mapped_column(String(3))
    issuance_tax_code: Mapped[str | None] = mapped_column(String(32))
    redemption_tax_code: Mapped[str | None] = mapped_column(String(32))
    fee_tax_code: Mapped[str | None] = mapped_column(String(32))
    #: Money the partner paid ahead, drawn down by its statements.
    prepaid_credit_minor: Mapped[int] = mapped_column(BigInteger)
    #: Per settlement period; a shortfall becomes a statement line.
    minimum_commitment_minor: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(String(500))
    effective_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PartnerFunding(UUIDv7AuditBase):
    """A block of points a prepaid partner paid for, moved to its issuance
    account by the transfer ``transfer_id``."""

    __tablename__ = "partner_fundings"
    __table_args__ = (UniqueConstraint("partner_id", "reference"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    #: The payment's reference (an invoice, a bank transfer, a PaymentIntent).
    reference: Mapped[str] = mapped_column(String(200))
    points: Mapped[int] = mapped_column(BigInteger)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    paid_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    transfer_id: Mapped[uuid.UUID]


class PartnerMemberLink(UUIDv7AuditBase):
    """A member's identifier at a partner (a card number), which the
    partner may issue points to instead of the program's member id."""

    __tablename__ = "partner_member_links"
    __table_args__ = (
        UniqueConstraint("partner_id", "identifier"),
        UniqueConstraint("member_id", "partner_id"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    identifier: Mapped[str] = mapped_column(String(200))


class PartnerIssuance(UUIDv7AuditBase):
    """Points a partner issued to a member, under its ``transaction_id``."""

    __tablename__ = "partner_issuances"
    __table_args__ = (
        UniqueConstraint("partner_id", "transaction_id"),
        Index("ix_partner_issuances_company_id", "company_id", "id"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    company_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    transaction_id: Mapped[str] = mapped_column(String(200))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    #: The member's identifier at the partner, when the request named them by it.
    identifier: Mapped[str | None] = mapped_column(String(200))
    points: Mapped[int] = mapped_column(BigInteger)
    purchase_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    contract_version: Mapped[int] = mapped_column(Integer)
    rule_version: Mapped[int | None] = mapped_column(Integer)
    #: None when the purchase earned no points (nothing moved).
    transfer_id: Mapped[uuid.UUID | None]
    #: SHA-256 of the request as sent: a replay with other fields is a conflict.
    request_digest: Mapped[bytes] = mapped_column(LargeBinary)


class PartnerHold(UUIDv7AuditBase):
    """Points reserved at a partner's checkout (a pending transfer), then
    captured, released or timed out; refunds give captured points back."""

    __tablename__ = "partner_holds"
    __table_args__ = (
        UniqueConstraint("partner_id", "checkout_id"),
        Index("ix_partner_holds_company_id", "company_id", "id"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    company_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    checkout_id: Mapped[str] = mapped_column(String(200))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    #: The member's identifier at the partner, when the request named them by it.
    identifier: Mapped[str | None] = mapped_column(String(200))
    points: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10))
    captured_points: Mapped[int] = mapped_column(BigInteger)
    refunded_points: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    contract_version: Mapped[int] = mapped_column(Integer)
    transfer_id: Mapped[uuid.UUID]
    request_digest: Mapped[bytes] = mapped_column(LargeBinary)


class PartnerRefund(UUIDv7AuditBase):
    """Captured points given back to the member, under the partner's ``refund_id``."""

    __tablename__ = "partner_refunds"
    __table_args__ = (UniqueConstraint("hold_id", "refund_id"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    hold_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partner_holds.id"))
    refund_id: Mapped[str] = mapped_column(String(200))
    points: Mapped[int] = mapped_column(BigInteger)
    transfer_id: Mapped[uuid.UUID]


#: Each key is looked up (or inserted with ON CONFLICT) before anything is
#: written, under a lock of the partner or the hold: a violation is a lost race.
CONSTRAINTS = (
    race("uq_partner_contracts_partner_id", "contract version"),
    race("uq_partner_fundings_partner_id", "funding reference"),
    taken(
        "uq_partner_member_links_partner_id",
        "identifier",
        "another member linked this identifier at this partner",
    ),
    race("uq_partner_member_links_member_id", "partner link"),
    race("uq_partner_issuances_partner_id", "partner transaction id"),
    race("uq_partner_holds_partner_id", "checkout id"),
    race("uq_partner_refunds_hold_id", "refund id"),
)
