"""What the Stripe integration brings to the platform (``api.modules``
lists it): the job that processes its inbox, the one that retries
partners' failed collections, and the refund of the points payments
refused after a program's end of earning (``api.stripe.refunds``)."""

from __future__ import annotations

from api.settings import load_settings
from api.stripe.collection import retry_collections
from api.stripe.inbox import process_inbox
from api.stripe.refunds import REFUND_DUE, queue_refunds, refund_refused_payment
from core.modules import Job, JobContext, Module
from rewards.bought_points import PAYMENT_REFUSED


async def _process_inbox(context: JobContext) -> int:
    return await process_inbox(context.sessions, context.ledger)


async def _retry_collections(context: JobContext) -> int:
    settings = load_settings()
    if not settings.stripe_api_key:
        return 0
    return await retry_collections(settings, context.sessions, context.now)


STRIPE = Module(
    name="stripe",
    topics=frozenset({REFUND_DUE}),
    subscribers={PAYMENT_REFUSED: queue_refunds, REFUND_DUE: refund_refused_payment},
    jobs=(
        Job(
            # The webhook asks for this job by its task's name right after
            # storing an event (``api.stripe.webhooks``).
            name="process-stripe-inbox",
            summary="Process the Stripe events received and not yet processed.",
            run=_process_inbox,
            every=10.0,
        ),
        Job(
            name="retry-partner-collections",
            summary="Collect again the partners' statements whose last attempt failed"
            " and whose retry is due (after 1, 3, then 7 days).",
            run=_retry_collections,
            every=3600.0,
        ),
    ),
)
