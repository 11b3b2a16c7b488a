"""Refunding through Stripe the points payments the domain refused after a
program's end of earning (``rewards.bought_points.PAYMENT_REFUSED``): the
member paid, no points were credited, so the money goes back in full.

Two steps, both outbox subscribers (``api.stripe.module``):

- ``queue_refunds`` takes each refusal and writes the refund due as an
  event of its own, on the payment's own subject. The refusal's subject
  is the program's, which its sunset and reinstatement events share: a
  refund that keeps failing (Stripe unreachable, a key revoked) holds up
  that one payment, not the program's events nor its operators' webhooks.
- ``refund_refused_payment`` refunds the payment (a Refund on its
  PaymentIntent) and writes the audit line in the transaction that marks
  the event handled. A Stripe failure raises: the outbox keeps the event
  and tries again later, with a growing delay, until Stripe answers.

A refund is made once however often it is tried: Stripe is asked first
for the payment's refunds (ours carries ``REFUND_METADATA``; a payment
refunded in full by hand needs none), and the refund is made under an
idempotency key derived from the payment, for a try whose answer was lost.
Asking first relies on no idempotency key's lifetime (24 hours at Stripe,
shorter than the outbox may keep retrying).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

import msgspec
import stripe
from sqlalchemy.ext.asyncio import AsyncSession

from api.settings import load_settings
from api.stripe.events import STRIPE
from api.stripe.gateway import PaymentsNotConfigured, client
from core import outbox
from core.outbox import BatchSubscriber, OutboxEvent
from rewards.bought_points import RefusedPaymentRefund, record_refused_payment_refund

log = logging.getLogger(__name__)

#: A refused payment's refund to make through Stripe (this module's own
#: topic, subject ``stripe-payment:<PaymentIntent id>``).
REFUND_DUE = "stripe.refused_payment_refund_due"

#: What the refund made for a refusal carries, to be told from the others.
REFUND_METADATA = {"kind": "points_payment_refused"}

#: Stripe's code for a refund asked of a charge refunded in full already.
_ALREADY_REFUNDED = "charge_already_refunded"

# Refunds that give money back, or will.
_GIVING_BACK = frozenset({"succeeded", "pending", "requires_action"})


class RefundDue(msgspec.Struct, kw_only=True, frozen=True):
    program_id: uuid.UUID
    payment_id: str
    member: str
    paid_minor: int


class _Refused(msgspec.Struct, kw_only=True, frozen=True):
    """What is read of a refusal's payload (``rewards.bought_points``)."""

    payment_id: str
    member: str
    paid_minor: int


async def _queue_refunds(session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
    for event in events:
        refused = msgspec.convert(event.payload, _Refused)
        if not refused.payment_id.startswith("pi_"):
            # Not a PaymentIntent: another provider's payment, not Stripe's to refund.
            continue
        # A program event's subject is ``program:<id>`` (``partners.program_webhook_events``).
        program_id = uuid.UUID(event.subject.removeprefix("program:"))
        await outbox.emit(
            session,
            REFUND_DUE,
            f"stripe-payment:{refused.payment_id}",
            RefundDue(
                program_id=program_id,
                payment_id=refused.payment_id,
                member=refused.member,
                paid_minor=refused.paid_minor,
            ),
        )


#: The subscriber of ``PAYMENT_REFUSED``: a batch, as the operators'
#: webhooks' fan-out it runs beside.
queue_refunds = BatchSubscriber(_queue_refunds)


async def refund_in_full(
    stripe_client: stripe.StripeClient, due: RefundDue
) -> RefusedPaymentRefund:
    """The payment's refund for its refusal: found at Stripe if made before,
    none if the payment was refunded in full otherwise, else made now."""
    refunds = await stripe_client.v1.refunds.list_async(
        params={"payment_intent": due.payment_id, "limit": 100}
    )
    given_back = 0
    for found in refunds.data:
        metadata = found.metadata.to_dict() if found.metadata else {}
        if metadata.get("kind") == REFUND_METADATA["kind"]:
            return _refund(due, found)
        if found.status in _GIVING_BACK:
            given_back += found.amount
    if given_back >= due.paid_minor:
        return _refunded_before(due, given_back)
    try:
        made = await stripe_client.v1.refunds.create_async(
            # No amount: what is left of the payment, all of it once nothing
            # was refunded by hand.
            params={"payment_intent": due.payment_id, "metadata": REFUND_METADATA},
            options={"idempotency_key": f"refused-payment-refund:{due.payment_id}"},
        )
    except stripe.InvalidRequestError as error:
        if error.code != _ALREADY_REFUNDED:
            raise
        # Refunded in full between the listing and now.
        return _refunded_before(due, due.paid_minor)
    return _refund(due, made)


def _refund(due: RefundDue, refund: stripe.Refund) -> RefusedPaymentRefund:
    return RefusedPaymentRefund(
        payment_id=due.payment_id,
        member=due.member,
        refund_id=refund.id,
        refunded_minor=refund.amount,
        status=refund.status or "unknown",
    )


def _refunded_before(due: RefundDue, amount: int) -> RefusedPaymentRefund:
    return RefusedPaymentRefund(
        payment_id=due.payment_id,
        member=due.member,
        refund_id=None,
        refunded_minor=amount,
        status="refunded before",
    )


async def refund_refused_payment(session: AsyncSession, event: OutboxEvent) -> None:
    """The subscriber of ``REFUND_DUE``: refund, then audit. Raising leaves
    the event to the outbox's next try."""
    due = msgspec.convert(event.payload, RefundDue)
    try:
        refund = await refund_in_full(client(load_settings()), due)
    except (stripe.StripeError, PaymentsNotConfigured) as error:
        reason = error.user_message if isinstance(error, stripe.StripeError) else None
        log.warning(
            "stripe: the refund of refused points payment %s failed, the outbox will try"
            " again: %s: %s",
            due.payment_id,
            type(error).__name__,
            reason or error,
        )
        raise
    await record_refused_payment_refund(session, due.program_id, refund, principal=STRIPE)
