"""The one registry of ledger codes, and the ids derived from business keys.

Every kind of movement has a transfer code of its own, and every kind of
account an account code, so that finance reads liability by kind of
movement, by partner and by role straight from the ledger (transfers are
immutable: a code can never be corrected later). Each domain owns a range;
a new code goes into its domain's range and is never reused.

Ids of accounts and transfers are derived from business keys (UUIDv5), so a
retried use case makes the same ledger call and the ledger answers
``exists`` instead of moving points twice.
"""

from __future__ import annotations

import enum
import uuid

#: The range of codes each domain owns (account and transfer codes alike).
DOMAIN_RANGES: dict[str, range] = {
    "rewards": range(1, 100),
    "partners": range(100, 200),
    "finance": range(200, 300),
}

#: Ranges of transfer codes set aside for the partners' kinds of movement,
#: named here before the first partner transfer is posted.
PARTNER_TRANSFER_RANGES: dict[str, range] = {
    "issuance": range(100, 120),
    "acceptance": range(120, 140),
    "funding": range(140, 160),
    "settlement": range(160, 180),
}


@enum.unique
class AccountCode(enum.IntEnum):
    # rewards: the program's own accounts
    ISSUANCE = 1
    REDEMPTION = 2
    BREAKAGE = 3
    # rewards: a member's
    MEMBER_WALLET = 10
    MEMBER_DEBT = 11
    # partners: a partner's accounts in a program, keyed (program, partner, role)
    PARTNER_ISSUANCE = 100
    PARTNER_ACCEPTANCE = 101
    PARTNER_FUNDING = 102


@enum.unique
class TransferCode(enum.IntEnum):
    """What a movement of points is. Codes 1-9 keep the numbers they had
    before the registry, with the meaning they always had."""

    PURCHASE_EARN = 1
    RETURN_REVERSAL = 2
    DEBT = 3
    DEBT_REPAYMENT = 4
    CATALOG_REDEMPTION = 5
    EXPIRY = 6
    #: A manual adjustment by an operator; its reason is in the metadata.
    ADJUSTMENT = 7
    GIFT = 8
    EVENT_EARN = 9
    THRESHOLD_BONUS = 10
    BOUGHT_POINTS = 11
    #: Points spent at a checkout (a captured hold).
    POINTS_PAYMENT = 12
    #: Bought points taken back when their payment was refunded.
    BOUGHT_POINTS_REFUND = 13
    # partners (see PARTNER_TRANSFER_RANGES)
    PARTNER_ISSUANCE = 100
    PARTNER_ACCEPTANCE = 120
    PARTNER_FUNDING = 140
    PARTNER_SETTLEMENT = 160


#: How the member app names each kind of movement (the ``kind`` of its
#: history). A name is part of the API, which clients branch on: the codes
#: 1-9 keep the names the app gave them before the registry.
MOVEMENT_NAMES: dict[TransferCode, str] = {
    TransferCode.PURCHASE_EARN: "earn",
    TransferCode.RETURN_REVERSAL: "return_reversal",
    TransferCode.DEBT: "debt",
    TransferCode.DEBT_REPAYMENT: "debt_repayment",
    TransferCode.CATALOG_REDEMPTION: "redemption",
    TransferCode.EXPIRY: "expiry",
    TransferCode.ADJUSTMENT: "adjustment",
    TransferCode.GIFT: "gift",
    TransferCode.EVENT_EARN: "event",
    TransferCode.THRESHOLD_BONUS: "threshold_bonus",
    TransferCode.BOUGHT_POINTS: "bought_points",
    TransferCode.POINTS_PAYMENT: "points_payment",
    TransferCode.BOUGHT_POINTS_REFUND: "bought_points_refund",
    TransferCode.PARTNER_ISSUANCE: "partner_earn",
    TransferCode.PARTNER_ACCEPTANCE: "partner_redemption",
    TransferCode.PARTNER_FUNDING: "partner_funding",
    TransferCode.PARTNER_SETTLEMENT: "partner_settlement",
}


def movement_name(code: int) -> str:
    """The member app's name of a transfer's kind (its number if unknown)."""
    try:
        return MOVEMENT_NAMES[TransferCode(code)]
    except ValueError:
        return str(code)


def domain_of(code: int) -> str:
    """The domain whose range holds ``code``."""
    for name, codes in DOMAIN_RANGES.items():
        if code in codes:
            return name
    raise ValueError(f"code {code} lies in no domain's range")


_NAMESPACE = uuid.UUID("2f6a1d3e-8c4b-4e7a-9b0d-5c1e7f3a9d42")


def derived_id(program_id: uuid.UUID, *key: str) -> uuid.UUID:
    """The id of a ledger record identified by ``key`` within a program."""
    return uuid.uuid5(_NAMESPACE, f"{program_id}:" + ":".join(key))


def partner_account_id(
    program_id: uuid.UUID, partner_id: uuid.UUID, role: AccountCode
) -> uuid.UUID:
    """The account of a partner in a program for one role (issuance,
    acceptance, funding): one per (program, partner, role)."""
    return derived_id(program_id, "partner", str(partner_id), role.name.lower())
