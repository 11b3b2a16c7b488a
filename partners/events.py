"""The events the partners module writes to the outbox (``core.outbox``),
which become webhooks to the partner concerned (``partners.webhooks``).

Each event's subject is ``partner:<id>`` of the partner it is about, so a
partner's events are handed on in the order they happened. A topic is also
the webhook's event type (``type`` of the Standard Webhooks payload).
"""

from __future__ import annotations

import uuid

POINTS_ISSUED = "partner.points_issued"
POINTS_ACCEPTED = "partner.points_accepted"
POINTS_REFUNDED = "partner.points_refunded"
STATEMENT_ISSUED = "partner.statement_issued"
PAYMENT_SUCCEEDED = "partner.payment_succeeded"
PAYMENT_FAILED = "partner.payment_failed"
#: A block of points bought through the payment provider was paid and funded.
FUNDING_PURCHASED = "partner.funding_purchased"
FUNDING_PURCHASE_FAILED = "partner.funding_purchase_failed"

#: Every topic a partner's webhook endpoint may subscribe to. The next
#: issue adds its lead and campaign events here.
TOPICS: frozenset[str] = frozenset(
    {
        POINTS_ISSUED,
        POINTS_ACCEPTED,
        POINTS_REFUNDED,
        STATEMENT_ISSUED,
        PAYMENT_SUCCEEDED,
        PAYMENT_FAILED,
        FUNDING_PURCHASED,
        FUNDING_PURCHASE_FAILED,
    }
)


def subject(partner_id: uuid.UUID) -> str:
    return f"partner:{partner_id}"
