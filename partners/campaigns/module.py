"""What joint campaigns bring to the platform (``api.modules`` lists it):
the jobs that start and end campaigns, the bonus on partners' issuances
(a subscriber of ``partner.points_issued``) and the constraints' meaning.
Its webhook topics are the partners module's (``partners.events``)."""

from __future__ import annotations

from core.modules import Job, JobContext, Module
from partners import events
from partners.campaigns import models
from partners.campaigns.bonus import on_points_issued
from partners.campaigns.lifecycle import close_due_campaigns, start_due_campaigns


async def _start(context: JobContext) -> int:
    return await start_due_campaigns(context.sessions, context.ledger, context.now)


async def _end(context: JobContext) -> int:
    return await close_due_campaigns(context.sessions, context.ledger, context.now)


CAMPAIGNS = Module(
    name="campaigns",
    scopes={
        "campaigns:read": "Read the program's joint campaigns and their attribution.",
        "campaigns:write": "Propose joint campaigns to the program's partners and stop them.",
    },
    subscribers={events.POINTS_ISSUED: on_points_issued},
    jobs=(
        Job(
            name="start-campaigns",
            summary="Start every approved joint campaign whose start has come: fund its"
            " budgets from the participants and draw its holdout.",
            run=_start,
            every=30.0,
        ),
        Job(
            name="end-campaigns",
            summary="End every joint campaign whose end has passed, and give back what the"
            " budgets of ended and stopped campaigns have left.",
            run=_end,
            every=30.0,
        ),
    ),
    constraints=models.CONSTRAINTS,
)
