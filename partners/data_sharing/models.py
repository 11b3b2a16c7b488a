"""Tables of data sharing between partners (migration 0035): the
agreements two partners make, each member's consent per field, and the log
of every disclosure.

An agreement is proposed by one partner to another of the same program:
which fields, for what purpose, in which direction, until when. It is in
force (``active``) only once both partners opted in; either may revoke it,
which ends every further disclosure at once. Nothing about a member leaves
unless the member consented to that field (``data_sharing_consents``),
whatever the agreement says. Each disclosure writes one row per member
(or record) to ``data_disclosures`` in the same transaction, so the log
holds exactly what went out.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race


class AgreementStatus(enum.StrEnum):
    #: Proposed; waiting for the opt-in of both partners.
    PROPOSED = "proposed"
    #: Both opted in: in force until it expires or is revoked.
    ACTIVE = "active"
    #: Revoked by either partner: final.
    REVOKED = "revoked"
    #: Past ``expires_at``: final.
    EXPIRED = "expired"


class Direction(enum.StrEnum):
    #: The proposer's members' data goes to the counterparty.
    PROPOSER_TO_COUNTERPARTY = "proposer_to_counterparty"
    #: The counterparty's members' data goes to the proposer.
    COUNTERPARTY_TO_PROPOSER = "counterparty_to_proposer"
    BOTH = "both"


class DisclosureChannel(enum.StrEnum):
    #: A partner read members' data through the partner API.
    API = "api"
    #: A webhook delivery carried members' data.
    WEBHOOK = "webhook"
    #: A partner exported members' data (a file).
    EXPORT = "export"
    #: An overlap match told the partner which of its records are shared.
    OVERLAP = "overlap"


class DataSharingAgreement(UUIDv7AuditBase):
    __tablename__ = "data_sharing_agreements"
    __table_args__ = (
        Index("ix_data_sharing_agreements_proposer", "proposer_partner_id", "id"),
        Index("ix_data_sharing_agreements_counterparty", "counterparty_partner_id", "id"),
        Index(
            "ix_data_sharing_agreements_expiry",
            "expires_at",
            postgresql_where=text("status IN ('proposed', 'active')"),
        ),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    proposer_partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    counterparty_partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    purpose: Mapped[str] = mapped_column(Text)
    direction: Mapped[str] = mapped_column(String(32))
    #: The member fields shared (``consent.SHAREABLE_FIELDS``), sorted.
    fields: Mapped[list[str]] = mapped_column(JSONB)
    #: The smallest group an aggregate (an overlap count) may describe.
    min_group_size: Mapped[int] = mapped_column(Integer, default=50, server_default="50")
    status: Mapped[str] = mapped_column(String(16), default=AgreementStatus.PROPOSED)
    proposer_opted_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    counterparty_opted_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by_partner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partners.id"))
    #: Raised when the agreement's keys are rotated (overlap matching's
    #: keyed identifiers): a match made under another epoch does not compare.
    key_epoch: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    def parties(self) -> tuple[uuid.UUID, uuid.UUID]:
        return (self.proposer_partner_id, self.counterparty_partner_id)

    def other(self, partner_id: uuid.UUID) -> uuid.UUID:
        """The other partner of the pair."""
        if partner_id == self.proposer_partner_id:
            return self.counterparty_partner_id
        return self.proposer_partner_id

    def receives(self, partner_id: uuid.UUID) -> bool:
        """Whether ``partner_id`` may receive the other's members' data."""
        if self.direction == Direction.BOTH:
            return partner_id in self.parties()
        if self.direction == Direction.PROPOSER_TO_COUNTERPARTY:
            return partner_id == self.counterparty_partner_id
        return partner_id == self.proposer_partner_id


class DataSharingConsent(UUIDv7AuditBase):
    """A member's consent to share one field of theirs with partners under
    data-sharing agreements. No row, or a withdrawn one: the field is never
    disclosed."""

    __tablename__ = "data_sharing_consents"
    __table_args__ = (UniqueConstraint("member_id", "field"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    field: Mapped[str] = mapped_column(String(32))
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    #: Set when the member withdrew it; a new grant clears it.
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DataDisclosure(UUIDv7AuditBase):
    """One member's (or one record's) fields that went to a partner under an
    agreement, by one channel, at one time. Written in the transaction of
    the disclosure itself; never updated."""

    __tablename__ = "data_disclosures"
    __table_args__ = (
        Index("ix_data_disclosures_agreement_id", "agreement_id", "id"),
        Index("ix_data_disclosures_member_id", "member_id", "id"),
    )

    # No foreign keys: the log is append-only and outlives what it names, and
    # a key check per line (each locking the agreement's or a member's row,
    # which every concurrent read of the agreement locks too) cost the logged
    # read a third of its speed. Every value comes from the agreement and the
    # members the disclosing statement has just read, in its transaction.
    program_id: Mapped[uuid.UUID]
    agreement_id: Mapped[uuid.UUID]
    from_partner_id: Mapped[uuid.UUID]
    to_partner_id: Mapped[uuid.UUID]
    #: The member the fields are of; none for a record that is not a
    #: member's (an overlap's matched account), named by ``record_ref``.
    #: Members are never deleted (an erasure keeps the row, anonymised).
    member_id: Mapped[uuid.UUID | None]
    record_ref: Mapped[str | None] = mapped_column(String(200))
    #: The field names that went out, sorted.
    fields: Mapped[list[str]] = mapped_column(JSONB)
    channel: Mapped[str] = mapped_column(String(16))
    #: What carried it: the request id, webhook delivery id, export id.
    reference: Mapped[str | None] = mapped_column(String(200))
    disclosed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


#: The webhook deliveries that carry members' data under an agreement: the
#: sender drops one whose agreement is no longer in force when it would be
#: sent, and a revocation cancels those still waiting (``disclosures``).
data_sharing_deliveries = Table(
    "data_sharing_deliveries",
    UUIDv7AuditBase.metadata,
    Column(
        "delivery_id",
        UUID(as_uuid=True),
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "agreement_id",
        UUID(as_uuid=True),
        ForeignKey("data_sharing_agreements.id"),
        nullable=False,
    ),
    #: When and why it was cancelled before it was sent (revoked, expired).
    Column("cancelled_at", DateTime(timezone=True)),
    Column("cancelled_reason", String(32)),
    Index("ix_data_sharing_deliveries_agreement_id", "agreement_id"),
)


#: Each consent is looked up first, under the member's row lock.
CONSTRAINTS = (race("uq_data_sharing_consents_member_id", "data-sharing consent"),)
