"""Tables of the rewards domain: earn rule versions, purchases, the
catalog, gifts, holds, tiers and thresholds (programs and members are
``core.models``').

Balances are not here: every point lives in the ledger. These rows say what
happened in business terms and which ledger transfers it made.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    desc,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race, taken


class RuleStatus(enum.StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"


class EarnRuleVersion(UUIDv7AuditBase):
    __tablename__ = "earn_rule_versions"
    __table_args__ = (
        UniqueConstraint("program_id", "version"),
        Index(
            "ix_earn_rule_versions_in_force",
            "program_id",
            desc("effective_from"),
            postgresql_where=text("status = 'published'"),
        ),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=RuleStatus.DRAFT)
    #: When a published version starts to apply (events are priced by the
    #: version in force at their own time).
    effective_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rules: Mapped[dict[str, Any]] = mapped_column(JSONB)
    note: Mapped[str | None] = mapped_column(String(500))
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Purchase(UUIDv7AuditBase):
    __tablename__ = "purchases"
    __table_args__ = (
        UniqueConstraint("program_id", "order_id"),
        # A member's qualifying window is one range of this index.
        Index("ix_purchases_member_time", "member_id", "occurred_at"),
        Index(
            "ix_purchases_maturing",
            "matures_at",
            postgresql_where=text("posted_at IS NULL AND earn_transfer_id IS NOT NULL"),
        ),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    #: The operator's order id: the idempotency key of the purchase.
    order_id: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    rule_version: Mapped[int | None] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(BigInteger)
    #: The pending ledger transfer holding the earned points.
    earn_transfer_id: Mapped[uuid.UUID | None]
    matures_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    posted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    returned_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)


class PurchaseReturn(UUIDv7AuditBase):
    __tablename__ = "purchase_returns"
    __table_args__ = (UniqueConstraint("purchase_id", "return_id"),)

    purchase_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("purchases.id"))
    #: The operator's return id: the idempotency key of the return.
    return_id: Mapped[str] = mapped_column(String(200))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    points_reversed: Mapped[int] = mapped_column(BigInteger)
    #: Of those, points the wallet could not cover, owed by the member.
    debt_points: Mapped[int] = mapped_column(BigInteger, default=0)


class CatalogReward(UUIDv7AuditBase):
    __tablename__ = "catalog_rewards"
    __table_args__ = (UniqueConstraint("program_id", "sku", name="uq_catalog_rewards_sku"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    sku: Mapped[str] = mapped_column(String(100))
    name: Mapped[str] = mapped_column(String(200))
    points_price: Mapped[int] = mapped_column(BigInteger)
    #: None: unlimited.
    stock: Mapped[int | None] = mapped_column(Integer)
    valid_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    fulfilling_partner: Mapped[str | None] = mapped_column(String(100))


class Redemption(UUIDv7AuditBase):
    __tablename__ = "redemptions"
    __table_args__ = (UniqueConstraint("member_id", "idempotency_key", name="uq_redemptions_key"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    reward_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("catalog_rewards.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(BigInteger)
    transfer_id: Mapped[uuid.UUID]


class Gift(UUIDv7AuditBase):
    __tablename__ = "gifts"
    __table_args__ = (
        UniqueConstraint("sender_id", "idempotency_key", name="uq_gifts_key"),
        Index("ix_gifts_sender_day", "sender_id", "created_at"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    sender_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    recipient_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    points: Mapped[int] = mapped_column(BigInteger)
    transfer_id: Mapped[uuid.UUID]


class HoldStatus(enum.StrEnum):
    HELD = "held"
    CAPTURED = "captured"
    RELEASED = "released"


class PointHold(UUIDv7AuditBase):
    __tablename__ = "point_holds"
    __table_args__ = (
        UniqueConstraint("member_id", "idempotency_key", name="uq_point_holds_key"),
        UniqueConstraint("transfer_id", name="point_holds_transfer_id_key"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    #: The merchant's order the points pay for.
    order_ref: Mapped[str] = mapped_column(String(200))
    points: Mapped[int] = mapped_column(BigInteger)
    value_minor: Mapped[int] = mapped_column(BigInteger)
    transfer_id: Mapped[uuid.UUID]
    status: Mapped[str] = mapped_column(String(16), default=HoldStatus.HELD)
    captured_points: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Tier(UUIDv7AuditBase):
    """A rung of a program's ladder. Never deleted, nor its code or ledger
    class changed (migration 0053): the class maps back to it for good."""

    __tablename__ = "tiers"
    __table_args__ = (
        UniqueConstraint("program_id", "code", name="uq_tiers_code"),
        UniqueConstraint("program_id", "rank", name="uq_tiers_rank"),
        UniqueConstraint("ledger_class", name="uq_tiers_ledger_class"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(100))
    rank: Mapped[int] = mapped_column(Integer)
    threshold: Mapped[int] = mapped_column(BigInteger)
    perks: Mapped[list[Any]] = mapped_column(JSONB, default=list)
    #: The members' wallets in the tier are in this account class of the
    #: ledger (``rewards.tier_history``); unique across programs, never 0.
    ledger_class: Mapped[int] = mapped_column(
        Integer, server_default=text("nextval('tier_ledger_classes')")
    )


class ThresholdReward(UUIDv7AuditBase):
    __tablename__ = "threshold_rewards"
    __table_args__ = (UniqueConstraint("program_id", "code", name="uq_threshold_rewards_code"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(50))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    bonus_points: Mapped[int] = mapped_column(BigInteger)


class PointValue(UUIDv7AuditBase):
    """A program's point value from an instant on (``rewards.point_values``)."""

    __tablename__ = "point_values"
    __table_args__ = (
        UniqueConstraint("program_id", "effective_from", name="uq_point_values_in_force"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    effective_from: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Minor units of the program's currency per point, as ``programs.point_value_minor``.
    point_value_minor: Mapped[Decimal] = mapped_column(Numeric(18, 6))


CONSTRAINTS = (
    taken("uq_catalog_rewards_sku", "sku", "a reward with this sku is in the program's catalog"),
    taken("uq_tiers_code", "code", "a tier with this code is in the program's ladder"),
    taken("uq_tiers_rank", "rank", "a tier of this rank is in the program's ladder"),
    taken("uq_threshold_rewards_code", "code", "a threshold with this code is in the program"),
    # Looked up first (or numbered from the last): a violation is a lost race.
    race("uq_earn_rule_versions_program_id", "rule version number"),
    race("uq_purchases_program_id", "order id"),
    race("uq_purchase_returns_purchase_id", "return id"),
    race("uq_redemptions_key", "redemption idempotency key"),
    race("uq_gifts_key", "gift idempotency key"),
    race("uq_point_holds_key", "hold idempotency key"),
    race("point_holds_transfer_id_key", "hold"),
    race("uq_behaviour_events_id", "event id"),
    race("uq_threshold_grants_standing", "threshold grant"),
    # Ids derived from the request's business key.
    race("behaviour_events_pkey", "event id"),
    race("threshold_grants_pkey", "threshold grant"),
    race("points_purchases_pkey", "payment"),
    race("stripe_events_pkey", "Stripe event"),
    race("uq_point_values_in_force", "point value"),
    # From a sequence: only a value set by hand could collide.
    race("uq_tiers_ledger_class", "tier ledger class"),
)
