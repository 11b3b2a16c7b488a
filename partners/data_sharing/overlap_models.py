"""Tables of overlap matching (migration 0036): the secret keys of each
agreement's epochs, the partners' uploaded lists as keyed hashes, the
matches run, the count queries that the difference-attack budget weighs,
and the cached PSI setup messages (docs/overlap-matching.md)."""

from __future__ import annotations

import enum
import uuid
from typing import Any

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race


class HashedBy(enum.StrEnum):
    #: The partner sent its identifiers; the platform normalised and hashed
    #: them with the epoch's key, and kept only the hashes.
    PLATFORM = "platform"
    #: The partner sent HMAC-SHA256 digests made with the epoch's key it had
    #: fetched: the platform never saw the identifiers.
    PARTNER = "partner"


class MatchMode(enum.StrEnum):
    KEYED_HASH = "keyed_hash"
    PSI = "psi"


class ResultKind(enum.StrEnum):
    #: The matched records: positions in the caller's list and the other's
    #: allowed fields.
    OVERLAPS = "overlaps"
    #: Counts by segment, none below the agreement's minimum group size.
    COUNTS = "counts"


class OverlapKey(UUIDv7AuditBase):
    """The secrets of one epoch of an agreement: the HMAC key both partners
    hash with, and the PSI server key the platform uses when it runs PSI on
    a partner's behalf. A rotation is a new row with the next epoch."""

    __tablename__ = "overlap_keys"
    __table_args__ = (UniqueConstraint("agreement_id", "key_epoch"),)

    agreement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("data_sharing_agreements.id"))
    key_epoch: Mapped[int] = mapped_column(Integer)
    hmac_key: Mapped[bytes] = mapped_column(LargeBinary)
    psi_key: Mapped[bytes] = mapped_column(LargeBinary)


class OverlapUpload(UUIDv7AuditBase):
    """One partner's list for an agreement, under one key epoch. Its records
    are known by position (0-based, in the order uploaded): the platform
    keeps no identifier, only its keyed hash (``overlap_upload_chunks``)."""

    __tablename__ = "overlap_uploads"
    __table_args__ = (Index("ix_overlap_uploads_agreement_id", "agreement_id", "partner_id", "id"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    agreement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("data_sharing_agreements.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    key_epoch: Mapped[int] = mapped_column(Integer)
    identifier_kind: Mapped[str] = mapped_column(String(16))
    hashed_by: Mapped[str] = mapped_column(String(16))
    records: Mapped[int] = mapped_column(Integer)
    #: Records whose identifier did not normalise: they match nothing.
    unmatchable: Mapped[int] = mapped_column(Integer)
    #: The segment labels used, in order: a record's segment code indexes it.
    segments: Mapped[list[str]] = mapped_column(JSONB)
    #: SHA-256 of the digests, the segment codes and labels: two uploads of
    #: the same list have the same (the budget's cheap test of a repeat).
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)


#: A list's digests in chunks of ``overlap.CHUNK_RECORDS`` records (32 bytes
#: each, in position order) and their segment codes (2 bytes each, big
#: endian; 0xFFFF: none), written with COPY.
overlap_upload_chunks = Table(
    "overlap_upload_chunks",
    UUIDv7AuditBase.metadata,
    Column("upload_id", UUID(as_uuid=True), ForeignKey("overlap_uploads.id"), primary_key=True),
    Column("chunk_no", Integer, primary_key=True),
    Column("digests", LargeBinary, nullable=False),
    Column("segment_codes", LargeBinary, nullable=False),
)

#: The fields a record carries that the agreement lets go to the other
#: partner (others are dropped at upload), for records that carry any.
overlap_record_fields = Table(
    "overlap_record_fields",
    UUIDv7AuditBase.metadata,
    Column("upload_id", UUID(as_uuid=True), ForeignKey("overlap_uploads.id"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("fields", JSONB, nullable=False),
)


class OverlapRun(UUIDv7AuditBase):
    """A match of the caller's upload against the other partner's. The raw
    figures are kept for the audit; what was shown is ``shown``."""

    __tablename__ = "overlap_runs"
    __table_args__ = (Index("ix_overlap_runs_agreement_id", "agreement_id", "partner_id", "id"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    agreement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("data_sharing_agreements.id"))
    #: The partner that asked for it and sees its result.
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    own_upload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("overlap_uploads.id"))
    other_upload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("overlap_uploads.id"))
    key_epoch: Mapped[int] = mapped_column(Integer)
    mode: Mapped[str] = mapped_column(String(16))
    result_kind: Mapped[str] = mapped_column(String(16))
    #: The segments of the caller's list counted; none: every record.
    segment_filter: Mapped[list[str] | None] = mapped_column(JSONB)
    min_group_size: Mapped[int] = mapped_column(Integer)
    #: The intersection's size, never shown below ``min_group_size``.
    matched: Mapped[int] = mapped_column(Integer)
    #: What the caller is shown: counts by segment (suppressed ones absent)
    #: or, for overlaps, the number of records listed.
    shown: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: The matched positions (caller's list, other's list), for overlaps.
    own_positions: Mapped[list[int] | None] = mapped_column(JSONB)
    other_positions: Mapped[list[int] | None] = mapped_column(JSONB)


class OverlapCountQuery(UUIDv7AuditBase):
    """A count query that was answered, as the budget weighs it: which
    records of each list it counted (the uploads and the segment filter)
    and how many."""

    __tablename__ = "overlap_count_queries"
    __table_args__ = (Index("ix_overlap_count_queries_agreement_id", "agreement_id", "key_epoch"),)

    agreement_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("data_sharing_agreements.id"))
    partner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("partners.id"))
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("overlap_runs.id"))
    key_epoch: Mapped[int] = mapped_column(Integer)
    own_upload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("overlap_uploads.id"))
    other_upload_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("overlap_uploads.id"))
    segment_filter: Mapped[list[str] | None] = mapped_column(JSONB)
    #: Distinct matchable identifiers counted on each side.
    own_population: Mapped[int] = mapped_column(Integer)
    other_population: Mapped[int] = mapped_column(Integer)


#: The server's PSI setup message of an upload under an epoch's key: a
#: third of a run's cost, made once.
overlap_psi_setups = Table(
    "overlap_psi_setups",
    UUIDv7AuditBase.metadata,
    Column("upload_id", UUID(as_uuid=True), ForeignKey("overlap_uploads.id"), primary_key=True),
    Column("key_epoch", Integer, primary_key=True),
    Column(
        "agreement_id",
        UUID(as_uuid=True),
        ForeignKey("data_sharing_agreements.id"),
        nullable=False,
    ),
    Column("setup", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: Two rotations of one agreement's key at once: the second is told to retry.
CONSTRAINTS = (race("uq_overlap_keys_agreement_id", "overlap key"),)
