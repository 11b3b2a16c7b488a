"""Blocks of points prepaid partners buy through Stripe: the partner's
customer (made once, as for collection, with the purchase's payment method
attached to it), and one PaymentIntent per purchase
on the partner's saved payment method, off session, confirmed at once,
under an idempotency key derived from the partner and the caller's
``purchase_id``: a retried request (or a crash between Stripe's answer and
our commit) charges nothing twice.

The outcome comes back signed as ``payment_intent.succeeded`` or
``payment_intent.payment_failed`` with metadata ``kind`` =
``partner_funding`` (``api.stripe.events``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from api.settings import Settings
from api.stripe.collection import confirm_off_session, partner_customer
from api.stripe.gateway import PARTNER_FUNDING, client
from core.models import Program
from core.principal import Principal
from partners.funding_purchase_schemas import FundingPurchaseRequest, FundingPurchaseView
from partners.funding_purchases import plan_purchase, record_asked
from partners.models import Partner


async def buy_points_block(
    settings: Settings,
    session: AsyncSession,
    program: Program,
    partner: Partner,
    request: FundingPurchaseRequest,
    *,
    principal: Principal,
) -> FundingPurchaseView:
    """Price and record the purchase and commit it, then ask Stripe and
    record the PaymentIntent (the caller commits that). A purchase decided
    already answers without asking Stripe."""
    plan, view = await plan_purchase(
        session, program, partner, request, datetime.now(UTC), principal=principal
    )
    if plan is None:
        return view
    # Before the commit: a server without Stripe keeps no purchase it cannot ask for.
    stripe_client = client(settings)
    # Committed before Stripe is asked, so that the webhook always finds the
    # purchase. In the partner API this also ends the Idempotency-Key's claim
    # (a transaction's lock); a request racing with the same key finds the
    # purchase and asks Stripe under the same key, which charges once.
    await session.commit()
    customer = await partner_customer(stripe_client, session, plan)
    # Kept even if the PaymentIntent is refused: the next purchase makes no customer again.
    await session.commit()
    params: Any = {
        "amount": plan.amount_minor,
        "currency": plan.currency.lower(),
        "customer": customer,
        "payment_method": plan.payment_method_id,
        "off_session": True,
        "confirm": True,
        # What the webhook's processing reads back (``api.stripe.events``).
        "metadata": {
            "kind": PARTNER_FUNDING,
            "program": plan.program_slug,
            "partner": plan.partner_slug,
            "purchase": plan.record_id,
            "points": str(plan.points),
        },
    }
    key = f"partner-funding:{plan.partner_id}:{plan.purchase_id}"
    intent = await confirm_off_session(stripe_client, params, key)
    return await record_asked(session, uuid.UUID(plan.record_id), intent, replayed=view.replayed)
