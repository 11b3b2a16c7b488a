"""What buying a block of points takes and answers, and the plain data a
payment provider is handed (the provider's own calls are in ``api.stripe``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from ledger.bounds import PositiveBigInt
from partners.funding_purchase_models import PartnerFundingPurchase

#: Characters of a URL path segment that need no escaping, and ':'.
PURCHASE_ID_PATTERN = r"^[A-Za-z0-9._~:-]{1,200}$"

PurchaseId = Annotated[
    str,
    msgspec.Meta(
        pattern=PURCHASE_ID_PATTERN,
        description="The purchase's id the caller chose (1 to 200 of A-Z a-z 0-9 . _ ~ : -),"
        " unique per partner: the idempotency key; sent again with the same points it"
        " answers the first purchase.",
        examples=["block-2026-12-001"],
    ),
]


class FundingPurchaseRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A block of points to buy from the partner's saved payment method."""

    purchase_id: PurchaseId
    points: Annotated[
        PositiveBigInt,
        msgspec.Meta(
            description="Points the block holds; its price (points times the contract's"
            " issue price per point, rounded half-even to the minor unit) is 1 to"
            " 99,999,999 minor units."
        ),
    ]


class FundingPurchaseView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The purchase's record id.")]
    purchase_id: Annotated[str, msgspec.Meta(description="The caller's id of the purchase.")]
    partner: Annotated[str, msgspec.Meta(description="The partner's slug.")]
    points: Annotated[int, msgspec.Meta(description="Points the block holds.")]
    amount_minor: Annotated[
        int,
        msgspec.Meta(
            description="Its price in minor units of `currency`: points times the issue price"
            " per point of `contract_version`, rounded half-even once."
        ),
    ]
    currency: Annotated[str, msgspec.Meta(description="The contract's ISO 4217 code.")]
    contract_version: Annotated[
        int, msgspec.Meta(description="The contract version in force whose price it paid.")
    ]
    status: Annotated[
        str,
        msgspec.Meta(
            description="pending (the payment's outcome has not come), succeeded (the block"
            " is funded) or failed (nothing funded)."
        ),
    ]
    payment_intent: Annotated[
        str | None, msgspec.Meta(description="The Stripe PaymentIntent (`pi_...`); none yet.")
    ]
    failure: Annotated[
        str | None,
        msgspec.Meta(description="Why the payment failed, as the provider said; none else."),
    ]
    funding_id: Annotated[
        str | None,
        msgspec.Meta(
            description="The block recorded once paid (its reference is the PaymentIntent's"
            " id); none before."
        ),
    ]
    created_at: Annotated[datetime, msgspec.Meta(description="When it was asked for.")]
    completed_at: Annotated[
        datetime | None, msgspec.Meta(description="When the payment's outcome came; none yet.")
    ]
    replayed: Annotated[
        bool, msgspec.Meta(description="True when this purchase_id was asked for before.")
    ] = False

    @classmethod
    def of(
        cls, purchase: PartnerFundingPurchase, partner_slug: str, *, replayed: bool = False
    ) -> FundingPurchaseView:
        return cls(
            id=str(purchase.id),
            purchase_id=purchase.purchase_id,
            partner=partner_slug,
            points=purchase.points,
            amount_minor=purchase.amount_minor,
            currency=purchase.currency,
            contract_version=purchase.contract_version,
            status=purchase.status,
            payment_intent=purchase.payment_intent_id,
            failure=purchase.failure,
            funding_id=str(purchase.funding_id) if purchase.funding_id else None,
            created_at=purchase.created_at,
            completed_at=purchase.completed_at,
            replayed=replayed,
        )


class FundingPurchasePage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[FundingPurchaseView], msgspec.Meta(description="Newest purchase first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class FundingPurchasePlan(msgspec.Struct, kw_only=True, frozen=True):
    """What a provider needs to ask for a purchase's payment."""

    program_slug: str
    partner_id: str
    partner_slug: str
    partner_name: str
    #: The purchase's record id (what the provider's webhook names).
    record_id: str
    purchase_id: str
    points: int
    amount_minor: int
    currency: str
    payment_method_id: str
