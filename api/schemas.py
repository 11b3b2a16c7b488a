"""Request and response bodies of the HTTP API that the ledger does not define.

The ledger's own structs (``Transfer``, ``Account``, ``Ledger``...) are used
as they are; these wrap them in batches and results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

import msgspec

from ledger.schemas import BATCH_MAX, Account, AccountOutcome, Transfer, TransferOutcome

#: A history cursor is a ledger timestamp (a bigint) in decimal: 19 digits.
HISTORY_CURSOR_MAX = 19

#: What the document says of a member's status (core.models.MemberStatus).
MEMBER_STATUS = (
    "`active`, `frozen` or `closed` (e.g. after an erasure): a frozen or closed member"
    " neither earns nor spends points."
)

#: Which clock ``as_of`` reads: when a transfer was recorded, or its business time.
Basis = Literal["recorded", "effective"]


class TransferBatch(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    transfers: Annotated[
        list[Transfer],
        msgspec.Meta(
            min_length=1,
            max_length=BATCH_MAX,
            description="The transfers, applied in this order; each succeeds or fails on its"
            " own, except linked ones (flag 1), which succeed or fail together.",
        ),
    ]

    def __post_init__(self) -> None:
        _check_items("transfers", self.transfers)


class TransferResults(msgspec.Struct, kw_only=True, frozen=True):
    """One result per transfer, in the order sent. A failed transfer is a
    result, not an HTTP error: the others in the batch still apply."""

    results: Annotated[
        list[TransferOutcome],
        msgspec.Meta(description="One result per transfer sent, in the same order."),
    ]


class AccountBatch(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    accounts: Annotated[
        list[Account],
        msgspec.Meta(
            min_length=1,
            max_length=BATCH_MAX,
            description="The accounts to open; each is opened or refused on its own.",
        ),
    ]

    def __post_init__(self) -> None:
        _check_items("accounts", self.accounts)


class AccountResults(msgspec.Struct, kw_only=True, frozen=True):
    """One result per account, in the order sent."""

    results: Annotated[
        list[AccountOutcome],
        msgspec.Meta(description="One result per account sent, in the same order."),
    ]


def _check_items(field: str, items: Sequence[Account | Transfer]) -> None:
    """The bounds ``Meta`` cannot declare, at the edge: a value the database
    cannot take would otherwise fail the whole micro-batch it travels in."""
    for n, item in enumerate(items):
        if fault := item.bounds_fault():
            raise ValueError(f"{field}[{n}].{fault[0]}: {fault[1]}")


class Health(msgspec.Struct, kw_only=True, frozen=True):
    status: Annotated[
        Literal["ok"],
        msgspec.Meta(description="`ok`: the server answers and its database is reachable."),
    ] = "ok"
