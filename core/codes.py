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
    "collaboration": range(200, 300),
    "finance": range(300, 400),
}

#: Ranges of transfer codes set aside for the partners' kinds of movement,
#: named here before the first partner transfer is posted.
PARTNER_TRANSFER_RANGES: dict[str, range] = {
    "issuance": range(100, 120),
    "acceptance": range(120, 140),
    "funding": range(140, 160),
    "settlement": range(160, 180),
    "exchange": range(180, 200),
}

#: Ranges of codes (account and transfer) set aside for the partners'
#: collaboration: leads' referral rewards, joint campaigns, development funds.
COLLABORATION_RANGES: dict[str, range] = {
    "REFERRAL_": range(200, 220),
    "CAMPAIGN_": range(220, 240),
    "MDF_": range(240, 260),
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
    #: A program's exchange account for a program it exchanges points with,
    #: keyed (program, other program): see ``exchange_account_id``.
    PARTNER_EXCHANGE = 180
    #: The program's spend on referral rewards on its money ledger: what it
    #: paid to the payables of partners whose shared leads were won.
    REFERRAL_EXPENSE = 200
    #: A participant's budget for one joint campaign (bounded: never
    #: overspent), keyed (program, campaign, participant).
    CAMPAIGN_BUDGET = 220
    #: The program's marketing development spend on its money ledger: what
    #: the operator's money funds paid to partners' payables (a debit balance).
    MDF_EXPENSE = 240
    # partners: accounts of a money ledger (one per program and currency,
    # in minor units), where statements post what partners owe and are owed
    #: What a partner owes the program (a debit balance).
    PARTNER_RECEIVABLE = 160
    #: What the program owes a partner (a credit balance).
    PARTNER_PAYABLE = 161
    #: A partner's prepaid credit drawn down by its statements.
    PARTNER_PREPAID = 162
    #: The program's revenue from partners: points sold, commitments.
    PARTNER_REVENUE = 170
    #: The program's cost of points redeemed at partners.
    PARTNER_REDEMPTION_COST = 171
    #: Money in and out: payments received, payouts made.
    PARTNER_CASH = 172


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
    #: A completed catalog redemption cancelled: the points it consumed
    #: restored to the lots they came from, with their original expiry.
    REDEMPTION_CANCELLATION = 14
    #: A captured points payment cancelled: its points restored to their lots.
    POINTS_PAYMENT_CANCELLATION = 15
    #: Expired points reinstated (restore every lot expired since a date).
    EXPIRY_REINSTATEMENT = 16
    #: The program's end: every remaining point expired in one operation
    #: after its notice period.
    PROGRAM_SUNSET = 17
    # partners (see PARTNER_TRANSFER_RANGES)
    PARTNER_ISSUANCE = 100
    PARTNER_ACCEPTANCE = 120
    #: Points a partner accepted given back to the member (a refund at its till).
    PARTNER_ACCEPTANCE_REFUND = 121
    PARTNER_FUNDING = 140
    #: A postpaid partner's headroom: its contract's credit limit, or a change of it.
    PARTNER_CREDIT_LINE = 141
    #: A postpaid partner's headroom given back once a statement is paid:
    #: the points that statement billed as issued.
    PARTNER_HEADROOM_RESTORED = 142
    # partners: movements of money on a money ledger (settlement)
    #: Billed to the partner by a statement: revenue -> receivable.
    PARTNER_SETTLEMENT = 160
    #: Owed to the partner by a statement: redemption cost -> payable.
    PARTNER_REIMBURSEMENT = 161
    #: A payment received from the partner: receivable -> cash.
    PARTNER_PAYMENT = 162
    #: A payout made to the partner: cash -> payable.
    PARTNER_PAYOUT = 163
    #: Prepaid credit drawn by a statement: prepaid -> receivable.
    PARTNER_PREPAID_DRAWN = 164
    #: What a statement owes both ways, set off: payable -> receivable.
    PARTNER_NETTING = 165
    #: A leaving partner's share of the outstanding points liability, which
    #: the program takes over: its final statement bills the price of those
    #: points not billed yet: revenue -> receivable.
    PARTNER_LIABILITY_TRANSFER = 166
    #: One leg of a conversion between two programs: wallet -> exchange
    #: account on the source ledger, exchange account -> wallet on the target's.
    PARTNER_EXCHANGE = 180
    # leads (200-219)
    #: A referral reward in points for a won shared lead: the program's
    #: issuance account -> the referring partner's issuance account.
    REFERRAL_REWARD_POINTS = 200
    #: A referral reward in money: the program's referral expense -> the
    #: referring partner's payable (paid out with its statements).
    REFERRAL_REWARD_MONEY = 201
    # joint campaigns (220-239)
    #: A participant's part of a campaign's budget, set aside at its start:
    #: its issuance account -> its campaign budget account.
    CAMPAIGN_BUDGET = 220
    #: One leg of a campaign bonus: a participant's budget -> the member's
    #: wallet (the legs of one bonus are one linked chain).
    CAMPAIGN_BONUS = 221
    #: What a participant's budget had left at the campaign's end, given back.
    CAMPAIGN_BUDGET_RELEASE = 222
    # market development funds (240-259)
    #: A paid MDF claim: points from the funder's issuance account (the
    #: program's, or the brand partner's) to the partner's; money from the
    #: program's MDF expense (or the brand partner's receivable) to the
    #: partner's payable.
    MDF_PAYMENT = 240
    # finance (300-399)
    #: A correction of a movement of a closed period, posted in the open
    #: period; its metadata names the transfer it corrects.
    FINANCE_CORRECTION = 300


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
    TransferCode.PARTNER_ACCEPTANCE_REFUND: "partner_refund",
    TransferCode.PARTNER_FUNDING: "partner_funding",
    TransferCode.PARTNER_CREDIT_LINE: "partner_credit_line",
    TransferCode.PARTNER_HEADROOM_RESTORED: "partner_headroom_restored",
    TransferCode.PARTNER_SETTLEMENT: "partner_settlement",
    TransferCode.PARTNER_REIMBURSEMENT: "partner_reimbursement",
    TransferCode.PARTNER_PAYMENT: "partner_payment",
    TransferCode.PARTNER_PAYOUT: "partner_payout",
    TransferCode.PARTNER_PREPAID_DRAWN: "partner_prepaid_drawn",
    TransferCode.PARTNER_NETTING: "partner_netting",
    TransferCode.PARTNER_LIABILITY_TRANSFER: "partner_liability_transfer",
    TransferCode.PARTNER_EXCHANGE: "exchange",
    TransferCode.REFERRAL_REWARD_POINTS: "referral_reward_points",
    TransferCode.REFERRAL_REWARD_MONEY: "referral_reward_money",
    TransferCode.CAMPAIGN_BUDGET: "campaign_budget",
    TransferCode.CAMPAIGN_BONUS: "campaign_bonus",
    TransferCode.CAMPAIGN_BUDGET_RELEASE: "campaign_budget_release",
    TransferCode.MDF_PAYMENT: "mdf_payment",
    TransferCode.REDEMPTION_CANCELLATION: "redemption_cancellation",
    TransferCode.POINTS_PAYMENT_CANCELLATION: "points_payment_cancellation",
    TransferCode.EXPIRY_REINSTATEMENT: "expiry_reinstatement",
    TransferCode.PROGRAM_SUNSET: "program_sunset",
    TransferCode.FINANCE_CORRECTION: "correction",
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


def exchange_account_id(program_id: uuid.UUID, other_program_id: uuid.UUID) -> uuid.UUID:
    """The exchange account, on ``program_id``'s ledger, for the program it
    exchanges points with: one per ordered pair of programs."""
    return derived_id(program_id, "exchange", str(other_program_id))


def money_account_id(
    program_id: uuid.UUID, currency: str, role: AccountCode, partner_id: uuid.UUID | None = None
) -> uuid.UUID:
    """An account of a program's money ledger in ``currency``: the
    program's (``partner_id`` None) or a partner's, one per role."""
    owner = "program" if partner_id is None else f"partner:{partner_id}"
    return derived_id(program_id, "money", currency, owner, role.name.lower())
