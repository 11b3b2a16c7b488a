"""Overlap matching of two partners' lists under a data-sharing agreement
(docs/overlap-matching.md): each partner uploads its list (hashed by the
platform with the agreement's key of the current epoch, or already hashed
by the partner with that key), either asks for a match, and sees the
overlaps (its matched records and the other's allowed fields) or counts by
segment, never a group smaller than the agreement's minimum.

The difference-attack budget (``overlap_budget.check_budget``): a count
query counts a population, the distinct identifiers of each side it
compared (the caller's list filtered by segments, the other's list). Against every
earlier count query of the agreement's epoch (by either partner), ``d`` is
the number of identifiers in one population and not the other, summed over
both sides:

- ``d == 0``: the same question; answered (the same figures), free;
- ``0 < d < min_group_size``: near-identical; refused (409
  ``overlap-query-refused``): two answers would isolate fewer than
  ``min_group_size`` records (one record, in the attack);
- otherwise answered, and it spends one of the agreement's
  ``COUNT_QUERY_BUDGET`` count queries per partner (all epochs together).
"""

from __future__ import annotations

import hashlib
import re
import sys
import uuid
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.principal import Principal
from ledger import new_id
from partners.acting import partner_of
from partners.data_sharing import overlap_hmac, overlap_psi
from partners.data_sharing.agreements import agreement_in_force
from partners.data_sharing.identifiers import IdentifierKind, normaliser
from partners.data_sharing.models import DataSharingAgreement
from partners.data_sharing.overlap_errors import (
    InvalidOverlapList,
    OverlapListMissing,
    OverlapUploadNotFound,
)
from partners.data_sharing.overlap_models import (
    HashedBy,
    OverlapKey,
    OverlapUpload,
    overlap_record_fields,
    overlap_upload_chunks,
)
from partners.data_sharing.overlap_schemas import UploadRequest, UploadView
from rewards.connections import session_connection

#: Records per stored chunk of digests (2 MiB of digests).
CHUNK_RECORDS = 65_536
#: Distinct segment labels of one list.
MAX_SEGMENTS = 1_000
NO_SEGMENT = 0xFFFF
#: Count queries a partner may ask under one agreement (all epochs).
COUNT_QUERY_BUDGET = 100
_DIGEST_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class ListRecord:
    """One record of an uploaded list: its identifier (as the partner holds
    it, or the hex HMAC-SHA256 of its normalised form when the partner
    hashed), an optional segment label, the fields it carries."""

    identifier: str
    segment: str | None = None
    fields: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class HashedList:
    digests: bytes
    #: Two bytes per record, big endian: an index into ``segments``.
    segment_codes: bytes
    segments: list[str]
    unmatchable: int


# -- keys --------------------------------------------------------------------


async def epoch_key(session: AsyncSession, agreement: DataSharingAgreement) -> OverlapKey:
    """The agreement's key of its current epoch, made on first use (two
    concurrent first uses keep one)."""
    await session.execute(
        insert(OverlapKey)
        .values(
            id=new_id(),
            agreement_id=agreement.id,
            key_epoch=agreement.key_epoch,
            hmac_key=overlap_hmac.new_key(),
            psi_key=overlap_psi.new_key(),
        )
        .on_conflict_do_nothing(index_elements=["agreement_id", "key_epoch"])
    )
    key = await session.scalar(
        select(OverlapKey).where(
            OverlapKey.agreement_id == agreement.id, OverlapKey.key_epoch == agreement.key_epoch
        )
    )
    assert key is not None
    return key


async def partner_key(
    session: AsyncSession, principal: Principal, agreement_id: uuid.UUID, now: datetime
) -> tuple[int, bytes]:
    """The epoch and HMAC key a party hashes its own list with before
    uploading it (the platform then never sees its identifiers)."""
    _, partner_id = partner_of(principal)
    agreement = await agreement_in_force(session, agreement_id, partner_id, now)
    key = await epoch_key(session, agreement)
    await audit.record(
        session, principal, "overlap.key_fetched", f"data-sharing:{agreement.id}",
        {"key_epoch": key.key_epoch},
    )  # fmt: skip
    return key.key_epoch, key.hmac_key


async def rotate_key(
    session: AsyncSession, principal: Principal, agreement_id: uuid.UUID, now: datetime
) -> int:
    """A new epoch with a new key: lists uploaded before stop matching."""
    _, partner_id = partner_of(principal)
    agreement = await agreement_in_force(session, agreement_id, partner_id, now)
    await session.execute(
        text(
            "UPDATE data_sharing_agreements SET key_epoch = key_epoch + 1, updated_at = now()"
            " WHERE id = :id"
        ),
        {"id": agreement.id},
    )
    await session.refresh(agreement)
    await epoch_key(session, agreement)
    await audit.record(
        session, principal, "overlap.key_rotated", f"data-sharing:{agreement.id}",
        {"key_epoch": agreement.key_epoch},
    )  # fmt: skip
    return agreement.key_epoch


# -- hashing and storing a list ----------------------------------------------


def _segment_codes(records: Sequence[ListRecord]) -> tuple[bytes, list[str]]:
    if all(record.segment is None for record in records):
        return NO_SEGMENT.to_bytes(2, "big") * len(records), []
    labels: dict[str, int] = {}
    codes = bytearray()
    for record in records:
        if record.segment is None:
            codes += NO_SEGMENT.to_bytes(2, "big")
            continue
        code = labels.setdefault(record.segment, len(labels))
        if code >= MAX_SEGMENTS:
            raise InvalidOverlapList(f"a list has at most {MAX_SEGMENTS} segments")
        codes += code.to_bytes(2, "big")
    return bytes(codes), list(labels)


def hash_list(
    key: bytes,
    kind: IdentifierKind,
    records: Sequence[ListRecord],
    *,
    hashed_by: HashedBy,
    default_region: str | None = None,
) -> HashedList:
    """The list as keyed hashes: normalised and hashed with ``key`` by the
    platform, or the partner's own digests checked for form."""
    codes, segments = _segment_codes(records)
    if hashed_by is HashedBy.PARTNER:
        blob = bytearray()
        for position, record in enumerate(records):
            if not _DIGEST_HEX.match(record.identifier):
                raise InvalidOverlapList(
                    f"record {position}: a partner-hashed identifier is 64 lower-case hex"
                    " digits (HMAC-SHA256 of the normalised identifier)"
                )
            blob += bytes.fromhex(record.identifier)
        digests = bytes(blob)
        unmatchable = sum(
            1 for i in range(0, len(digests), 32) if digests[i : i + 32] == overlap_hmac.UNMATCHABLE
        )
        return HashedList(digests, codes, segments, unmatchable)
    normalise = normaliser(kind, default_region)
    normalised = [normalise(record.identifier) for record in records]
    digests = overlap_hmac.keyed_digests(key, normalised)
    unmatchable = normalised.count(None)
    return HashedList(digests, codes, segments, unmatchable)


def _allowed_fields(
    agreement: DataSharingAgreement, records: Sequence[ListRecord]
) -> list[tuple[int, dict[str, Any]]]:
    allowed = set(agreement.fields)
    kept: list[tuple[int, dict[str, Any]]] = []
    for position, record in enumerate(records):
        if not record.fields:
            continue
        unknown = sorted(set(record.fields) - allowed)
        if unknown:
            raise InvalidOverlapList(
                f"record {position}: the agreement does not share {', '.join(unknown)}"
            )
        kept.append((position, dict(record.fields)))
    return kept


def fingerprint(hashed: HashedList) -> bytes:
    digest = hashlib.sha256(hashed.digests)
    digest.update(hashed.segment_codes)
    digest.update(msgspec.json.encode(hashed.segments))
    return digest.digest()


async def store_list(
    session: AsyncSession,
    agreement: DataSharingAgreement,
    partner_id: uuid.UUID,
    key_epoch: int,
    kind: IdentifierKind,
    hashed: HashedList,
    *,
    hashed_by: HashedBy,
    fields: Sequence[tuple[int, dict[str, Any]]] = (),
) -> OverlapUpload:
    """Write an upload's row, then its digests and fields by COPY, in the
    session's transaction."""
    upload = OverlapUpload(
        id=new_id(),
        program_id=agreement.program_id,
        agreement_id=agreement.id,
        partner_id=partner_id,
        key_epoch=key_epoch,
        identifier_kind=kind.value,
        hashed_by=hashed_by.value,
        records=len(hashed.digests) // 32,
        unmatchable=hashed.unmatchable,
        segments=hashed.segments,
        fingerprint=fingerprint(hashed),
    )
    session.add(upload)
    await session.flush()
    chunks = [
        (
            upload.id,
            n,
            hashed.digests[start * 32 : (start + CHUNK_RECORDS) * 32],
            hashed.segment_codes[start * 2 : (start + CHUNK_RECORDS) * 2],
        )
        for n, start in enumerate(range(0, len(hashed.digests) // 32, CHUNK_RECORDS))
    ]
    connection = await session_connection(session)
    await connection.copy_records_to_table(
        overlap_upload_chunks.name,
        records=chunks,
        columns=["upload_id", "chunk_no", "digests", "segment_codes"],
    )
    if fields:
        await session.execute(
            overlap_record_fields.insert(),
            [{"upload_id": upload.id, "position": p, "fields": f} for p, f in fields],
        )
    return upload


async def upload_list(
    session: AsyncSession,
    principal: Principal,
    agreement_id: uuid.UUID,
    kind: IdentifierKind,
    records: Sequence[ListRecord],
    *,
    hashed_by: HashedBy,
    now: datetime,
    default_region: str | None = None,
    key_epoch: int | None = None,
) -> OverlapUpload:
    """A party's list for the agreement, under its current key epoch (a
    partner-hashed list names the epoch it hashed under: another is
    refused, its digests would match nothing)."""
    _, partner_id = partner_of(principal)
    agreement = await agreement_in_force(session, agreement_id, partner_id, now)
    if key_epoch is not None and key_epoch != agreement.key_epoch:
        raise InvalidOverlapList(
            f"the list was hashed under epoch {key_epoch}; the agreement's key is of epoch"
            f" {agreement.key_epoch}: fetch the key again"
        )
    fields = _allowed_fields(agreement, records)
    key = await epoch_key(session, agreement)
    hashed = hash_list(
        key.hmac_key, kind, records, hashed_by=hashed_by, default_region=default_region
    )
    upload = await store_list(
        session, agreement, partner_id, key.key_epoch, kind, hashed,
        hashed_by=hashed_by, fields=fields,
    )  # fmt: skip
    await audit.record(
        session, principal, "overlap.list_uploaded", f"overlap-upload:{upload.id}",
        {"agreement": str(agreement.id), "records": upload.records, "hashed_by": hashed_by.value},
    )  # fmt: skip
    return upload


# -- reading lists -----------------------------------------------------------


async def load_list(session: AsyncSession, upload_id: uuid.UUID) -> tuple[bytes, bytes]:
    rows = (
        await session.execute(
            select(overlap_upload_chunks.c.digests, overlap_upload_chunks.c.segment_codes)
            .where(overlap_upload_chunks.c.upload_id == upload_id)
            .order_by(overlap_upload_chunks.c.chunk_no)
        )
    ).all()
    return b"".join(r.digests for r in rows), b"".join(r.segment_codes for r in rows)


def segment_array(codes: bytes) -> array[int]:
    """A list's segment codes as integers (stored big endian)."""
    values = array("H")
    values.frombytes(codes)
    if sys.byteorder == "little":
        values.byteswap()
    return values


def population(
    digests: bytes, codes: array[int], segments: list[str], segment_filter: list[str] | None
) -> set[bytes]:
    """The distinct matchable digests of a list, of the filter's segments."""
    split = overlap_hmac.split_digests(digests)
    if segment_filter is None:
        found = set(split)
    else:
        wanted = {segments.index(s) for s in segment_filter if s in segments}
        found = {d for d, code in zip(split, codes, strict=True) if code in wanted}
    found.discard(overlap_hmac.UNMATCHABLE)
    return found


async def latest_upload(
    session: AsyncSession, agreement: DataSharingAgreement, partner_id: uuid.UUID, *, mine: bool
) -> OverlapUpload:
    """The partner's latest list under the agreement's current key epoch."""
    upload = await session.scalar(
        select(OverlapUpload)
        .where(
            OverlapUpload.agreement_id == agreement.id,
            OverlapUpload.partner_id == partner_id,
            OverlapUpload.key_epoch == agreement.key_epoch,
        )
        .order_by(OverlapUpload.id.desc())
        .limit(1)
    )
    if upload is None:
        whose = "you have" if mine else "the other partner has"
        raise OverlapListMissing(
            f"{whose} no list under the agreement's key epoch {agreement.key_epoch}"
        )
    return upload


async def get_upload(
    session: AsyncSession, principal: Principal, agreement_id: uuid.UUID, upload_id: uuid.UUID
) -> OverlapUpload:
    """One of the caller's own uploads (another party's is not found)."""
    _, partner_id = partner_of(principal)
    upload = await session.scalar(
        select(OverlapUpload).where(
            OverlapUpload.id == upload_id,
            OverlapUpload.agreement_id == agreement_id,
            OverlapUpload.partner_id == partner_id,
        )
    )
    if upload is None:
        raise OverlapUploadNotFound(f"no overlap upload {upload_id}")
    return upload


def records_of(request: UploadRequest) -> list[ListRecord]:
    """The records of an API upload, fields as plain data."""
    return [
        ListRecord(
            identifier=r.identifier,
            segment=r.segment,
            fields=msgspec.to_builtins(r.fields) if r.fields is not None else None,
        )
        for r in request.records
    ]


def upload_view(upload: OverlapUpload) -> UploadView:
    return UploadView(
        id=upload.id,
        agreement_id=upload.agreement_id,
        key_epoch=upload.key_epoch,
        identifier_kind=upload.identifier_kind,
        hashed_by=upload.hashed_by,
        records=upload.records,
        unmatchable=upload.unmatchable,
        segments=upload.segments,
        created_at=upload.created_at,
    )
