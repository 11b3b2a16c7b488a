"""What collection takes and answers: a partner's saved payment method, a
statement's collection, and the plain data a payment provider is handed
(the provider's own calls are in ``api.stripe``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec


class PaymentMethodRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    payment_method_id: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^pm_[A-Za-z0-9_]{1,200}$",
            description="The partner's saved Stripe PaymentMethod (`pm_...`), charged off"
            " session for its statements.",
        ),
    ]


class PaymentMethodView(msgspec.Struct, kw_only=True, frozen=True):
    partner: Annotated[str, msgspec.Meta(description="The partner's slug.")]
    payment_method_id: Annotated[
        str | None,
        msgspec.Meta(description="The saved Stripe PaymentMethod (`pm_...`); none if none."),
    ]
    has_customer: Annotated[
        bool,
        msgspec.Meta(
            description="Whether the partner has a customer at Stripe yet (made at the first"
            " collection)."
        ),
    ]


class CollectionView(msgspec.Struct, kw_only=True, frozen=True):
    number: Annotated[int, msgspec.Meta(description="The statement's number at the partner.")]
    status: Annotated[
        str, msgspec.Meta(description="pending, succeeded, failed (a retry is due) or given_up.")
    ]
    attempts: Annotated[int, msgspec.Meta(description="Payment attempts made so far, from 1.")]
    amount_due_minor: Annotated[
        int,
        msgspec.Meta(
            description="What the statement still bills, in minor units: its total less what"
            " was paid, never below 0."
        ),
    ]
    currency: Annotated[str, msgspec.Meta(description="The statement's ISO 4217 code.")]
    payment_intent: Annotated[
        str | None,
        msgspec.Meta(description="The Stripe PaymentIntent (`pi_...`) of the latest attempt."),
    ]
    failure: Annotated[
        str | None,
        msgspec.Meta(description="Why the latest attempt failed, as the provider said; none else."),
    ]
    next_attempt_at: Annotated[
        datetime | None,
        msgspec.Meta(
            description="When the next attempt is due after a failure (1, 3 then 7 days);"
            " none otherwise."
        ),
    ]


class ItemToBill(msgspec.Struct, kw_only=True, frozen=True):
    line: int
    kind: str
    points: int
    amount_minor: int


class CollectionPlan(msgspec.Struct, kw_only=True, frozen=True):
    """What a provider needs to ask for one attempt's payment."""

    program_slug: str
    partner_id: str
    partner_slug: str
    partner_name: str
    statement_id: str
    number: int
    attempt: int
    amount_minor: int
    currency: str
    payment_method_id: str
    #: The lines to put on the customer (empty once they are there).
    items: list[ItemToBill]
