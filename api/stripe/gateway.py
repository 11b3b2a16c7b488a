"""Talking to Stripe: PaymentIntents for points bought, and the webhook
signature check (both with the ``stripe`` package)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import stripe

from api.settings import Settings
from core.models import Member, Program
from rewards.bought_points import price_of_points

#: The PaymentIntent's metadata ``kind`` of a payment for points (any other
#: succeeded payment with a program and member is a purchase).
POINTS_PURCHASE = "points_purchase"
#: The PaymentIntent's metadata ``kind`` of a partner statement's collection
#: (``api.stripe.collection``).
PARTNER_STATEMENT = "partner_statement"
#: The PaymentIntent's metadata ``kind`` of a block of points a prepaid
#: partner buys (``api.stripe.funding_purchases``).
PARTNER_FUNDING = "partner_funding"


class PaymentsNotConfigured(Exception):
    pass


class PointsPayment(msgspec.Struct, kw_only=True, frozen=True):
    """A Stripe PaymentIntent for points: the points are credited once Stripe
    reports the payment succeeded."""

    payment_intent: Annotated[str, msgspec.Meta(description="The Stripe PaymentIntent's id.")]
    client_secret: Annotated[
        str,
        msgspec.Meta(
            description="The PaymentIntent's client secret, for the member's app to confirm"
            " the payment with Stripe.js (keep it to this member)."
        ),
    ]
    points: Annotated[int, msgspec.Meta(description="The points bought.")]
    amount_minor: Annotated[
        int,
        msgspec.Meta(
            description="Their price in minor units of `currency` (cents): their redemption"
            " value, rounded up."
        ),
    ]
    currency: Annotated[str, msgspec.Meta(description="The program's currency, ISO 4217.")]


def client(settings: Settings) -> stripe.StripeClient:
    if not settings.stripe_api_key:
        raise PaymentsNotConfigured("STRIPE_API_KEY is not set")
    addresses: Any = {"api": settings.stripe_api_base} if settings.stripe_api_base else None
    return stripe.StripeClient(
        settings.stripe_api_key, base_addresses=addresses, max_network_retries=2
    )


async def start_points_payment(
    settings: Settings, program: Program, member: Member, points: int, idempotency_key: str
) -> PointsPayment:
    amount = price_of_points(program, points)
    intent = await client(settings).v1.payment_intents.create_async(
        params={
            "amount": amount,
            "currency": program.currency.lower(),
            # What the webhook's processing reads back (``api.stripe.events``).
            "metadata": {
                "kind": POINTS_PURCHASE,
                "program": program.slug,
                "member": member.external_id,
                "points": str(points),
            },
        },
        options={
            "idempotency_key": f"points:{program.slug}:{member.external_id}:{idempotency_key}"
        },
    )
    return PointsPayment(
        payment_intent=intent.id,
        client_secret=intent.client_secret or "",
        points=points,
        amount_minor=amount,
        currency=program.currency,
    )


def verify_webhook(settings: Settings, payload: bytes, signature: str | None) -> dict[str, Any]:
    """The event, if the signature is Stripe's; raises ``ValueError`` otherwise
    (or if the signed body is not a JSON object)."""
    if not settings.stripe_webhook_secret:
        raise PaymentsNotConfigured("STRIPE_WEBHOOK_SECRET is not set")
    try:
        event = stripe.Webhook.construct_event(payload, signature, settings.stripe_webhook_secret)
    except stripe.SignatureVerificationError as error:
        raise ValueError(f"the signature does not match: {error.user_message or error}") from None
    except (ValueError, TypeError, AttributeError):
        # Signed, so sent with the secret, but not an event Stripe would send.
        raise ValueError("the signed body is not a JSON object") from None
    event_dict: dict[str, Any] = event.to_dict()
    return event_dict
