"""Ledger codes of the rewards domain, and the ledger ids it derives.

Ids of accounts and transfers are derived from business keys (UUIDv5), so a
retried use case makes the same ledger call and the ledger answers ``exists``
instead of moving points twice.
"""

from __future__ import annotations

import enum
import uuid

_NAMESPACE = uuid.UUID("2f6a1d3e-8c4b-4e7a-9b0d-5c1e7f3a9d42")


class AccountCode(enum.IntEnum):
    ISSUANCE = 1
    REDEMPTION = 2
    BREAKAGE = 3
    MEMBER_WALLET = 10
    MEMBER_DEBT = 11


class TransferCode(enum.IntEnum):
    EARN = 1
    RETURN_REVERSAL = 2
    DEBT = 3
    DEBT_REPAYMENT = 4
    REDEMPTION = 5
    EXPIRY = 6
    ADJUSTMENT = 7
    GIFT = 8
    EVENT = 9


def derived_id(program_id: uuid.UUID, *key: str) -> uuid.UUID:
    """The id of a ledger record identified by ``key`` within a program."""
    return uuid.uuid5(_NAMESPACE, f"{program_id}:" + ":".join(key))
