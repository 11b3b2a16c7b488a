"""Request and response types of settlement: statements and their lines,
a line's transfers, payouts, payments and net positions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from ledger.bounds import ExternalId, Moment, PositiveBigInt
from partners.contract_schemas import Currency

#: A settlement period's label: a week, a month or a quarter.
PERIOD_PATTERN = r"^[0-9]{4}-(W(0[1-9]|[1-4][0-9]|5[0-3])|(0[1-9]|1[0-2])|Q[1-4])$"

PeriodLabel = Annotated[
    str,
    msgspec.Meta(
        pattern=PERIOD_PATTERN,
        description="A settlement period: 2026-W48 (ISO week), 2026-11 (month), 2026-Q4.",
        examples=["2026-11"],
    ),
]


class StatementRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Issue the statement of a period that has ended: the partner's next."""

    period: PeriodLabel


_NEXT = "Send it back as `cursor` for the next page; none on the last."


class StatementLineView(msgspec.Struct, kw_only=True, frozen=True):
    line: Annotated[int, msgspec.Meta(description="The line's number in its statement, from 1.")]
    kind: Annotated[
        str,
        msgspec.Meta(
            description="`points_issued`, `points_redeemed`, `points_refunded`,"
            " `deferred_issue_price`, `minimum_commitment_shortfall`, `prepaid_credit_drawn`"
            " or `liability_transferred`."
        ),
    ]
    late_period: Annotated[
        str | None,
        msgspec.Meta(
            description="The closed period a late transfer belongs to (an adjustment line);"
            " none for the statement's own period."
        ),
    ]
    contract_version: Annotated[
        int | None,
        msgspec.Meta(description="The contract version whose rate the line applies, if any."),
    ]
    points: Annotated[int, msgspec.Meta(description="The points the line counts.")]
    rate: Annotated[
        str | None,
        msgspec.Meta(
            description="Minor units per point applied, an exact decimal string; none for a"
            " line derived from others."
        ),
    ]
    amount_minor: Annotated[
        int,
        msgspec.Meta(
            description="In minor units: > 0 the partner owes, < 0 the program owes; points"
            " times rate, rounded half-even once."
        ),
    ]
    tax_code: Annotated[
        str | None, msgspec.Meta(description="The contract's tax code for the line's flow.")
    ]
    transfers: Annotated[
        int,
        msgspec.Meta(
            description="How many ledger transfers the line counts (listed by its"
            " `.../lines/{line}/transfers`); 0 for a derived line."
        ),
    ]


class StatementView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[
        str | None,
        msgspec.Meta(description="The issued statement's id; none for a draft (stored nowhere)."),
    ]
    number: Annotated[
        int, msgspec.Meta(description="The statement's number at the partner, from 1.")
    ]
    status: Annotated[str, msgspec.Meta(description="`draft` (computed now) or `issued`.")]
    kind: Annotated[
        str,
        msgspec.Meta(
            description="`regular` (a period's) or `final` (a leaving partner's last, its"
            " share of the liability)."
        ),
    ]
    partner: Annotated[str, msgspec.Meta(description="The contract holder's slug.")]
    period: Annotated[
        str, msgspec.Meta(description="The settlement period: 2026-W48, 2026-11 or 2026-Q4.")
    ]
    period_start: Annotated[datetime, msgspec.Meta(description="The period's first instant.")]
    period_end: Annotated[
        datetime, msgspec.Meta(description="The period's end, excluded (the next one's start).")
    ]
    currency: Annotated[str, msgspec.Meta(description="ISO 4217 code of every amount.")]
    contract_version: Annotated[
        int, msgspec.Meta(description="The contract version in force at the period's end.")
    ]
    lines: Annotated[list[StatementLineView], msgspec.Meta(description="The lines, in order.")]
    billed_minor: Annotated[
        int,
        msgspec.Meta(
            description="Minor units billed to the partner: the lines other than"
            " `points_redeemed` and `prepaid_credit_drawn`."
        ),
    ]
    reimbursed_minor: Annotated[
        int,
        msgspec.Meta(description="Minor units the program reimburses for points redeemed."),
    ]
    total_minor: Annotated[
        int,
        msgspec.Meta(
            description="The sum of the lines in minor units: > 0 the partner owes, < 0 the"
            " program owes."
        ),
    ]
    direction: Annotated[
        str, msgspec.Meta(description="`partner_owes`, `program_owes` or `settled` (total 0).")
    ]
    amount_due_minor: Annotated[
        int,
        msgspec.Meta(description="What is due in `direction`, in minor units: |total_minor|."),
    ]
    payment_status: Annotated[
        str,
        msgspec.Meta(
            description="`none` (nothing to collect: the program owes, or nothing is due),"
            " `due`, `paid` or `failed`."
        ),
    ]
    paid_minor: Annotated[int, msgspec.Meta(description="Minor units received against it so far.")]
    cutoff: Annotated[
        int, msgspec.Meta(description="The last ledger timestamp the statement read.")
    ]
    issued_at: Annotated[
        datetime | None, msgspec.Meta(description="When it was issued; none for a draft.")
    ]
    replayed: Annotated[
        bool, msgspec.Meta(description="True when this period's statement was issued before.")
    ] = False


class StatementPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[StatementView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[str | None, msgspec.Meta(description=_NEXT)] = None


class Recomputation(msgspec.Struct, kw_only=True, frozen=True):
    """An issued statement computed again from the ledger: ``matches`` when
    every line and total is the same as stored."""

    matches: Annotated[
        bool, msgspec.Meta(description="True when every line and total is the same as stored.")
    ]
    stored: Annotated[StatementView, msgspec.Meta(description="The statement as issued.")]
    recomputed: Annotated[
        StatementView,
        msgspec.Meta(description="The same statement computed again from the ledger now."),
    ]


class LineTransfer(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The ledger transfer's id.")]
    amount: Annotated[int, msgspec.Meta(description="Points it moved (a positive amount).")]
    code: Annotated[
        int, msgspec.Meta(description="Its ledger transfer code (partners' codes are 100-199).")
    ]
    at: Annotated[
        datetime,
        msgspec.Meta(
            description="The business time the statement sorted it by (its effective time, or"
            " when recorded)."
        ),
    ]
    recorded_at: Annotated[datetime, msgspec.Meta(description="When the ledger recorded it.")]
    timestamp: Annotated[
        int, msgspec.Meta(description="Its ledger timestamp (unique, increasing).")
    ]


class LineTransferPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[LineTransfer], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[str | None, msgspec.Meta(description=_NEXT)] = None


class PayoutRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Money the program paid the partner (what its statements owed it)."""

    reference: Annotated[
        ExternalId,
        msgspec.Meta(description="The payment's reference (bank transfer): the idempotency key."),
    ]
    amount_minor: Annotated[PositiveBigInt, msgspec.Meta(description="Paid, in minor units.")]
    currency: Annotated[
        Currency | None, msgspec.Meta(description="Left out: the contract's currency.")
    ] = None
    paid_at: Annotated[Moment | None, msgspec.Meta(description="Left out: now.")] = None


class PayoutView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The payout's id.")]
    reference: Annotated[
        str, msgspec.Meta(description="The payment's reference (its idempotency key).")
    ]
    amount_minor: Annotated[int, msgspec.Meta(description="Paid to the partner, in minor units.")]
    currency: Annotated[str, msgspec.Meta(description="ISO 4217 code.")]
    paid_at: Annotated[datetime, msgspec.Meta(description="When it was paid.")]
    replayed: Annotated[
        bool, msgspec.Meta(description="True when this reference was recorded before.")
    ] = False


class PayoutPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[PayoutView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[str | None, msgspec.Meta(description=_NEXT)] = None


class PaymentRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A payment received for a statement the partner owes."""

    reference: Annotated[
        ExternalId,
        msgspec.Meta(description="The payment's reference: the idempotency key."),
    ]
    amount_minor: Annotated[PositiveBigInt, msgspec.Meta(description="Received, in minor units.")]


class MoneyPosition(msgspec.Struct, kw_only=True, frozen=True):
    currency: Annotated[str, msgspec.Meta(description="ISO 4217 code of both balances.")]
    partner_owes_minor: Annotated[
        int,
        msgspec.Meta(description="What the partner owes now, in minor units (its receivable)."),
    ]
    program_owes_minor: Annotated[
        int,
        msgspec.Meta(description="What the program owes it now, in minor units (its payable)."),
    ]


class PositionView(msgspec.Struct, kw_only=True, frozen=True):
    """A partner's net position in a period, from its issued statements
    (their own-period and adjustment lines): points issued against points
    redeemed at it, and the money both ways."""

    partner: Annotated[str, msgspec.Meta(description="The contract holder's slug.")]
    period: Annotated[
        str | None, msgspec.Meta(description="The settlement period; none: every period.")
    ]
    points_issued: Annotated[int, msgspec.Meta(description="Points it issued.")]
    points_redeemed: Annotated[
        int, msgspec.Meta(description="Points redeemed at it, less those refunded.")
    ]
    net_points: Annotated[int, msgspec.Meta(description="points_issued - points_redeemed.")]
    billed_minor: Annotated[
        int, msgspec.Meta(description="Minor units billed to it by its statements.")
    ]
    reimbursed_minor: Annotated[
        int, msgspec.Meta(description="Minor units reimbursed to it for points redeemed.")
    ]
    net_minor: Annotated[
        int,
        msgspec.Meta(description="billed_minor - reimbursed_minor: > 0 the partner owes net."),
    ]
    money: Annotated[
        list[MoneyPosition],
        msgspec.Meta(description="What it owes and is owed now, one entry per currency."),
    ]


class PositionPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[
        list[PositionView], msgspec.Meta(description="One per partner with statements, by slug.")
    ]
