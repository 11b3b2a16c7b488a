"""What the Stripe integration brings to the platform (``api.modules``
lists it): the job that processes its inbox."""

from __future__ import annotations

from api.stripe.inbox import process_inbox
from core.modules import Job, JobContext, Module


async def _process_inbox(context: JobContext) -> int:
    return await process_inbox(context.sessions, context.ledger)


STRIPE = Module(
    name="stripe",
    jobs=(
        Job(
            # The webhook asks for this job by its task's name right after
            # storing an event (``api.stripe.webhooks``).
            name="process-stripe-inbox",
            summary="Process the Stripe events received and not yet processed.",
            run=_process_inbox,
            every=10.0,
        ),
    ),
)
