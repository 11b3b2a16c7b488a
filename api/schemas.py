"""Request and response bodies of the HTTP API that the ledger does not define.

The ledger's own structs (``Transfer``, ``Account``, ``Ledger``...) are used
as they are; these wrap them in batches and results.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ledger.schemas import BATCH_MAX, Account, AccountOutcome, Transfer, TransferOutcome

#: Which clock ``as_of`` reads: when a transfer was recorded, or its business time.
Basis = Literal["recorded", "effective"]


class TransferBatch(msgspec.Struct, kw_only=True, frozen=True):
    transfers: Annotated[list[Transfer], msgspec.Meta(min_length=1, max_length=BATCH_MAX)]


class TransferResults(msgspec.Struct, kw_only=True, frozen=True):
    """One result per transfer, in the order sent. A failed transfer is a
    result, not an HTTP error: the others in the batch still apply."""

    results: list[TransferOutcome]


class AccountBatch(msgspec.Struct, kw_only=True, frozen=True):
    accounts: Annotated[list[Account], msgspec.Meta(min_length=1, max_length=BATCH_MAX)]


class AccountResults(msgspec.Struct, kw_only=True, frozen=True):
    """One result per account, in the order sent."""

    results: list[AccountOutcome]


class Health(msgspec.Struct, kw_only=True, frozen=True):
    status: Literal["ok"] = "ok"
