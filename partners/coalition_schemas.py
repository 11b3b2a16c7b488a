"""The partner API's shapes of issuances and holds (points issued by a
partner, points accepted at its checkout)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from ledger.bounds import ExternalId, PositiveBigInt
from partners.contract_schemas import Currency

_SLUG = r"^[a-z0-9][a-z0-9-]{0,63}$"

MemberId = Annotated[
    ExternalId,
    msgspec.Meta(description="The member's id in the program (give this or `identifier`)."),
]
Identifier = Annotated[
    ExternalId,
    msgspec.Meta(
        description="The identifier the member linked at the partner, e.g. its card number"
        " (give this or `member`)."
    ),
]
CompanySlug = Annotated[
    str,
    msgspec.Meta(
        pattern=_SLUG,
        description="The company of the group that acts (a store), within the credential's"
        " reach; left out: the credential's own company.",
    ),
]


def _one_member(member: str | None, identifier: str | None) -> None:
    if (member is None) == (identifier is None):
        raise ValueError("give exactly one of member and identifier")


class IssuanceRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    transaction_id: Annotated[
        ExternalId,
        msgspec.Meta(
            description="The partner's id of the transaction, its idempotency key (unique per"
            " contract): sent again with the same fields it answers the first issuance."
        ),
    ]
    member: MemberId | None = None
    identifier: Identifier | None = None
    points: Annotated[
        PositiveBigInt | None,
        msgspec.Meta(description="Points to issue (give this or `purchase_amount_minor`)."),
    ] = None
    purchase_amount_minor: Annotated[
        PositiveBigInt | None,
        msgspec.Meta(
            description="What the member spent, in minor units of `currency`: the program's"
            " earn rules in force price it (base rate, minimum spend, tier multiplier)."
        ),
    ] = None
    currency: Annotated[
        Currency | None,
        msgspec.Meta(description="The purchase's currency: the program's, required with it."),
    ] = None
    company: CompanySlug | None = None

    def __post_init__(self) -> None:
        _one_member(self.member, self.identifier)
        if (self.points is None) == (self.purchase_amount_minor is None):
            raise ValueError("give exactly one of points and purchase_amount_minor")
        if (self.currency is None) != (self.purchase_amount_minor is None):
            raise ValueError("currency goes with purchase_amount_minor, and only with it")


class IssuanceView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The issuance's id.")]
    transaction_id: Annotated[
        str, msgspec.Meta(description="The partner's id of the transaction, as sent.")
    ]
    member: Annotated[
        str | None, msgspec.Meta(description="The member's id, when the request gave it.")
    ]
    identifier: Annotated[
        str | None, msgspec.Meta(description="The member's identifier, when the request gave it.")
    ]
    points: Annotated[
        int, msgspec.Meta(description="Points issued; 0 when the purchase earned none.")
    ]
    purchase_amount_minor: Annotated[
        int | None,
        msgspec.Meta(description="The purchase priced, in minor units, when the request gave one."),
    ]
    currency: Annotated[
        str | None, msgspec.Meta(description="The purchase's currency (ISO 4217), when given.")
    ]
    company: Annotated[str, msgspec.Meta(description="The company that issued them.")]
    partner: Annotated[
        str, msgspec.Meta(description="The contract holder whose account they came from.")
    ]
    contract_version: Annotated[
        int, msgspec.Meta(description="The contract version in force when they were issued.")
    ]
    rule_version: Annotated[
        int | None, msgspec.Meta(description="The earn rules that priced the purchase, if any.")
    ]
    issued_at: Annotated[
        datetime, msgspec.Meta(description="When the issuance was recorded (UTC).")
    ]
    replayed: Annotated[
        bool,
        msgspec.Meta(description="True when this transaction id was issued before: nothing moved."),
    ] = False


class IssuancePage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[IssuanceView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class CheckoutHold(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    checkout_id: Annotated[
        ExternalId,
        msgspec.Meta(
            description="The partner's id of the checkout, the hold's idempotency key (unique"
            " per contract)."
        ),
    ]
    member: MemberId | None = None
    identifier: Identifier | None = None
    points: Annotated[PositiveBigInt, msgspec.Meta(description="Points to reserve.")]
    timeout_seconds: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=86_400,
            description="Seconds the hold lasts unless captured or released; then the points"
            " go back to the member.",
        ),
    ] = 900
    company: CompanySlug | None = None

    def __post_init__(self) -> None:
        _one_member(self.member, self.identifier)


class CaptureRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    points: Annotated[
        PositiveBigInt | None,
        msgspec.Meta(description="Points to take, at most those held; left out: all of them."),
    ] = None


class RefundRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    refund_id: Annotated[
        ExternalId,
        msgspec.Meta(description="The partner's id of the refund, its idempotency key."),
    ]
    points: Annotated[
        PositiveBigInt,
        msgspec.Meta(description="Points to give back: at most those captured, less refunds."),
    ]


class PartnerHoldView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The hold's id.")]
    checkout_id: Annotated[
        str, msgspec.Meta(description="The partner's id of the checkout, as sent.")
    ]
    member: Annotated[
        str | None, msgspec.Meta(description="The member's id, when the request gave it.")
    ]
    identifier: Annotated[
        str | None,
        msgspec.Meta(
            description="The member's identifier at the partner, when the request gave it."
        ),
    ]
    points: Annotated[int, msgspec.Meta(description="Points reserved.")]
    status: Annotated[
        str,
        msgspec.Meta(
            description="`held`; then `captured`, `released`, or `expired` (not resolved by"
            " `expires_at`: the points went back)."
        ),
    ]
    captured_points: Annotated[
        int, msgspec.Meta(description="Points taken by the capture (0 before it).")
    ]
    refunded_points: Annotated[
        int, msgspec.Meta(description="Points given back to the member by refunds since.")
    ]
    expires_at: Annotated[
        datetime, msgspec.Meta(description="When an unresolved hold gives the points back (UTC).")
    ]
    company: Annotated[
        str, msgspec.Meta(description="The company at whose checkout the points are held.")
    ]
    partner: Annotated[
        str, msgspec.Meta(description="The contract holder whose acceptance account takes them.")
    ]
    contract_version: Annotated[
        int, msgspec.Meta(description="The contract version in force when they were held.")
    ]
    replayed: Annotated[
        bool, msgspec.Meta(description="True when the request repeats one already done.")
    ] = False


class PartnerHoldPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[PartnerHoldView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class RefundView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The refund's id.")]
    refund_id: Annotated[str, msgspec.Meta(description="The partner's id of the refund, as sent.")]
    points: Annotated[int, msgspec.Meta(description="Points given back to the member.")]
    hold: Annotated[PartnerHoldView, msgspec.Meta(description="The hold after the refund.")]
    replayed: Annotated[
        bool, msgspec.Meta(description="True when the request repeats one already done.")
    ] = False
