"""What the partners module brings to the platform (``api.modules`` lists
it): its scopes (of operator keys and of partner clients), jobs, outbox
topics and constraints.

Partner clients carry the scopes in ``PARTNER_SCOPES``; operator API keys
those in ``PARTNERS.scopes``.
"""

from __future__ import annotations

from core.modules import Module
from partners import events, models

#: Scope -> what it grants, for partner clients (OAuth client credentials).
#: The next issue adds lead, campaign and data scopes here.
PARTNER_SCOPES: dict[str, str] = {
    "points:issue": "Issue the program's points to members.",
    "points:redeem": "Accept points as payment: reserve, capture, release and refund.",
    "statements:read": "Read the partner's statements and positions.",
    "webhooks:manage": "Manage the partner's webhook endpoints and read their deliveries.",
}

PARTNERS = Module(
    name="partners",
    scopes={
        "partners:read": "Read partner firms, their users, clients and contracts.",
        "partners:write": "Create and manage partner firms, their users, clients and contracts.",
    },
    topics=events.TOPICS,
    constraints=models.CONSTRAINTS,
)
