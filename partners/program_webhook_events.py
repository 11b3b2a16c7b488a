"""The program events a program's own webhook endpoints (its operators')
may take: outbox topics of other modules whose subject is ``program:<id>``,
each sent as it was emitted (the event's payload is the webhook's
``data``). The partners' webhooks take the partner events instead
(``partners.events``).

The reconciliation's alert is finance's, which sits above partners: its
topic is named here as finance spells it (``finance.reconciliation.
ALERT_TOPIC``; tests/partners/test_program_webhooks.py holds the two
together).
"""

from __future__ import annotations

from rewards import bought_points, reinstatement, sunset

#: A reconciliation run found differences (``finance.reconciliation``).
RECONCILIATION_DIFFERENCES = "finance.reconciliation_differences"

#: Topic -> what it tells the operator, for the reference.
OPERATOR_EVENTS: dict[str, str] = {
    RECONCILIATION_DIFFERENCES: "A reconciliation run found differences: its id, the ledgers"
    " it read, the differences counted per check, and the path of its drill-down.",
    sunset.SCHEDULED: "The program's sunset was scheduled: its date, notice and reason.",
    sunset.CANCELLED: "The program's scheduled sunset was cancelled.",
    sunset.COMPLETED: "The program's sunset came: the points expired and the wallets they were in.",
    reinstatement.REINSTATED: "Expired points were reinstated: the reinstatement and its totals.",
    bought_points.PAYMENT_REFUSED: "A member's payment for points succeeded after the end of"
    " earning and was refused: the payment, the member, the points and the amount paid, which"
    " Coalition refunds through Stripe (audited as `points.refused_payment_refund`).",
}

#: Every topic a program's own webhook endpoint may subscribe to.
OPERATOR_TOPICS: frozenset[str] = frozenset(OPERATOR_EVENTS)
