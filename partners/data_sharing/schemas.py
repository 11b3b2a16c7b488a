"""What the data-sharing API takes and answers (msgspec)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

#: The member fields an agreement may share, and a member consents to.
FieldName = Literal["email", "phone", "tier", "member_since", "partner_identifier"]

DirectionName = Literal["proposer_to_counterparty", "counterparty_to_proposer", "both"]


class SharingProposal(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    counterparty: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=64,
            description="The slug of the partner (of the same program) the agreement is with.",
        ),
    ]
    purpose: Annotated[
        str,
        msgspec.Meta(
            min_length=1,
            max_length=2000,
            description="What the data is for, as shown to both partners and to members.",
        ),
    ]
    direction: Annotated[
        DirectionName,
        msgspec.Meta(description="Whose members' data goes to whom."),
    ]
    fields: Annotated[
        list[FieldName],
        msgspec.Meta(
            min_length=1, max_length=5, description="The member fields shared (each once)."
        ),
    ]
    expires_at: Annotated[
        datetime,
        msgspec.Meta(
            tz=True,
            description="When the agreement ends (a time zone is required; within 3 years).",
        ),
    ]
    min_group_size: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=100000,
            description="The smallest group an aggregate under it (an overlap count) may describe.",
        ),
    ] = 50


class SharingAgreementView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[uuid.UUID, msgspec.Meta(description="The agreement's id.")]
    proposer: Annotated[str, msgspec.Meta(description="The slug of the partner that proposed it.")]
    counterparty: Annotated[str, msgspec.Meta(description="The slug of the other partner.")]
    purpose: Annotated[str, msgspec.Meta(description="What the data is for.")]
    direction: Annotated[DirectionName, msgspec.Meta(description="Whose data goes to whom.")]
    fields: Annotated[list[str], msgspec.Meta(description="The member fields shared.")]
    min_group_size: Annotated[
        int, msgspec.Meta(description="The smallest group an aggregate describes.")
    ]
    status: Annotated[
        str,
        msgspec.Meta(description="proposed (waiting for opt-ins), active, revoked or expired."),
    ]
    proposer_opted_in_at: Annotated[
        datetime | None, msgspec.Meta(description="When the proposer opted in.")
    ]
    counterparty_opted_in_at: Annotated[
        datetime | None, msgspec.Meta(description="When the counterparty opted in.")
    ]
    expires_at: Annotated[datetime, msgspec.Meta(description="When it ends.")]
    revoked_at: Annotated[datetime | None, msgspec.Meta(description="When it was revoked.")]
    revoked_by: Annotated[
        str | None, msgspec.Meta(description="The slug of the partner that revoked it.")
    ]
    created_at: Annotated[datetime, msgspec.Meta(description="When it was proposed.")]


class SharedMember(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One member's shared fields: only those the agreement names and the
    member consented to; a field absent was not shared."""

    member: Annotated[
        uuid.UUID, msgspec.Meta(description="The member's id (stable under the agreement).")
    ]
    email: Annotated[str | None, msgspec.Meta(description="The member's e-mail.")] = None
    phone: Annotated[str | None, msgspec.Meta(description="The member's phone.")] = None
    tier: Annotated[str | None, msgspec.Meta(description="The member's tier code.")] = None
    member_since: Annotated[
        datetime | None, msgspec.Meta(description="When the member enrolled.")
    ] = None
    partner_identifier: Annotated[
        str | None,
        msgspec.Meta(description="The member's identifier at the sharing partner (its card)."),
    ] = None


class DisclosureView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[uuid.UUID, msgspec.Meta(description="The log line's id.")]
    agreement_id: Annotated[uuid.UUID, msgspec.Meta(description="The agreement it was under.")]
    from_partner: Annotated[
        str, msgspec.Meta(description="The slug of the partner whose data it was.")
    ]
    to_partner: Annotated[str, msgspec.Meta(description="The slug of the partner it went to.")]
    member: Annotated[
        uuid.UUID | None, msgspec.Meta(description="The member it was about, if a member.")
    ]
    record_ref: Annotated[
        str | None, msgspec.Meta(description="The record it was about, if not a member.")
    ]
    fields: Annotated[list[str], msgspec.Meta(description="The fields that went out.")]
    channel: Annotated[
        str, msgspec.Meta(description="How: api (a read), webhook, export or overlap.")
    ]
    reference: Annotated[
        str | None, msgspec.Meta(description="What carried it: request, delivery or export id.")
    ]
    disclosed_at: Annotated[datetime, msgspec.Meta(description="When.")]


class MemberDisclosureView(msgspec.Struct, kw_only=True, frozen=True):
    """What was disclosed about the member, to whom, when and why."""

    id: Annotated[uuid.UUID, msgspec.Meta(description="The log line's id.")]
    from_partner: Annotated[
        str, msgspec.Meta(description="The name of the partner that shared it.")
    ]
    to_partner: Annotated[str, msgspec.Meta(description="The name of the partner it went to.")]
    purpose: Annotated[str, msgspec.Meta(description="The agreement's stated purpose.")]
    fields: Annotated[list[str], msgspec.Meta(description="The fields that went out.")]
    channel: Annotated[str, msgspec.Meta(description="How: api, webhook, export or overlap.")]
    disclosed_at: Annotated[datetime, msgspec.Meta(description="When.")]


class ConsentView(msgspec.Struct, kw_only=True, frozen=True):
    field: Annotated[str, msgspec.Meta(description="The member field.")]
    granted: Annotated[bool, msgspec.Meta(description="Whether the member consents to share it.")]
    granted_at: Annotated[datetime | None, msgspec.Meta(description="When it was last granted.")]
    withdrawn_at: Annotated[
        datetime | None, msgspec.Meta(description="When it was withdrawn, if it is.")
    ]


class ConsentChange(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    granted: Annotated[
        bool,
        msgspec.Meta(
            description="true: share this field under partners' agreements; false: never."
        ),
    ]


class SharingAgreementPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[SharingAgreementView], msgspec.Meta(description="The agreements.")]
    next_cursor: Annotated[
        str | None, msgspec.Meta(description="The cursor of the next page; none: the last page.")
    ]


class SharedMemberPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[
        list[SharedMember],
        msgspec.Meta(description="The shared members, by id: only fields they consented to."),
    ]
    next_cursor: Annotated[
        str | None, msgspec.Meta(description="The cursor of the next page; none: the last page.")
    ]


class DisclosurePage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[DisclosureView], msgspec.Meta(description="The log lines.")]
    next_cursor: Annotated[
        str | None, msgspec.Meta(description="The cursor of the next page; none: the last page.")
    ]


class MemberDisclosurePage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[
        list[MemberDisclosureView], msgspec.Meta(description="What was disclosed, newest first.")
    ]
    next_cursor: Annotated[
        str | None, msgspec.Meta(description="The cursor of the next page; none: the last page.")
    ]


class PushRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    members: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=200)]],
        msgspec.Meta(
            min_length=1,
            max_length=1000,
            description="The program member ids (external ids) of the partner's members to send.",
        ),
    ]


class PushResult(msgspec.Struct, kw_only=True, frozen=True):
    deliveries: Annotated[
        list[str],
        msgspec.Meta(description="The webhook deliveries made (webhook-id), one per endpoint."),
    ]
    members: Annotated[
        int,
        msgspec.Meta(
            description="Members whose data they carry (those named, linked at the partner,"
            " with a consented field of the agreement)."
        ),
    ]
