"""Tables of partner machine access: OAuth clients and the partner API's
idempotency keys (migrations 0022, 0031). The signing keys' table is read and
written in SQL only (``partners.signing_keys``).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race, taken


class PartnerClient(UUIDv7AuditBase):
    """A partner company's machine credential (OAuth 2.0 client credentials).

    Only Argon2id hashes of its secrets are kept. During a rotation's overlap
    the previous secret works too, until ``previous_valid_until``.
    """

    __tablename__ = "partner_clients"
    __table_args__ = (UniqueConstraint("client_id"), UniqueConstraint("partner_id", "name"))

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    #: Public: ``pc_`` and 24 hex digits.
    client_id: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(100))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    #: ``core.principal.Reach``: which companies of its group it may see.
    reach: Mapped[str] = mapped_column(String(16))
    secret_hash: Mapped[str] = mapped_column(String(200))
    previous_secret_hash: Mapped[str | None] = mapped_column(String(200))
    previous_valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    secret_rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The actor who created it (the audit trail has the rest).
    created_by: Mapped[str] = mapped_column(String(200))


#: A stored answer of a partner API POST, by the partner and the request's
#: ``Idempotency-Key`` (``api.idempotency``); kept 24 hours.
idempotency_keys = Table(
    "idempotency_keys",
    UUIDv7AuditBase.metadata,
    Column("partner_id", UUID(as_uuid=True), ForeignKey("partners.id"), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("program_id", UUID(as_uuid=True), ForeignKey("programs.id"), nullable=False),
    Column("request_sha256", LargeBinary, nullable=False),
    # NULL while the key's request is in flight (then claim_id and
    # claimed_until say whose claim it is and until when).
    Column("status_code", SmallInteger),
    Column("response_headers", JSONB),
    Column("response_body", LargeBinary),
    Column("claim_id", UUID(as_uuid=True)),
    Column("claimed_until", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_idempotency_keys_created_at", "created_at"),
)

CONSTRAINTS = (
    taken(
        "uq_partner_clients_partner_id", "name", "this partner already has a client with this name"
    ),
    race("uq_partner_clients_client_id", "client id"),
    race("uq_signing_keys_current", "signing key"),
    race("uq_signing_keys_kid", "signing key"),
    race("pk_idempotency_keys", "Idempotency-Key"),
)
