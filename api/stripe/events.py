"""What Stripe's events mean to the domains: each one handled is turned into
a call of a domain use case, acting as ``system:stripe``.

- ``payment_intent.succeeded`` paying for points (metadata ``kind`` =
  ``points_purchase``, with ``program``, ``member`` and ``points``) credits
  the points bought (``rewards.bought_points``);
- ``payment_intent.succeeded`` for an order (metadata ``program`` and
  ``member``), or ``charge.succeeded`` of a charge without a payment intent,
  is a purchase whose order id is the payment intent's (or the charge's) id;
- ``charge.refunded`` names the payment by the charge's ``payment_intent``
  (or its own id): it takes back the refunded share of the points that
  payment bought, or returns the newly refunded part of the purchase it
  paid for. The program and member are the ones recorded when the payment
  succeeded; the Charge's metadata is not read (Stripe does not copy a
  PaymentIntent's metadata to its charges).

- ``payment_intent.succeeded`` / ``payment_intent.payment_failed`` of a
  partner statement's collection (metadata ``kind`` = ``partner_statement``,
  with ``statement`` and ``attempt``) records the payment or schedules the
  next attempt (``partners.collection``).
- ``payment_intent.succeeded`` / ``payment_intent.payment_failed`` of a
  block of points a prepaid partner buys (metadata ``kind`` =
  ``partner_funding``, with ``purchase``) funds the block, once, or records
  the failure (``partners.funding_purchases``).

Every step is idempotent (order, return and transfer ids derive from
Stripe's ids), so an event handled twice changes nothing. An event whose
content is malformed is refused (kept on the inbox row, not retried).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from api.stripe.gateway import PARTNER_FUNDING, PARTNER_STATEMENT, POINTS_PURCHASE
from core.members import get_member
from core.models import Member, Program
from core.principal import system
from core.programs import get_program
from ledger import Ledger
from ledger.bounds import BIGINT_MAX, ExternalId, NonNegativeBigInt
from partners.collection import collection_failed, collection_succeeded
from partners.funding_purchases import purchase_failed, purchase_succeeded
from rewards.bought_points import (
    PaymentShort,
    PointsPaid,
    credit_bought_points,
    refund_bought_points,
)
from rewards.errors import ProgramSunsetting
from rewards.purchase_recording import record_purchase
from rewards.purchases import PurchaseEvent
from rewards.refunds import return_refunded_part

#: Who acts, in the audit trail, for what Stripe reports.
STRIPE = system("stripe")

# Seconds since 1970 that Python's datetime can hold (to 9998, as elsewhere).
_CREATED_MAX = 253370764800


class _Metadata(msgspec.Struct, kw_only=True):
    """What the shop (or ``api.stripe.gateway``) put on the PaymentIntent."""

    kind: str | None = None
    program: ExternalId | None = None
    member: ExternalId | None = None
    points: Annotated[int, msgspec.Meta(gt=0, le=BIGINT_MAX)] | None = None
    #: A partner statement's collection (``api.stripe.collection``).
    statement: uuid.UUID | None = None
    attempt: Annotated[int, msgspec.Meta(gt=0, le=1000)] | None = None
    #: A partner's block of points (``api.stripe.funding_purchases``).
    purchase: uuid.UUID | None = None


class _Payment(msgspec.Struct, kw_only=True):
    """The fields read of a PaymentIntent or a Charge (the event's object)."""

    id: ExternalId
    amount: NonNegativeBigInt = 0
    amount_received: NonNegativeBigInt | None = None
    amount_refunded: NonNegativeBigInt = 0
    currency: Annotated[str, msgspec.Meta(max_length=3)] = ""
    created: Annotated[int, msgspec.Meta(ge=0, le=_CREATED_MAX)] | None = None
    #: A Charge's PaymentIntent: its id, or the object when expanded.
    payment_intent: ExternalId | dict[str, Any] | None = None
    metadata: _Metadata = msgspec.field(default_factory=_Metadata)
    last_payment_error: dict[str, Any] | None = None

    @property
    def paid(self) -> int:
        return self.amount if self.amount_received is None else self.amount_received

    @property
    def intent_id(self) -> str | None:
        if isinstance(self.payment_intent, dict):
            found = self.payment_intent.get("id")
            return found if isinstance(found, str) and found else None
        return self.payment_intent


_HANDLED = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "charge.succeeded",
        "charge.refunded",
    }
)


async def handle_event(session: AsyncSession, ledger: Ledger, event: dict[str, Any]) -> str:
    """Handle one event in the session's transaction; answers the outcome
    kept on its inbox row. A domain refusal raises its ``DomainError``."""
    kind = event.get("type")
    if kind not in _HANDLED:
        return f"ignored: {kind}"
    data = event.get("data")
    try:
        payment = msgspec.convert(
            data.get("object") if isinstance(data, dict) else None, _Payment, strict=False
        )
    except msgspec.ValidationError as error:
        return f"refused: malformed {kind}: {error}"
    if payment.metadata.kind == PARTNER_STATEMENT and kind.startswith("payment_intent."):
        return await _statement_collection(session, ledger, kind, payment)
    if payment.metadata.kind == PARTNER_FUNDING and kind.startswith("payment_intent."):
        return await _funding_purchase(session, ledger, kind, payment)
    if kind == "payment_intent.payment_failed":
        return f"ignored: {kind} of no partner statement"
    if kind == "charge.refunded":
        return await _refund(session, ledger, payment)
    if kind == "charge.succeeded" and payment.intent_id is not None:
        # Its payment intent's own event is the purchase.
        return f"ignored: {kind} of a payment intent"
    found = await _payer(session, payment)
    if found is None:
        return "ignored: no member in metadata"
    program, member = found
    if kind == "payment_intent.succeeded" and payment.metadata.kind == POINTS_PURCHASE:
        return await _points_bought(session, ledger, program, member, payment)
    return await _purchase(session, ledger, program, member, payment)


async def _statement_collection(
    session: AsyncSession, ledger: Ledger, kind: str, payment: _Payment
) -> str:
    if payment.metadata.statement is None or payment.metadata.attempt is None:
        return "refused: no statement or attempt in metadata"
    if kind == "payment_intent.succeeded":
        return await collection_succeeded(
            session,
            ledger,
            payment.metadata.statement,
            payment.id,
            payment.paid,
            principal=STRIPE,
        )
    return await collection_failed(
        session,
        payment.metadata.statement,
        payment.metadata.attempt,
        payment.id,
        _failure(payment),
        datetime.now(UTC),
        principal=STRIPE,
    )


async def _funding_purchase(
    session: AsyncSession, ledger: Ledger, kind: str, payment: _Payment
) -> str:
    if payment.metadata.purchase is None:
        return "refused: no purchase in metadata"
    now = datetime.now(UTC)
    if kind == "payment_intent.succeeded":
        return await purchase_succeeded(
            session,
            ledger,
            payment.metadata.purchase,
            payment.id,
            payment.paid,
            payment.currency,
            now,
            principal=STRIPE,
        )
    return await purchase_failed(
        session, payment.metadata.purchase, payment.id, _failure(payment), now, principal=STRIPE
    )


def _failure(payment: _Payment) -> str:
    error = payment.last_payment_error or {}
    return str(error.get("message") or error.get("code") or "the payment failed")


async def _payer(session: AsyncSession, payment: _Payment) -> tuple[Program, Member] | None:
    """The member a succeeded payment names in its metadata."""
    if not payment.metadata.program or not payment.metadata.member:
        return None
    program = await get_program(session, STRIPE, payment.metadata.program)
    return program, await get_member(session, program, payment.metadata.member)


async def _points_bought(
    session: AsyncSession, ledger: Ledger, program: Program, member: Member, payment: _Payment
) -> str:
    if payment.metadata.points is None:
        return "refused: no points in metadata"
    try:
        bought = await credit_bought_points(
            session,
            ledger,
            program,
            member,
            PointsPaid(
                payment_id=payment.id,
                points=payment.metadata.points,
                paid_minor=payment.paid,
                currency=payment.currency,
                started_at=(
                    datetime.fromtimestamp(payment.created, UTC)
                    if payment.created is not None
                    else None
                ),
            ),
            principal=STRIPE,
        )
    except (PaymentShort, ProgramSunsetting) as error:
        # Marked refused, not retried: a retry would be refused the same way.
        # A refusal after the end of earning is refunded from its outbox
        # event (``api.stripe.refunds``); a short payment is the shop's.
        return f"refused: {error}"
    return f"points bought: {bought.points}"


async def _purchase(
    session: AsyncSession, ledger: Ledger, program: Program, member: Member, payment: _Payment
) -> str:
    now = datetime.now(UTC)
    # Stripe's objects carry their creation time; without one, the time to
    # the second, so that a replay soon after records the same purchase.
    created = payment.created if payment.created is not None else int(now.timestamp())
    at = datetime.fromtimestamp(created, UTC)
    result = await record_purchase(
        session,
        ledger,
        program,
        PurchaseEvent(
            member=member.external_id,
            order_id=payment.id,
            amount_minor=payment.paid,
            currency=payment.currency.upper(),
            occurred_at=min(at, now),
        ),
        now,
        principal=STRIPE,
        # The event's transaction only marks the inbox row after this: the
        # purchase, its ledger transfers, its audit line and that mark
        # commit together.
        atomic=True,
    )
    return f"purchase: {result.points} points"


async def _refund(session: AsyncSession, ledger: Ledger, charge: _Payment) -> str:
    # Stripe reports the total refunded so far on the charge.
    payment_id = charge.intent_id or charge.id
    bought = await refund_bought_points(
        session, ledger, payment_id, charge.amount_refunded, principal=STRIPE
    )
    if bought is not None:
        if bought.replayed:
            return "ignored: nothing new refunded"
        return (
            f"refund of bought points: {bought.points} points back ({bought.debt_points} as debt)"
        )
    refunded = await return_refunded_part(
        session, ledger, payment_id, charge.amount_refunded, principal=STRIPE
    )
    if refunded is None:
        return "ignored: no such purchase"
    if refunded.returned is None:
        return "ignored: nothing new refunded"
    return f"return: {refunded.returned.points_reversed} points"
