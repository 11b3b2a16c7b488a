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
#: Market development funds (partners.mdf): a fund allocated to the partner;
#: an activity requested (to a brand partner funder); an activity approved
#: or refused, a claim submitted (to the funder), paid or refused (to the
#: fund's partner).
MDF_FUND_ALLOCATED = "mdf.fund_allocated"
MDF_ACTIVITY_REQUESTED = "mdf.activity_requested"
MDF_ACTIVITY_DECIDED = "mdf.activity_decided"
MDF_CLAIM_SUBMITTED = "mdf.claim_submitted"
MDF_CLAIM_PAID = "mdf.claim_paid"
MDF_CLAIM_REFUSED = "mdf.claim_refused"
#: Leads (partners.leads): a shared lead offered to the partner, to answer
#: by ``due_at``; an offer withdrawn (no answer in time); a lead the partner
#: registered or shared moved (offered, accepted, contacted, qualified, won, lost...).
LEAD_OFFERED = "lead.offered"
LEAD_OFFER_WITHDRAWN = "lead.offer_withdrawn"
LEAD_STATUS_CHANGED = "lead.status_changed"
#: Joint campaigns (partners.campaigns), to every participant: proposed,
#: approved (by one participant, or by all: see its status), started,
#: stopped (by a participant or the operator), ended (unspent budget released).
CAMPAIGN_PROPOSED = "campaign.proposed"
CAMPAIGN_APPROVED = "campaign.approved"
CAMPAIGN_STARTED = "campaign.started"
CAMPAIGN_STOPPED = "campaign.stopped"
CAMPAIGN_ENDED = "campaign.ended"
#: Data sharing (partners.data_sharing), to the recipient: members' shared
#: fields under an agreement; never sent once the agreement is out of force.
DATA_SHARED = "data_sharing.members_shared"

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
        MDF_FUND_ALLOCATED,
        MDF_ACTIVITY_REQUESTED,
        MDF_ACTIVITY_DECIDED,
        MDF_CLAIM_SUBMITTED,
        MDF_CLAIM_PAID,
        MDF_CLAIM_REFUSED,
        LEAD_OFFERED,
        LEAD_OFFER_WITHDRAWN,
        LEAD_STATUS_CHANGED,
        CAMPAIGN_PROPOSED,
        CAMPAIGN_APPROVED,
        CAMPAIGN_STARTED,
        CAMPAIGN_STOPPED,
        CAMPAIGN_ENDED,
        DATA_SHARED,
    }
)


def subject(partner_id: uuid.UUID) -> str:
    return f"partner:{partner_id}"
