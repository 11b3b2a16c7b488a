"""Tables of collection (migrations 0027, 0030): a partner's saved payment
method and payment-provider customer, and each statement's collection."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race


class CollectionStatus(enum.StrEnum):
    #: A payment was asked for; its outcome has not come yet.
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    #: The last attempt failed; another is due at ``next_attempt_at``.
    FAILED = "failed"
    #: Every retry failed: the operator collects it some other way.
    GIVEN_UP = "given_up"


class PartnerPaymentAccount(UUIDv7AuditBase):
    __tablename__ = "partner_payment_accounts"
    __table_args__ = (UniqueConstraint("partner_id"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    #: The saved payment method charged off session (Stripe's ``pm_...``).
    payment_method_id: Mapped[str | None] = mapped_column(String(255))
    #: The partner's customer at the provider, created once.
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255))
    #: The method last attached to that customer: a PaymentIntent on any
    #: other (a method saved since) attaches it first.
    attached_payment_method_id: Mapped[str | None] = mapped_column(String(255))


class PartnerCollection(UUIDv7AuditBase):
    __tablename__ = "partner_collections"
    __table_args__ = (
        UniqueConstraint("statement_id"),
        # The retry job's scan: only collections waiting for a retry.
        Index(
            "ix_partner_collections_next_attempt_at",
            "next_attempt_at",
            postgresql_where=text("status = 'failed'"),
        ),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    statement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partner_statements.id"))
    status: Mapped[str] = mapped_column(String(10))
    attempts: Mapped[int] = mapped_column(Integer)
    #: The statement's lines are on the customer as invoice items.
    items_created: Mapped[bool] = mapped_column(Boolean, default=False)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    failure: Mapped[str | None] = mapped_column(String(500))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


#: Each row is looked up before it is written, under the partner's row lock.
CONSTRAINTS = (
    race("uq_partner_payment_accounts_partner_id", "partner payment account"),
    race("uq_partner_collections_statement_id", "statement collection"),
)
