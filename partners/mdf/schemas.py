"""What the market development funds' routes take and answer: bounded as
the columns that store them, so nothing invalid reaches SQL and the OpenAPI
document shows every bound."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from ledger.bounds import NO_NUL, YEAR_MAX, YEAR_MIN, NonEmpty, Text200, integer_range
from partners.mdf.models import MdfActivity, MdfClaim, MdfFund
from rewards.programs import Currency

#: The largest amount of a fund, an activity or a claim (points, or minor
#: units): a fund's sums stay far inside a bigint.
AMOUNT_MAX = 10**15
#: Pieces of proof one claim carries at most.
PROOF_MAX = 20
#: Days after a fund's period that claims may still be submitted, unless
#: the funder says otherwise.
CLAIM_DAYS_DEFAULT = 60

_DAY = f"YYYY-MM-DD (UTC), in the years {YEAR_MIN} to {YEAR_MAX}"

Amount = Annotated[int, integer_range(1, AMOUNT_MAX)]
Reference = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9._~:-]{1,200}$",
        description="The funder's key of the fund (1 to 200 of A-Z a-z 0-9 . _ ~ : -), unique"
        " in the program: allocating again with it and the same fields answers the first fund.",
        examples=["mdf-2026-q1-fuel-and-go"],
    ),
]
Slug = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[a-z0-9][a-z0-9-]{0,63}$",
        description="A partner's slug in the program.",
        examples=["fuel-and-go"],
    ),
]
Note = Annotated[str, msgspec.Meta(max_length=1000, pattern=NO_NUL)]
LongText = Annotated[str, msgspec.Meta(min_length=1, max_length=5000, pattern=NO_NUL)]
Title = Annotated[Text200, NonEmpty]
Unit = Literal["points", "money"]


def _check_day(name: str, day: date | None) -> None:
    if day is not None and not YEAR_MIN <= day.year <= YEAR_MAX:
        raise ValueError(f"{name}: Expected a date in the years {YEAR_MIN} to {YEAR_MAX}")


class FundRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A fund to allocate to a partner for a period."""

    reference: Reference
    partner: Annotated[Slug, msgspec.Meta(description="The partner the fund is for.")]
    name: Annotated[Title, msgspec.Meta(description="What the fund is, for people to read.")]
    period_start: Annotated[date, msgspec.Meta(description=f"The period's first day, {_DAY}.")]
    period_end: Annotated[
        date,
        msgspec.Meta(
            description=f"The period's last day (activities are requested and approved up to"
            f" it), {_DAY}."
        ),
    ]
    unit: Annotated[
        Unit,
        msgspec.Meta(
            description="points (paid to the partner's issuance account) or money (paid to its"
            " payable account on the program's money ledger in `currency`)."
        ),
    ]
    amount: Annotated[
        Amount, msgspec.Meta(description="The fund: points, or minor units of `currency`.")
    ]
    currency: (
        Annotated[
            Currency,
            msgspec.Meta(
                description="ISO 4217 of a money fund; none for points.", examples=["ZAR"]
            ),
        ]
        | None
    ) = None
    claims_until: (
        Annotated[
            date,
            msgspec.Meta(
                description=f"The last day claims may be submitted, on or after `period_end`"
                f" ({CLAIM_DAYS_DEFAULT} days after it if left out), {_DAY}."
            ),
        ]
        | None
    ) = None
    funder: (
        Annotated[
            Slug,
            msgspec.Meta(
                description="Operator API only: the brand partner that funds it (none: the"
                " program). The partner API's funder is the token's firm."
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        for name in ("period_start", "period_end", "claims_until"):
            _check_day(name, getattr(self, name))
        if self.period_end < self.period_start:
            raise ValueError("period_end: Expected a day on or after period_start")
        if self.claims_until is not None and self.claims_until < self.period_end:
            raise ValueError("claims_until: Expected a day on or after period_end")
        if (self.unit == "money") != (self.currency is not None):
            raise ValueError("currency: Expected a currency for a money fund, none for points")


class FundView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The fund's id.")]
    reference: Annotated[str, msgspec.Meta(description="The funder's key of the fund.")]
    partner: Annotated[str, msgspec.Meta(description="The slug of the partner it is for.")]
    funder: Annotated[
        str | None, msgspec.Meta(description="The funding brand partner's slug; none: the program.")
    ]
    name: Annotated[str, msgspec.Meta(description="What the fund is.")]
    period_start: Annotated[date, msgspec.Meta(description="The period's first day (UTC).")]
    period_end: Annotated[date, msgspec.Meta(description="The period's last day (UTC).")]
    claims_until: Annotated[date, msgspec.Meta(description="The last day claims are submitted.")]
    unit: Annotated[str, msgspec.Meta(description="points or money.")]
    currency: Annotated[str | None, msgspec.Meta(description="A money fund's ISO 4217 code.")]
    amount: Annotated[int, msgspec.Meta(description="Allocated: points or minor units.")]
    committed: Annotated[int, msgspec.Meta(description="Approved activities' amounts.")]
    claimed: Annotated[int, msgspec.Meta(description="Submitted and paid claims.")]
    paid: Annotated[int, msgspec.Meta(description="Paid claims (through the ledger).")]
    remaining: Annotated[
        int,
        msgspec.Meta(description="What activities may still be approved for: amount - committed."),
    ]
    created_at: Annotated[datetime, msgspec.Meta(description="When it was allocated.")]
    replayed: Annotated[
        bool, msgspec.Meta(description="True when this reference was allocated before.")
    ] = False

    @classmethod
    def of(
        cls, fund: MdfFund, partner: str, funder: str | None, *, replayed: bool = False
    ) -> FundView:
        return cls(
            id=str(fund.id),
            reference=fund.reference,
            partner=partner,
            funder=funder,
            name=fund.name,
            period_start=fund.period_start,
            period_end=fund.period_end,
            claims_until=fund.claims_until,
            unit=fund.unit,
            currency=fund.currency,
            amount=fund.amount,
            committed=fund.committed,
            claimed=fund.claimed,
            paid=fund.paid,
            remaining=fund.amount - fund.committed,
            created_at=fund.created_at,
            replayed=replayed,
        )


class FundPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[FundView], msgspec.Meta(description="Newest fund first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class ActivityRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """An activity the fund's partner asks to run against it."""

    title: Annotated[Title, msgspec.Meta(description="The activity, in a line.")]
    plan: Annotated[
        LongText, msgspec.Meta(description="The plan: what, where, for whom, expected results.")
    ]
    starts_on: Annotated[date, msgspec.Meta(description=f"Its first day, {_DAY}.")]
    ends_on: Annotated[date, msgspec.Meta(description=f"Its last day, {_DAY}.")]
    amount: Annotated[
        Amount, msgspec.Meta(description="What it asks of the fund, in the fund's unit.")
    ]

    def __post_init__(self) -> None:
        _check_day("starts_on", self.starts_on)
        _check_day("ends_on", self.ends_on)
        if self.ends_on < self.starts_on:
            raise ValueError("ends_on: Expected a day on or after starts_on")


class ActivityApproval(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    amount: (
        Annotated[
            Amount,
            msgspec.Meta(
                description="What is approved, at most what was asked (left out: all of it)."
            ),
        ]
        | None
    ) = None
    note: Annotated[Note, msgspec.Meta(description="A note to the partner.")] | None = None


class Refusal(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    reason: Annotated[
        Note, NonEmpty, msgspec.Meta(description="Why it is refused, for the partner to read.")
    ]


class ActivityView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The activity's id.")]
    fund_id: Annotated[str, msgspec.Meta(description="The fund it draws on.")]
    title: Annotated[str, msgspec.Meta(description="The activity, in a line.")]
    plan: Annotated[str, msgspec.Meta(description="Its plan.")]
    starts_on: Annotated[date, msgspec.Meta(description="Its first day.")]
    ends_on: Annotated[date, msgspec.Meta(description="Its last day.")]
    amount: Annotated[int, msgspec.Meta(description="What it asked for.")]
    status: Annotated[str, msgspec.Meta(description="requested, approved or refused.")]
    approved_amount: Annotated[
        int | None, msgspec.Meta(description="What the funder approved; none before.")
    ]
    claimed: Annotated[int, msgspec.Meta(description="Its submitted and paid claims.")]
    paid: Annotated[int, msgspec.Meta(description="Its paid claims.")]
    decided_at: Annotated[
        datetime | None, msgspec.Meta(description="When the funder decided; none yet.")
    ]
    decision_note: Annotated[
        str | None, msgspec.Meta(description="The funder's note or reason for refusing.")
    ]
    created_at: Annotated[datetime, msgspec.Meta(description="When it was requested.")]

    @classmethod
    def of(cls, activity: MdfActivity) -> ActivityView:
        return cls(
            id=str(activity.id),
            fund_id=str(activity.fund_id),
            title=activity.title,
            plan=activity.plan,
            starts_on=activity.starts_on,
            ends_on=activity.ends_on,
            amount=activity.amount,
            status=activity.status,
            approved_amount=activity.approved_amount,
            claimed=activity.claimed,
            paid=activity.paid,
            decided_at=activity.decided_at,
            decision_note=activity.decision_note,
            created_at=activity.created_at,
        )


class Proof(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Where a piece of proof is kept (an invoice, a photo, a report)."""

    url: Annotated[
        str,
        msgspec.Meta(
            max_length=2000,
            pattern=r"^https://[^\s\x00/?#]+[^\s\x00]*$",
            description="An https URL of the document (the platform stores no files).",
            examples=["https://files.fuelandgo.example/invoices/2026-014.pdf"],
        ),
    ]
    description: Annotated[
        str,
        msgspec.Meta(
            min_length=1, max_length=500, pattern=NO_NUL, description="What the document shows."
        ),
    ]


ProofList = Annotated[
    list[Proof],
    msgspec.Meta(max_length=PROOF_MAX, description=f"At most {PROOF_MAX} pieces of proof."),
]


class ClaimDraft(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A claim of what an approved activity spent."""

    amount: Annotated[
        Amount,
        msgspec.Meta(
            description="What was spent, in the fund's unit; the activity's"
            " claims never exceed its approved amount."
        ),
    ]
    description: Annotated[LongText, msgspec.Meta(description="What the money went to.")]
    proof: ProofList = msgspec.field(default_factory=list)
    submit: Annotated[
        bool,
        msgspec.Meta(
            description="Submit it at once (it then needs at least one piece of proof);"
            " false: a draft, editable until submitted."
        ),
    ] = False


class ClaimChange(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Fields of a draft claim to change; what is left out stays."""

    amount: Annotated[Amount, msgspec.Meta(description="What was spent.")] | None = None
    description: Annotated[LongText, msgspec.Meta(description="What it went to.")] | None = None
    proof: ProofList | None = None


class ClaimView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The claim's id.")]
    activity_id: Annotated[str, msgspec.Meta(description="The activity it claims for.")]
    fund_id: Annotated[str, msgspec.Meta(description="The activity's fund.")]
    amount: Annotated[int, msgspec.Meta(description="What it claims, in the fund's unit.")]
    description: Annotated[str, msgspec.Meta(description="What it went to.")]
    proof: Annotated[list[Proof], msgspec.Meta(description="Its proof.")]
    status: Annotated[str, msgspec.Meta(description="draft, submitted, paid or refused.")]
    submitted_at: Annotated[datetime | None, msgspec.Meta(description="When it was submitted.")]
    decided_at: Annotated[datetime | None, msgspec.Meta(description="When the funder decided.")]
    decision_note: Annotated[str | None, msgspec.Meta(description="Why it was refused.")]
    transfer_id: Annotated[
        str | None, msgspec.Meta(description="The ledger transfer that paid it; none before.")
    ]
    created_at: Annotated[datetime, msgspec.Meta(description="When it was drafted.")]

    @classmethod
    def of(cls, claim: MdfClaim) -> ClaimView:
        return cls(
            id=str(claim.id),
            activity_id=str(claim.activity_id),
            fund_id=str(claim.fund_id),
            amount=claim.amount,
            description=claim.description,
            proof=[Proof(url=p["url"], description=p["description"]) for p in claim.proof],
            status=claim.status,
            submitted_at=claim.submitted_at,
            decided_at=claim.decided_at,
            decision_note=claim.decision_note,
            transfer_id=str(claim.transfer_id) if claim.transfer_id else None,
            created_at=claim.created_at,
        )


class Reconciliation(msgspec.Struct, kw_only=True, frozen=True):
    """A fund's figures, recomputed from its activities, its claims and the
    ledger, beside the ones kept on the fund."""

    fund_id: Annotated[str, msgspec.Meta(description="The fund.")]
    unit: Annotated[str, msgspec.Meta(description="points or money.")]
    currency: Annotated[str | None, msgspec.Meta(description="A money fund's currency.")]
    allocated: Annotated[int, msgspec.Meta(description="The fund's amount.")]
    committed: Annotated[int, msgspec.Meta(description="Sum of approved activities' amounts.")]
    claimed: Annotated[int, msgspec.Meta(description="Sum of submitted and paid claims.")]
    paid: Annotated[int, msgspec.Meta(description="Sum of paid claims.")]
    paid_in_ledger: Annotated[
        int, msgspec.Meta(description="Sum of the ledger transfers that paid the claims.")
    ]
    remaining: Annotated[int, msgspec.Meta(description="allocated - committed.")]
    requested: Annotated[
        int, msgspec.Meta(description="Sum of activities still awaiting a decision.")
    ]
    drafts: Annotated[int, msgspec.Meta(description="Sum of draft claims (counted nowhere).")]
    ties: Annotated[
        bool,
        msgspec.Meta(
            description="True when the recomputed figures equal the fund's kept ones, every"
            " paid claim's transfer is in the ledger, and paid <= claimed <= committed <="
            " allocated."
        ),
    ]


class ActivityPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[ActivityView], msgspec.Meta(description="Newest activity first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class ClaimPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[ClaimView], msgspec.Meta(description="Newest claim first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None
