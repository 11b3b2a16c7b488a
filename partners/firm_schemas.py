"""What an operator sends and reads of a partner firm (``partners.firms``):
bounded as the columns that store them, so nothing invalid reaches SQL and
the OpenAPI document shows every bound."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from ledger.bounds import NO_NUL, NonEmpty, Text50, Text200, Text500
from partners.models import Partner, PartnerStatus, PartnerStatusChange
from rewards.programs import Currency, Slug

#: How deep a group may be: a top-level firm and four levels of member
#: companies below it (a group, its regions, their franchisees, stores...).
DEPTH_MAX = 5
#: Contacts a firm keeps (who to reach for billing, operations, marketing...).
CONTACTS_MAX = 20

EMAIL_PATTERN = r"^[^@\s\x00]{1,64}@[^@\s\x00]+\.[^@\s\x00]+$"
Email = Annotated[
    str,
    msgspec.Meta(
        max_length=320,
        pattern=EMAIL_PATTERN,
        description="An e-mail address (a local part, @, and a domain with a dot), at most"
        " 320 characters.",
        examples=["ops@fuelandgo.example"],
    ),
]
Phone = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^\+?[0-9][0-9 ().-]{2,30}$",
        description="A phone number: digits, spaces, ( ) . - and a leading +, 3 to 32 characters.",
        examples=["+27 21 555 0100"],
    ),
]
Country = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Z]{2}$",
        description="Where the firm is registered, ISO 3166-1 alpha-2 (e.g. ZA).",
        examples=["ZA"],
    ),
]
PartnerCurrency = Annotated[
    Currency,
    msgspec.Meta(
        description="The currency its contracts and statements are in, ISO 4217 (e.g. ZAR).",
        examples=["ZAR"],
    ),
]
Name = Annotated[
    Text200, NonEmpty, msgspec.Meta(description="The firm's name, for people to read.")
]
LegalName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=300,
        pattern=NO_NUL,
        description="The firm's registered legal name (on statements).",
    ),
]
PartnerSlug = Annotated[
    Slug,
    msgspec.Meta(
        description="The partner's id in paths, unique in the program: lowercase letters,"
        " digits and hyphens, starting with a letter or digit, at most 64 characters.",
        examples=["fuel-and-go"],
    ),
]
ParentSlug = Annotated[
    Slug,
    msgspec.Meta(
        description="The slug of the firm this one is a member company of (a store of a"
        " group), in the same program; a group is at most"
        f" {DEPTH_MAX} levels deep, and never a cycle.",
        examples=["fuel-and-go-group"],
    ),
]
TierCode = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,49}$",
        description="The partner tier's code (the program's grading of its partners, e.g."
        " gold): lowercase letters, digits, _ and -, at most 50 characters.",
        examples=["gold"],
    ),
]
Reason = Annotated[Text500, msgspec.Meta(description="Why, for the history (at most 500).")]

STATUS_RULE = (
    "`invited` (not yet trading), `active`, `suspended` (its access is refused until"
    " active again) or `offboarded` (final: a firm that comes back is a new partner)."
)


class Contact(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: Annotated[Text200, NonEmpty, msgspec.Meta(description="The person's name.")]
    email: Email
    phone: Phone | None = None
    role: (
        Annotated[
            Text50,
            NonEmpty,
            msgspec.Meta(description="What to reach them for (e.g. billing, operations)."),
        ]
        | None
    ) = None


Contacts = Annotated[
    list[Contact],
    msgspec.Meta(
        max_length=CONTACTS_MAX,
        description=f"Who to reach at the firm for what, at most {CONTACTS_MAX}.",
    ),
]


class PartnerSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A partner firm to create."""

    slug: PartnerSlug
    name: Name
    legal_name: LegalName
    country: Country
    #: None: the program's own currency.
    currency: (
        Annotated[
            PartnerCurrency,
            msgspec.Meta(description="Left out: the program's currency."),
        ]
        | None
    ) = None
    contacts: Contacts = []
    tier: TierCode | None = None
    parent: ParentSlug | None = None
    status: Annotated[
        Literal["invited", "active"],
        msgspec.Meta(
            description="Its status to start with: `invited` (not yet trading) or `active`."
        ),
    ] = "invited"


class PartnerChange(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The profile fields to change: each one given is set, each one left
    out is kept; `tier` and `parent` may be set to null (no tier; a
    top-level firm)."""

    name: Name | msgspec.UnsetType = msgspec.UNSET
    legal_name: LegalName | msgspec.UnsetType = msgspec.UNSET
    country: Country | msgspec.UnsetType = msgspec.UNSET
    currency: PartnerCurrency | msgspec.UnsetType = msgspec.UNSET
    contacts: Contacts | msgspec.UnsetType = msgspec.UNSET
    tier: TierCode | msgspec.UnsetType | None = msgspec.UNSET
    parent: ParentSlug | msgspec.UnsetType | None = msgspec.UNSET


class StatusMove(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    status: Annotated[
        PartnerStatus,
        msgspec.Meta(
            description="The status to move to: invited -> active or offboarded; active ->"
            " suspended or offboarded; suspended -> active or offboarded. The status the"
            " firm has already: nothing changes."
        ),
    ]
    reason: Reason | None = None


class PartnerView(msgspec.Struct, kw_only=True, frozen=True):
    slug: Annotated[str, msgspec.Meta(description="The partner's id in paths.")]
    name: Annotated[str, msgspec.Meta(description="The firm's name.")]
    legal_name: Annotated[str, msgspec.Meta(description="The firm's registered legal name.")]
    country: Annotated[str, msgspec.Meta(description="ISO 3166-1 alpha-2.")]
    currency: Annotated[str, msgspec.Meta(description="ISO 4217.")]
    contacts: Annotated[list[Contact], msgspec.Meta(description="Who to reach for what.")]
    tier: Annotated[str | None, msgspec.Meta(description="The partner tier's code, if any.")]
    status: Annotated[str, msgspec.Meta(description=STATUS_RULE)]
    status_changed_at: Annotated[
        datetime, msgspec.Meta(description="When the firm took its status.")
    ]
    parent: Annotated[
        str | None,
        msgspec.Meta(description="The slug of the firm it is a member company of; null: none."),
    ]
    created_at: Annotated[datetime, msgspec.Meta(description="When the partner was created.")]
    updated_at: Annotated[datetime, msgspec.Meta(description="When it last changed.")]

    @classmethod
    def of(cls, partner: Partner, parent: str | None) -> PartnerView:
        return cls(
            slug=partner.slug,
            name=partner.name,
            legal_name=partner.legal_name,
            country=partner.country,
            currency=partner.currency,
            contacts=msgspec.convert(partner.contacts, list[Contact]),
            tier=partner.tier,
            status=partner.status,
            status_changed_at=partner.status_changed_at,
            parent=parent,
            created_at=partner.created_at,
            updated_at=partner.updated_at,
        )


class StatusChangeView(msgspec.Struct, kw_only=True, frozen=True):
    """One move of a partner's status."""

    id: Annotated[uuid.UUID, msgspec.Meta(description="The move's id.")]
    from_status: Annotated[
        str | None, msgspec.Meta(description="The status before; null for the creation.")
    ]
    to_status: Annotated[str, msgspec.Meta(description="The status after.")]
    reason: Annotated[str | None, msgspec.Meta(description="Why, if said.")]
    actor: Annotated[str, msgspec.Meta(description="Who moved it (`admin`, `key:<name>`, ...).")]
    at: Annotated[datetime, msgspec.Meta(description="When.")]

    @classmethod
    def of(cls, change: PartnerStatusChange) -> StatusChangeView:
        return cls(
            id=change.id,
            from_status=change.from_status,
            to_status=change.to_status,
            reason=change.reason,
            actor=change.actor,
            at=change.at,
        )


def stored_contacts(contacts: list[Contact]) -> list[dict[str, Any]]:
    """The contacts as the JSONB column keeps them (no nulls stored)."""
    return [{k: v for k, v in msgspec.structs.asdict(c).items() if v is not None} for c in contacts]
