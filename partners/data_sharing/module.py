"""What data sharing brings to the platform (``api.modules`` lists it): the
job that expires agreements, the meaning of its constraints, and the
member data it keeps. Its partner scope (``data:share``) is in
``partners.module.PARTNER_SCOPES``; its webhook type
(``data_sharing.members_shared``) in ``partners.events``."""

from __future__ import annotations

from core.modules import Job, JobContext, Module
from partners.data_sharing import models, overlap_models
from partners.data_sharing.agreements import expire_agreements
from partners.data_sharing.member_data import MEMBER_DATA


async def _expire(context: JobContext) -> int:
    async with context.sessions() as session, session.begin():
        return await expire_agreements(session, context.now)


DATA_SHARING = Module(
    name="data_sharing",
    jobs=(
        Job(
            name="expire-data-sharing-agreements",
            summary="Mark data-sharing agreements past their expiry expired and cancel their"
            " waiting webhook deliveries.",
            run=_expire,
            every=60.0,
        ),
    ),
    constraints=(*models.CONSTRAINTS, *overlap_models.CONSTRAINTS),
    member_data=MEMBER_DATA,
)
