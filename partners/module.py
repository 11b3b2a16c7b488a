"""What the partners module brings to the platform (``api.modules`` lists
it): its scopes (of operator keys and of partner clients), jobs, outbox
topics and constraints.

Partner clients carry the scopes in ``PARTNER_SCOPES``; operator API keys
those in ``PARTNERS.scopes``.
"""

from __future__ import annotations

from core.modules import Job, Module
from partners import (
    access_models,
    coalition_models,
    collection_models,
    departure_models,
    events,
    exchange_models,
    funding_purchase_models,
    models,
    statement_models,
    webhook_models,
)
from partners.final_statements import issue_due_final_statements
from partners.idempotency_keys import purge_idempotency_keys
from partners.member_data import MEMBER_DATA
from partners.program_webhook_events import OPERATOR_TOPICS
from partners.program_webhooks import program_fan_out
from partners.webhook_deliveries import fan_out
from partners.webhook_job import deliver_webhooks

#: Scope -> what it grants, for partner clients (OAuth client credentials).
#: The next issue adds lead, campaign and data scopes here.
PARTNER_SCOPES: dict[str, str] = {
    "points:issue": "Issue the program's points to members.",
    "leads:share": "Register leads and deals, share leads, read the partner's own registrations"
    " and report the status of its kept deals.",
    "leads:receive": "Read the leads offered to the partner, accept or decline them, and report"
    " the status of those it accepted.",
    "points:redeem": "Accept points as payment: reserve, capture, release and refund.",
    "statements:read": "Read the partner's statements and positions.",
    "webhooks:manage": "Manage the partner's webhook endpoints and read their deliveries.",
    "campaigns:manage": "Propose joint campaigns, approve or stop those the partner takes part"
    " in, and read them and their attribution.",
    "mdf:read": "Read the market development funds the partner receives or funds, their"
    " activities and claims.",
    "mdf:request": "Request activities against the partner's funds; draft and submit claims.",
    "mdf:fund": "As a brand partner: allocate market development funds to other partners,"
    " approve and refuse their activities and claims.",
    "data:share": "Propose, opt in to and revoke data-sharing agreements; read, export and push"
    " members' data shared under them (only fields members consented to); read their"
    " disclosure log.",
    "data:match": "Match the partner's customer or account lists with another partner's under"
    " a data-sharing agreement (overlap matching): fetch its key, upload lists, run matches"
    " and read their results.",
}

PARTNERS = Module(
    name="partners",
    scopes={
        "partners:read": "Read partner firms, their users, clients and contracts.",
        "partners:write": "Create and manage partner firms, their users, clients and contracts.",
        "exchanges:read": "Read the program's exchange agreements with other programs.",
        "exchanges:write": "Propose and accept exchange agreements and their rate versions.",
        "webhooks:read": "Read the program's own webhook endpoints and their deliveries.",
        "webhooks:write": "Add, change, disable and delete the program's own webhook endpoints,"
        " rotate their secrets, replay their deliveries and send test events.",
    },
    topics=events.TOPICS,
    # Every partner event may be a webhook (partners.webhook_deliveries), and
    # every program event to an operator's endpoint (partners.program_webhooks).
    subscribers={
        **dict.fromkeys(events.TOPICS, fan_out),
        **dict.fromkeys(OPERATOR_TOPICS, program_fan_out),
    },
    jobs=(
        Job(
            name="deliver-webhooks",
            summary="Make and send the partners' due webhook deliveries, for a few seconds.",
            run=deliver_webhooks,
            every=1.0,
        ),
        Job(
            name="purge-idempotency-keys",
            summary="Forget the partner API's stored answers older than 24 hours.",
            run=purge_idempotency_keys,
            every=3600.0,
        ),
        Job(
            name="issue-final-statements",
            summary="Issue the final statement of each leaving partner whose valuation date"
            " has passed (after its regular statements still due), and offboard it.",
            run=issue_due_final_statements,
            every=3600.0,
        ),
    ),
    constraints=(
        *models.CONSTRAINTS,
        *webhook_models.CONSTRAINTS,
        *coalition_models.CONSTRAINTS,
        *exchange_models.CONSTRAINTS,
        *statement_models.CONSTRAINTS,
        *access_models.CONSTRAINTS,
        *collection_models.CONSTRAINTS,
        *departure_models.CONSTRAINTS,
        *funding_purchase_models.CONSTRAINTS,
    ),
    member_data=MEMBER_DATA,
)
