"""The API's shapes of partner contracts and fundings: terms as an operator
sends them, versions and balances as they are shown.

Prices per point are exact decimals sent as JSON strings ("1.5": one and a
half minor units per point), never numbers: a JSON number may pass through
a float on its way, and 0.1 of a cent is not a float.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec

from ledger.bounds import ExternalId, Moment, NonNegativeBigInt, PositiveBigInt, Text500
from partners.coalition_models import (
    ContractRoles,
    FundingModel,
    PartnerContract,
    PartnerFunding,
    SettlementPeriod,
)

#: Up to 12 digits, then up to 6 decimal places: what NUMERIC(18, 6) stores exactly.
PRICE_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"
#: A fraction from 0 to 1, with up to 6 decimal places.
SHARE_PATTERN = r"^(0(\.[0-9]{1,6})?|1(\.0{1,6})?)$"

PricePerPoint = Annotated[
    str,
    msgspec.Meta(
        pattern=PRICE_PATTERN,
        description="Minor units of the contract's currency per point, as an exact decimal"
        ' string with up to 6 decimal places ("1.5": 1.5 cents per point).',
        examples=["1.5"],
    ),
]
Share = Annotated[
    str,
    msgspec.Meta(
        pattern=SHARE_PATTERN,
        description="A fraction from 0 to 1 as a decimal string, up to 6 decimal places.",
        examples=["1"],
    ),
]
Currency = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code.", examples=["ZAR"])
]
TaxCode = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="The tax code a statement line of this flow carries.",
    ),
]


def plain(value: Decimal) -> str:
    """A stored decimal as the API shows it: no trailing zeros, no exponent."""
    return format(value.normalize(), "f")


class TaxCodes(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    issuance: TaxCode | None = None
    redemption: TaxCode | None = None
    fees: TaxCode | None = None


class ContractTerms(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A contract version's terms, as drafted."""

    roles: Annotated[
        ContractRoles,
        msgspec.Meta(
            description="`issuer` (issues the program's points), `acceptor` (takes points as"
            " payment) or `both`."
        ),
    ]
    issue_price_per_point: Annotated[
        PricePerPoint, msgspec.Meta(description="What the partner pays per point it issues.")
    ]
    redemption_rate_per_point: Annotated[
        PricePerPoint,
        msgspec.Meta(description="What the partner is reimbursed per point redeemed with it."),
    ]
    funding_model: Annotated[
        FundingModel,
        msgspec.Meta(
            description="`prepaid`: it buys blocks of points first (`POST .../funding`);"
            " `postpaid`: it issues up to `credit_limit_points` and pays by statement."
        ),
    ]
    credit_limit_points: Annotated[
        NonNegativeBigInt | None,
        msgspec.Meta(description="Postpaid only (and required): points it may issue unpaid."),
    ] = None
    issuance_share: Annotated[
        Share,
        msgspec.Meta(
            description="The part of the issue price billed when points are issued; the rest"
            " is billed when they are redeemed."
        ),
    ] = "1"
    settlement_period: Annotated[
        SettlementPeriod,
        msgspec.Meta(
            description="How often statements are issued: `weekly` (ISO weeks), `monthly` or"
            " `quarterly`."
        ),
    ] = SettlementPeriod.MONTHLY
    currency: Annotated[
        Currency | None, msgspec.Meta(description="Left out: the partner's currency.")
    ] = None
    tax_codes: Annotated[
        TaxCodes, msgspec.Meta(description="The tax codes statement lines carry, by flow.")
    ] = TaxCodes()
    prepaid_credit_minor: Annotated[
        NonNegativeBigInt,
        msgspec.Meta(description="Money paid ahead, in minor units, drawn down by statements."),
    ] = 0
    minimum_commitment_minor: Annotated[
        NonNegativeBigInt,
        msgspec.Meta(
            description="Minor units a period's statement bills at least (its shortfall"
            " becomes a line)."
        ),
    ] = 0
    note: Annotated[
        Text500 | None, msgspec.Meta(description="Free text for operators (not interpreted).")
    ] = None


class ContractPublication(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    effective_from: Annotated[
        Moment,
        msgspec.Meta(
            description="When the version comes into force: now or later, except for the"
            " partner's first published version, which may start as early as the partner's"
            " creation."
        ),
    ]


class ContractView(msgspec.Struct, kw_only=True, frozen=True):
    version: Annotated[int, msgspec.Meta(description="The version's number, from 1.")]
    status: Annotated[str, msgspec.Meta(description="`draft` or `published`.")]
    roles: Annotated[str, msgspec.Meta(description="`issuer`, `acceptor` or `both`.")]
    issue_price_per_point: Annotated[
        str,
        msgspec.Meta(
            description="Minor units the partner pays per point it issues, an exact decimal string."
        ),
    ]
    redemption_rate_per_point: Annotated[
        str,
        msgspec.Meta(
            description="Minor units the partner is reimbursed per point redeemed with it, an"
            " exact decimal string."
        ),
    ]
    issuance_share: Annotated[
        str,
        msgspec.Meta(
            description="The part of the issue price billed at issue (0 to 1, a decimal"
            " string); the rest is billed at redemption."
        ),
    ]
    funding_model: Annotated[str, msgspec.Meta(description="`prepaid` or `postpaid`.")]
    credit_limit_points: Annotated[
        int, msgspec.Meta(description="Points a postpaid partner may issue unpaid; 0 for prepaid.")
    ]
    settlement_period: Annotated[
        str, msgspec.Meta(description="`weekly`, `monthly` or `quarterly`.")
    ]
    currency: Annotated[str, msgspec.Meta(description="ISO 4217 code of its prices and amounts.")]
    tax_codes: Annotated[
        TaxCodes, msgspec.Meta(description="The tax codes statement lines carry, by flow.")
    ]
    prepaid_credit_minor: Annotated[
        int, msgspec.Meta(description="Money paid ahead, in minor units, drawn down by statements.")
    ]
    minimum_commitment_minor: Annotated[
        int, msgspec.Meta(description="Minor units a period's statement bills at least.")
    ]
    note: Annotated[str | None, msgspec.Meta(description="The operators' free text.")]
    effective_from: Annotated[
        datetime | None, msgspec.Meta(description="When it comes into force; none for a draft.")
    ]
    published_at: Annotated[
        datetime | None, msgspec.Meta(description="When it was published; none for a draft.")
    ]
    created_at: Annotated[datetime, msgspec.Meta(description="When the version was drafted.")]

    @classmethod
    def of(cls, contract: PartnerContract) -> ContractView:
        return cls(
            version=contract.version,
            status=contract.status,
            roles=contract.roles,
            issue_price_per_point=plain(contract.issue_price_per_point),
            redemption_rate_per_point=plain(contract.redemption_rate_per_point),
            issuance_share=plain(contract.issuance_share),
            funding_model=contract.funding_model,
            credit_limit_points=contract.credit_limit_points,
            settlement_period=contract.settlement_period,
            currency=contract.currency,
            tax_codes=TaxCodes(
                issuance=contract.issuance_tax_code,
                redemption=contract.redemption_tax_code,
                fees=contract.fee_tax_code,
            ),
            prepaid_credit_minor=contract.prepaid_credit_minor,
            minimum_commitment_minor=contract.minimum_commitment_minor,
            note=contract.note,
            effective_from=contract.effective_from,
            published_at=contract.published_at,
            created_at=contract.created_at,
        )


class ContractPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[ContractView], msgspec.Meta(description="Newest version first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class FundingRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A block of points a prepaid partner paid for."""

    reference: Annotated[
        ExternalId,
        msgspec.Meta(
            description="The payment's reference (invoice, bank transfer): the idempotency"
            " key; sent again with the same fields it answers the first recording."
        ),
    ]
    points: Annotated[PositiveBigInt, msgspec.Meta(description="Points the block holds.")]
    amount_minor: Annotated[
        NonNegativeBigInt, msgspec.Meta(description="What was paid, in minor units.")
    ]
    currency: Annotated[
        Currency | None, msgspec.Meta(description="Left out: the contract's currency.")
    ] = None
    paid_at: Annotated[
        Moment | None, msgspec.Meta(description="When it was paid; left out: now.")
    ] = None


class FundingView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The funding's id.")]
    reference: Annotated[
        str, msgspec.Meta(description="The payment's reference (its idempotency key).")
    ]
    points: Annotated[int, msgspec.Meta(description="Points the block holds.")]
    amount_minor: Annotated[int, msgspec.Meta(description="What was paid, in minor units.")]
    currency: Annotated[str, msgspec.Meta(description="ISO 4217 code.")]
    paid_at: Annotated[datetime, msgspec.Meta(description="When it was paid.")]
    replayed: Annotated[
        bool, msgspec.Meta(description="True when this reference was recorded before.")
    ] = False

    @classmethod
    def of(cls, funding: PartnerFunding, *, replayed: bool = False) -> FundingView:
        return cls(
            id=str(funding.id),
            reference=funding.reference,
            points=funding.points,
            amount_minor=funding.amount_minor,
            currency=funding.currency,
            paid_at=funding.paid_at,
            replayed=replayed,
        )


class PartnerBalance(msgspec.Struct, kw_only=True, frozen=True):
    """What a contract holder may still issue, and what it moved so far."""

    partner: Annotated[str, msgspec.Meta(description="The contract holder's slug.")]
    funding_model: Annotated[
        str | None, msgspec.Meta(description="Of the contract in force; none without one.")
    ]
    issuable_points: Annotated[
        int,
        msgspec.Meta(
            description="Points it may still issue: bought blocks and credit line, less what"
            " it issued (the balance of its issuance account)."
        ),
    ]
    credit_limit_points: Annotated[
        int, msgspec.Meta(description="The postpaid credit line granted; 0 for prepaid.")
    ]
    accepted_points: Annotated[
        int, msgspec.Meta(description="Points taken as payment so far, less refunds.")
    ]
