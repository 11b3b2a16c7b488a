"""What the leads module brings to the platform (``api.modules`` lists it):
the operator's scopes, its jobs and constraints. Its partner scopes are in
``partners.module.PARTNER_SCOPES``; its events are partner events
(``partners.events``), so that partners' webhook endpoints receive them."""

from __future__ import annotations

from core.modules import Job, Module
from partners.leads import models
from partners.leads.offers import withdraw_due_offers
from partners.leads.registration import expire_exclusivity

LEADS = Module(
    name="leads",
    scopes={
        "leads:read": "Read leads, their scores and routing decisions, and the leads settings.",
        "leads:write": "Set lead scoring, routing and referral terms, partners' lead profiles;"
        " decide exclusivity extensions.",
    },
    jobs=(
        Job(
            name="withdraw-due-lead-offers",
            summary="Withdraw every lead offer not answered within its SLA and offer the lead"
            " to the next candidate.",
            run=withdraw_due_offers,
            every=30.0,
        ),
        Job(
            name="expire-lead-exclusivity",
            summary="Mark expired the leads whose exclusivity ended before they were won or lost.",
            run=expire_exclusivity,
            every=3600.0,
        ),
    ),
    constraints=models.CONSTRAINTS,
)
