"""Table of the blocks of points prepaid partners buy through the payment
provider (migration 0029): each purchase, its price and its outcome."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race


class PurchaseStatus(enum.StrEnum):
    #: The payment was asked for; its outcome has not come yet.
    PENDING = "pending"
    #: Paid: the block is on the partner's issuance account (``funding_id``).
    SUCCEEDED = "succeeded"
    #: The payment failed; nothing was funded. A new purchase is a new id.
    FAILED = "failed"


class PartnerFundingPurchase(UUIDv7AuditBase):
    __tablename__ = "partner_funding_purchases"
    __table_args__ = (UniqueConstraint("partner_id", "purchase_id"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    #: The caller's id of the purchase: the idempotency key, per partner.
    purchase_id: Mapped[str] = mapped_column(String(200))
    points: Mapped[int] = mapped_column(BigInteger)
    #: Points times the issue price of ``contract_version``, half-even once.
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    contract_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10))
    #: The saved method charged, kept so that asking again asks the same.
    payment_method_id: Mapped[str] = mapped_column(String(255))
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    failure: Mapped[str | None] = mapped_column(String(500))
    #: The block recorded when the payment succeeded.
    funding_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partner_fundings.id"))
    #: When the payment's outcome came.
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


#: Each row is looked up before it is written, under the partner's row lock.
CONSTRAINTS = (race("uq_partner_funding_purchases_partner_id", "funding purchase id"),)
