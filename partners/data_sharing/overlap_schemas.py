"""What the overlap-matching API takes and answers (msgspec)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from ledger.bounds import NO_NUL, Text320

#: Records of one upload through the API (larger lists: several agreements'
#: worth of uploads are not merged; see docs/overlap-matching.md).
MAX_UPLOAD_RECORDS = 100_000

Segment = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NO_NUL)]


class RecordFields(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, omit_defaults=True
):
    """A record's fields the other partner may get when it matches (only
    those the agreement shares are accepted; the platform keeps nothing
    else of the record)."""

    email: (
        Annotated[
            Text320,
            msgspec.Meta(
                description="The record's e-mail address as the partner holds it (passed on"
                " unchanged, not normalised). Accepted only if the agreement shares `email`;"
                " null or left out: none given."
            ),
        ]
        | None
    ) = None
    phone: (
        Annotated[
            Text320,
            msgspec.Meta(
                description="The record's phone number as the partner holds it (passed on"
                " unchanged, not normalised). Accepted only if the agreement shares `phone`;"
                " null or left out: none given."
            ),
        ]
        | None
    ) = None
    tier: (
        Annotated[
            Text320,
            msgspec.Meta(
                description="The record's tier or status at the partner, in the partner's own"
                " words (e.g. `gold`). Accepted only if the agreement shares `tier`; null or"
                " left out: none given."
            ),
        ]
        | None
    ) = None
    member_since: (
        Annotated[
            Text320,
            msgspec.Meta(
                description="Since when the record's customer has been the partner's, as text"
                " in the partner's own format (passed on unchanged, not read as a date)."
                " Accepted only if the agreement shares `member_since`; null or left out: none"
                " given."
            ),
        ]
        | None
    ) = None
    partner_identifier: (
        Annotated[
            Text320,
            msgspec.Meta(
                description="The record's identifier at the uploading partner (e.g. its card or"
                " account number). Accepted only if the agreement shares `partner_identifier`;"
                " null or left out: none given."
            ),
        ]
        | None
    ) = None


class UploadRecord(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    identifier: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=320,
            pattern=NO_NUL,
            description="The identifier as the partner holds it (hashed_by platform: normalised"
            " and hashed by the platform), or the 64 lower-case hex digits of HMAC-SHA256 of"
            " its normalised form under the agreement's key (hashed_by partner).",
        ),
    ]
    segment: (
        Annotated[
            Segment, msgspec.Meta(description="The record's segment label, for counts by segment.")
        ]
        | None
    ) = None
    fields: (
        Annotated[
            RecordFields, msgspec.Meta(description="Fields the other partner may get on a match.")
        ]
        | None
    ) = None


class UploadRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    identifier_kind: Annotated[
        Literal["email", "phone", "domain"],
        msgspec.Meta(
            description=(
                "What the identifiers are: e-mail addresses, phone numbers or company domains."
            )
        ),
    ]
    hashed_by: Annotated[
        Literal["platform", "partner"],
        msgspec.Meta(
            description="platform: identifiers in the clear, normalised and hashed here, only"
            " the hashes kept; partner: already HMAC-SHA256 digests made with the key of"
            " `GET .../overlap-key` (the platform never sees the identifiers)."
        ),
    ] = "platform"
    key_epoch: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=2_147_483_647,
                description=(
                    "hashed_by partner: the key epoch the digests were made under (another than "
                    "the agreement's current one: 422)."
                ),
            ),
        ]
        | None
    ) = None
    default_region: (
        Annotated[
            str,
            msgspec.Meta(
                pattern=r"^[A-Z]{2}$",
                description=(
                    "Phone numbers without a country code are read in this ISO 3166 region."
                ),
            ),
        ]
        | None
    ) = None
    records: Annotated[
        list[UploadRecord],
        msgspec.Meta(
            max_length=MAX_UPLOAD_RECORDS,
            description=(
                "The list, in the partner's order: a record is known by its position (0-based)."
            ),
        ),
    ]


class UploadView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[uuid.UUID, msgspec.Meta(description="The upload's id.")]
    agreement_id: Annotated[uuid.UUID, msgspec.Meta(description="The agreement it is for.")]
    key_epoch: Annotated[int, msgspec.Meta(description="The key epoch it was hashed under.")]
    identifier_kind: Annotated[str, msgspec.Meta(description="email, phone or domain.")]
    hashed_by: Annotated[str, msgspec.Meta(description="platform or partner.")]
    records: Annotated[int, msgspec.Meta(description="Records in the list.")]
    unmatchable: Annotated[
        int,
        msgspec.Meta(description="Records whose identifier did not normalise: they match nothing."),
    ]
    segments: Annotated[list[str], msgspec.Meta(description="The segment labels used.")]
    created_at: Annotated[datetime, msgspec.Meta(description="When it was uploaded.")]


class OverlapKeyView(msgspec.Struct, kw_only=True, frozen=True):
    key_epoch: Annotated[int, msgspec.Meta(description="The agreement's current key epoch.")]
    hmac_key: Annotated[
        str,
        msgspec.Meta(
            description=(
                "The epoch's HMAC-SHA256 key, 64 hex digits: hash each normalised identifier with "
                "it before a hashed_by partner upload. Secret: both partners of the agreement hold"
                " it."
            )
        ),
    ]


class RunRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    mode: Annotated[
        Literal["keyed_hash", "psi"],
        msgspec.Meta(
            description=(
                "keyed_hash: a join of the keyed hashes; psi: private set intersection (counts "
                "only)."
            )
        ),
    ] = "keyed_hash"
    result: Annotated[
        Literal["counts", "overlaps"],
        msgspec.Meta(
            description=(
                "counts: by segment of your list; overlaps: your matched records and the other's "
                "shared fields (keyed_hash only, and only if the agreement sends the other's data "
                "to you)."
            )
        ),
    ] = "counts"
    segments: (
        Annotated[
            list[Segment],
            msgspec.Meta(
                min_length=1, max_length=1000, description="Count only these segments of your list."
            ),
        ]
        | None
    ) = None


class Counts(msgspec.Struct, kw_only=True, frozen=True):
    total: Annotated[
        int | None,
        msgspec.Meta(
            description=(
                "Distinct matched identifiers; none when showing it would reveal a group below the"
                " minimum."
            )
        ),
    ]
    segments: Annotated[
        dict[str, int],
        msgspec.Meta(
            description=(
                "Matched identifiers by segment of your list; a segment below the minimum group "
                "size is absent."
            )
        ),
    ]
    unsegmented: Annotated[
        int | None,
        msgspec.Meta(
            description=(
                "Matched identifiers of your records without a segment; none if below the minimum."
            )
        ),
    ]
    suppressed_groups: Annotated[
        int, msgspec.Meta(description="Groups left out for being below the minimum group size.")
    ]


class Match(msgspec.Struct, kw_only=True, frozen=True):
    position: Annotated[
        int, msgspec.Meta(description="The matched record's position in your list.")
    ]
    fields: Annotated[
        dict[str, str],
        msgspec.Meta(description="The other partner's shared fields of its matching record."),
    ]


class Overlaps(msgspec.Struct, kw_only=True, frozen=True):
    records: Annotated[
        int | None,
        msgspec.Meta(
            description="Matched records; none (and no matches) below the minimum group size."
        ),
    ]
    matches: Annotated[
        list[Match], msgspec.Meta(description="Your matched records, in your list's order.")
    ]


class RunView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[uuid.UUID, msgspec.Meta(description="The run's id.")]
    agreement_id: Annotated[uuid.UUID, msgspec.Meta(description="The agreement it ran under.")]
    mode: Annotated[str, msgspec.Meta(description="keyed_hash or psi.")]
    result: Annotated[str, msgspec.Meta(description="counts or overlaps.")]
    key_epoch: Annotated[int, msgspec.Meta(description="The key epoch of both lists.")]
    own_upload_id: Annotated[uuid.UUID, msgspec.Meta(description="Your list matched.")]
    min_group_size: Annotated[
        int, msgspec.Meta(description="The agreement's minimum group size applied.")
    ]
    segments: Annotated[
        list[str] | None, msgspec.Meta(description="The segments counted; none: all.")
    ]
    counts: Annotated[Counts | None, msgspec.Meta(description="For result counts.")]
    overlaps: Annotated[Overlaps | None, msgspec.Meta(description="For result overlaps.")]
    created_at: Annotated[datetime, msgspec.Meta(description="When it ran.")]
