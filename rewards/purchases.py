"""What a purchase and a return are, as the doors (HTTP, the intake, Stripe)
send them and as the use cases answer: the vocabulary shared by recording
(``rewards.purchase_recording``), settlement (``rewards.settlement``) and
returns (``rewards.returns``).

The messages live apart from the use cases because every one of those
modules and every door needs them, and none of the use cases owns them:
here they are where a caller looks for "purchases" and importing them pulls
in no use case.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from ledger.bounds import ExternalId, NonNegativeBigInt, PositiveBigInt, check_moment
from rewards.rules import Item, Moment

OrderId = ExternalId
#: Most items one purchase lists (they are stored with it, as JSON).
ITEMS_MAX = 1000


class PurchaseEvent(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    member: ExternalId
    order_id: OrderId
    amount_minor: Annotated[
        NonNegativeBigInt,
        msgspec.Meta(
            description="What the member paid, in minor units of the currency (cents for USD)."
        ),
    ]
    currency: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Z]{3}$",
            description="ISO 4217 code of the purchase's currency: the program's own.",
        ),
    ]
    occurred_at: Moment
    items: Annotated[
        tuple[Item, ...],
        msgspec.Meta(
            max_length=ITEMS_MAX,
            description="The basket's lines, for rules by SKU or category (optional).",
        ),
    ] = ()

    def __post_init__(self) -> None:
        check_moment("occurred_at", self.occurred_at)


class ReturnEvent(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    return_id: OrderId
    amount_minor: Annotated[
        PositiveBigInt,
        msgspec.Meta(
            description="The amount returned, in minor units: its share of the points is reversed."
        ),
    ]


class PurchaseOutcome(msgspec.Struct, kw_only=True, frozen=True):
    order_id: Annotated[
        str, msgspec.Meta(description="The order id the purchase was recorded under.")
    ]
    points: Annotated[
        int, msgspec.Meta(description="Points earned, pending until the return window ends.")
    ]
    rule_version: (
        Annotated[
            int, msgspec.Meta(description="The published rule version that priced the purchase.")
        ]
        | None
    )
    matures_at: Annotated[
        datetime,
        msgspec.Meta(description="When the return window ends and the points become available."),
    ]
    replayed: Annotated[
        bool, msgspec.Meta(description="True when this order id was recorded before (a replay).")
    ]


class ReturnOutcome(msgspec.Struct, kw_only=True, frozen=True):
    return_id: Annotated[
        str, msgspec.Meta(description="The return id the return was recorded under.")
    ]
    points_reversed: Annotated[
        int, msgspec.Meta(description="Points taken back for the returned amount.")
    ]
    debt_points: Annotated[
        int,
        msgspec.Meta(
            description="Of those, points the wallet lacked, recorded as the member's debt."
        ),
    ]
    replayed: Annotated[
        bool, msgspec.Meta(description="True when this return id was recorded before (a replay).")
    ]
