"""A prepaid partner buys a block of points from its saved payment method:
the purchase, its price and its outcome, as plain data (the payment
provider's calls are the edge's, ``api.stripe.funding_purchases``).

A purchase is priced and recorded ``pending`` (``plan_purchase``) and
committed before the provider is asked, so a crash between the two asks
again under the same idempotency key (derived from the partner and the
caller's ``purchase_id``) and charges nothing twice. The outcome comes back
signed (a webhook): a success records the block through the same use case
as an operator's paid block (``partners.funding.record_funding``, the
PaymentIntent's id its reference, so once only); a failure funds nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.errors import Conflict, DomainError, ErrorKind, NotFound
from core.models import Program
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal, PrincipalKind
from ledger import Ledger
from partners import events
from partners.coalition_errors import NoContractInForce, NotPrepaid, PartnerNotActive
from partners.coalition_models import FundingModel
from partners.collection import NoPaymentMethod
from partners.collection_models import PartnerPaymentAccount
from partners.contract_schemas import FundingRequest
from partners.contracts import contract_in_force, latest_published, lock_partner
from partners.funding import record_funding
from partners.funding_purchase_models import PartnerFundingPurchase, PurchaseStatus
from partners.funding_purchase_schemas import (
    FundingPurchasePlan,
    FundingPurchaseRequest,
    FundingPurchaseView,
)
from partners.models import Partner, PartnerStatus
from partners.statement_lines import round_minor

#: The largest amount one card payment takes (Stripe's: 8 digits).
AMOUNT_MAX = 99_999_999


class InvalidPurchase(DomainError):
    """The block's price is not one a payment can carry (nothing, or more
    than one payment takes)."""

    type_slug = "invalid-funding-purchase"
    kind = ErrorKind.INVALID


def _subject(program: Program, partner: Partner, purchase_id: str) -> str:
    return f"program:{program.slug}:partner:{partner.slug}:funding-purchase:{purchase_id}"


def _require_buyer(principal: Principal, partner: Partner) -> None:
    """An operator with ``partners:write``, or the partner's own client with
    ``points:issue`` (another partner's is not found, as a missing one)."""
    if principal.kind is PrincipalKind.PARTNER:
        if principal.partner_id != partner.id:
            raise NotFound(f"no partner {partner.slug!r}")
        principal.require("points:issue")
    else:
        principal.require("partners:write")


def price_of_block(points: int, issue_price_per_point: Decimal) -> int:
    """Exact minor units of ``points`` at the contract's price, half-even once."""
    return round_minor(points * issue_price_per_point)


async def plan_purchase(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    request: FundingPurchaseRequest,
    now: datetime,
    *,
    principal: Principal,
) -> tuple[FundingPurchasePlan | None, FundingPurchaseView]:
    """Price and record the purchase, audited (the caller commits before it
    asks the provider); the same ``purchase_id`` again answers the first
    purchase, with the plan to ask again while it is pending (the same
    keys: the provider makes nothing twice). Refused, writing nothing: a
    partner not prepaid, without a contract in force or a saved payment
    method, a price no payment carries."""
    _require_buyer(principal, partner)
    partner = await lock_partner(session, partner)
    earlier = await session.scalar(
        select(PartnerFundingPurchase).where(
            PartnerFundingPurchase.partner_id == partner.id,
            PartnerFundingPurchase.purchase_id == request.purchase_id,
        )
    )
    if earlier is not None:
        if earlier.points != request.points:
            raise Conflict(f"purchase {request.purchase_id!r} was asked for other points")
        view = FundingPurchaseView.of(earlier, partner.slug, replayed=True)
        if earlier.status != PurchaseStatus.PENDING:
            return None, view
        return _plan(program, partner, earlier), view
    if partner.status == PartnerStatus.OFFBOARDED:
        raise PartnerNotActive(f"partner {partner.slug!r} is offboarded")
    contract = await contract_in_force(session, partner.id, now)
    if contract is None:
        raise NoContractInForce(
            f"partner {partner.slug!r} has no contract of its own in force: a member company"
            " buys through the firm whose contract it acts under"
        )
    latest = await latest_published(session, partner)
    # The block is recorded under the version published last once paid: a
    # postpaid one (starting later) would refuse it after the money moved.
    for version in (contract, latest):
        if version is not None and version.funding_model != FundingModel.PREPAID:
            raise NotPrepaid(
                f"partner {partner.slug!r} is postpaid (contract version {version.version}):"
                " its headroom is its credit line"
            )
    amount = price_of_block(request.points, contract.issue_price_per_point)
    if not 1 <= amount <= AMOUNT_MAX:
        raise InvalidPurchase(
            f"points: {request.points} points cost {amount} minor units at"
            f" {contract.issue_price_per_point} per point; a purchase costs 1 to {AMOUNT_MAX}"
        )
    account = await _payment_account(session, partner)
    if account is None or account.payment_method_id is None:
        raise NoPaymentMethod(f"partner {partner.slug!r} has no saved payment method")
    purchase = PartnerFundingPurchase(
        program_id=program.id,
        partner_id=partner.id,
        purchase_id=request.purchase_id,
        points=request.points,
        amount_minor=amount,
        currency=contract.currency,
        contract_version=contract.version,
        status=PurchaseStatus.PENDING,
        payment_method_id=account.payment_method_id,
    )
    session.add(purchase)
    await session.flush()
    await audit.record(
        session,
        principal,
        "partner.funding_purchase",
        _subject(program, partner, request.purchase_id),
        {
            "points": request.points,
            "amount_minor": amount,
            "currency": contract.currency,
            "contract_version": contract.version,
        },
    )
    return _plan(program, partner, purchase), FundingPurchaseView.of(purchase, partner.slug)


async def _payment_account(session: AsyncSession, partner: Partner) -> PartnerPaymentAccount | None:
    return await session.scalar(
        select(PartnerPaymentAccount).where(PartnerPaymentAccount.partner_id == partner.id)
    )


def _plan(
    program: Program,
    partner: Partner,
    purchase: PartnerFundingPurchase,
) -> FundingPurchasePlan:
    return FundingPurchasePlan(
        program_slug=program.slug,
        partner_id=str(partner.id),
        partner_slug=partner.slug,
        partner_name=partner.name,
        record_id=str(purchase.id),
        purchase_id=purchase.purchase_id,
        points=purchase.points,
        amount_minor=purchase.amount_minor,
        currency=purchase.currency,
        payment_method_id=purchase.payment_method_id,
    )


async def _locked(session: AsyncSession, record_id: uuid.UUID) -> PartnerFundingPurchase | None:
    return await session.scalar(
        select(PartnerFundingPurchase)
        .where(PartnerFundingPurchase.id == record_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def record_asked(
    session: AsyncSession, record_id: uuid.UUID, payment_intent: str, *, replayed: bool
) -> FundingPurchaseView:
    """The provider was asked: the purchase's PaymentIntent is known (its
    outcome comes by webhook, which may have come already)."""
    purchase = await _locked(session, record_id)
    assert purchase is not None
    if purchase.payment_intent_id is None:
        purchase.payment_intent_id = payment_intent
        await session.flush()
    partner = await session.get_one(Partner, purchase.partner_id)
    return FundingPurchaseView.of(purchase, partner.slug, replayed=replayed)


async def _outcome_of(
    session: AsyncSession, record_id: uuid.UUID
) -> tuple[Program, Partner, PartnerFundingPurchase] | None:
    """The purchase an outcome names, locked after its partner (the order
    in which a purchase is recorded)."""
    found = await session.get(PartnerFundingPurchase, record_id)
    if found is None:
        return None
    program = await session.get_one(Program, found.program_id)
    partner = await lock_partner(session, await session.get_one(Partner, found.partner_id))
    purchase = await _locked(session, record_id)
    assert purchase is not None
    return program, partner, purchase


async def purchase_succeeded(
    session: AsyncSession,
    ledger: Ledger,
    record_id: uuid.UUID,
    payment_intent: str,
    paid_minor: int,
    currency: str,
    now: datetime,
    *,
    principal: Principal,
) -> str:
    """The purchase's PaymentIntent succeeded: its block is recorded once
    (the PaymentIntent's id is the reference), ``partner.funding_purchased``
    is sent. Reported again, nothing changes. A succeeded payment wins over
    a failure reported before it: the money moved."""
    found = await _outcome_of(session, record_id)
    if found is None:
        return "ignored: no such funding purchase"
    program, partner, purchase = found
    if purchase.status == PurchaseStatus.SUCCEEDED:
        return "ignored: block funded already"
    if purchase.payment_intent_id not in (None, payment_intent):
        return f"ignored: the purchase's payment is {purchase.payment_intent_id}"
    if paid_minor < purchase.amount_minor or currency.upper() != purchase.currency:
        return (
            f"refused: paid {paid_minor} {currency.upper()}, the block costs"
            f" {purchase.amount_minor} {purchase.currency}"
        )
    funding = await record_funding(
        session,
        ledger,
        program,
        partner,
        FundingRequest(
            reference=payment_intent,
            points=purchase.points,
            amount_minor=purchase.amount_minor,
            currency=purchase.currency,
        ),
        now,
        principal=principal,
    )
    purchase.status = PurchaseStatus.SUCCEEDED
    purchase.payment_intent_id = payment_intent
    purchase.funding_id = uuid.UUID(funding.id)
    purchase.failure = None
    purchase.completed_at = now
    await session.flush()
    await audit.record(
        session,
        principal,
        "partner.funding_purchase.succeeded",
        _subject(program, partner, purchase.purchase_id),
        {"payment_intent": payment_intent, "funding_id": funding.id},
    )
    await outbox.emit(
        session,
        events.FUNDING_PURCHASED,
        events.subject(partner.id),
        {
            "purchase_id": purchase.purchase_id,
            "points": purchase.points,
            "amount_minor": purchase.amount_minor,
            "currency": purchase.currency,
            "funding_id": funding.id,
        },
    )
    return f"funding purchase {purchase.purchase_id}: {purchase.points} points funded"


async def purchase_failed(
    session: AsyncSession,
    record_id: uuid.UUID,
    payment_intent: str,
    reason: str,
    now: datetime,
    *,
    principal: Principal,
) -> str:
    """The purchase's payment failed: nothing is funded,
    ``partner.funding_purchase_failed`` is sent. Reported again (or after
    the success), nothing changes."""
    found = await _outcome_of(session, record_id)
    if found is None:
        return "ignored: no such funding purchase"
    program, partner, purchase = found
    if purchase.status != PurchaseStatus.PENDING:
        return f"ignored: purchase {purchase.status} already"
    purchase.status = PurchaseStatus.FAILED
    purchase.payment_intent_id = payment_intent
    purchase.failure = reason[:500]
    purchase.completed_at = now
    await session.flush()
    await audit.record(
        session,
        principal,
        "partner.funding_purchase.failed",
        _subject(program, partner, purchase.purchase_id),
        {"payment_intent": payment_intent, "reason": purchase.failure},
    )
    await outbox.emit(
        session,
        events.FUNDING_PURCHASE_FAILED,
        events.subject(partner.id),
        {
            "purchase_id": purchase.purchase_id,
            "points": purchase.points,
            "amount_minor": purchase.amount_minor,
            "currency": purchase.currency,
            "reason": purchase.failure,
        },
    )
    return f"funding purchase {purchase.purchase_id} failed"


def _readable(
    principal: Principal, program: Program, partner: Partner
) -> list[ColumnElement[bool]]:
    """Conditions of the purchases of ``partner`` the principal may read:
    of its program only, and for a partner principal its own firm's only;
    any other is not found, as a missing one."""
    conditions: list[ColumnElement[bool]] = [
        PartnerFundingPurchase.program_id == program.id,
        PartnerFundingPurchase.partner_id == partner.id,
    ]
    if principal.program_id is not None:
        conditions.append(PartnerFundingPurchase.program_id == principal.program_id)
    if principal.kind is PrincipalKind.PARTNER:
        conditions.append(PartnerFundingPurchase.partner_id == principal.partner_id)
    return conditions


async def get_purchase(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    purchase_id: str,
    *,
    principal: Principal,
) -> FundingPurchaseView:
    purchase = await session.scalar(
        select(PartnerFundingPurchase).where(
            *_readable(principal, program, partner),
            PartnerFundingPurchase.purchase_id == purchase_id,
        )
    )
    if purchase is None:
        raise NotFound(f"no funding purchase {purchase_id!r} of partner {partner.slug!r}")
    return FundingPurchaseView.of(purchase, partner.slug)


async def list_purchases(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
) -> Page[FundingPurchaseView]:
    """The partner's purchases, newest first."""
    query = select(PartnerFundingPurchase).where(*_readable(principal, program, partner))
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(PartnerFundingPurchase.id < after)
    rows = list(
        await session.scalars(query.order_by(PartnerFundingPurchase.id.desc()).limit(limit + 1))
    )
    return page_of(
        [FundingPurchaseView.of(p, partner.slug) for p in rows], [p.id for p in rows], limit
    )
