"""Tables of partner firms: their profile, status history and users.

A partner firm belongs to one program (the coalition it joined): the
program is its tenant, as for members. A firm may have member companies
(a franchise group and its stores), each a partner row with a ``parent_id``;
what a client of one may see is set by its reach (``core.principal.Reach``).

The other partner tables (clients, contracts, statements, webhooks) live
beside the use cases that own them and share this metadata.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import DateTime, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import taken


class PartnerStatus(enum.StrEnum):
    INVITED = "invited"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    OFFBOARDED = "offboarded"


#: Status -> the statuses it may move to. Offboarded is final: a firm that
#: comes back is a new partner, since its statements and payouts are closed.
STATUS_MOVES: dict[PartnerStatus, frozenset[PartnerStatus]] = {
    PartnerStatus.INVITED: frozenset({PartnerStatus.ACTIVE, PartnerStatus.OFFBOARDED}),
    PartnerStatus.ACTIVE: frozenset({PartnerStatus.SUSPENDED, PartnerStatus.OFFBOARDED}),
    PartnerStatus.SUSPENDED: frozenset({PartnerStatus.ACTIVE, PartnerStatus.OFFBOARDED}),
    PartnerStatus.OFFBOARDED: frozenset(),
}


class PartnerRole(enum.StrEnum):
    """What a partner user does in the firm (the portal's permissions)."""

    ADMIN = "admin"
    SALES = "sales"
    MARKETING = "marketing"
    FINANCE = "finance"


class Partner(UUIDv7AuditBase):
    __tablename__ = "partners"
    __table_args__ = (
        UniqueConstraint("program_id", "slug"),
        Index("ix_partners_parent_id", "parent_id"),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: The partner's key in paths (``/programs/{slug}/partners/{partner}``).
    slug: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    legal_name: Mapped[str] = mapped_column(String(300))
    #: ISO 3166-1 alpha-2.
    country: Mapped[str] = mapped_column(String(2))
    #: ISO 4217: the currency its contracts and statements are in.
    currency: Mapped[str] = mapped_column(String(3))
    #: ``[{"name", "email", "phone", "role"}]``: who to reach for what.
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    #: The partner tier's code (the program's grading of its partners).
    tier: Mapped[str | None] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(16), default=PartnerStatus.INVITED)
    status_changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: The firm this one is a member company of (a store of a group).
    parent_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partners.id"))


class PartnerStatusChange(UUIDv7AuditBase):
    """One move of a partner's status, kept for good (its history)."""

    __tablename__ = "partner_status_changes"
    __table_args__ = (Index("ix_partner_status_changes_partner_id", "partner_id", "at"),)

    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(500))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PartnerUser(UUIDv7AuditBase):
    """A person of a partner firm; the web portal they log into comes later."""

    __tablename__ = "partner_users"
    __table_args__ = (UniqueConstraint("partner_id", "email"),)

    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    #: When the user was removed from the firm (kept: the audit names them).
    removed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


CONSTRAINTS = (
    taken("uq_partners_program_id", "slug", "a partner of this program already has this slug"),
    taken(
        "uq_partner_users_partner_id", "email", "this partner already has a user with this e-mail"
    ),
)
