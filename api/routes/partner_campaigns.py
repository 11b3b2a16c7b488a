"""The partner API of joint campaigns: propose one to other partners,
approve or stop one the partner takes part in, read them and their
attribution. A campaign the partner takes no part in is not found (404),
exactly as one that does not exist. Each handler parses, calls one use
case (``partners.campaigns``) and renders."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.idempotency import IdempotencyKeyHeader
from api.partner_access import (
    PARTNER_LIST,
    PARTNER_READ,
    PARTNER_WRITE,
    partner,
    partner_scope,
    partner_security,
)
from api.problems import problem_responses
from api.routes import created_or_replayed, replayed
from api.routes.pagination import Cursor, Limit
from core.pagination import PAGE_LIMIT_DEFAULT
from partners.campaigns.attribution import campaign_attribution
from partners.campaigns.proposals import (
    SCOPE,
    approve_campaign,
    get_campaign,
    list_campaigns,
    propose_campaign,
    stop_campaign,
)
from partners.campaigns.schemas import Attribution, CampaignPage, CampaignProposal, CampaignView
from partners.funding import own_firm

CampaignIdPath = Annotated[UUID, PathParameter(description="The campaign's id.")]

PROPOSE_DESCRIPTION = (
    "Proposed to the participants listed (the proposing partner is one, and approves its"
    " share by proposing); it runs only once every participant approved, from starts_at to"
    " ends_at. Shares are in basis points and add up to 10,000; the budget and every bonus"
    " are split by them, largest remainder first, ties to the participant listed first."
    " Stores (left out: the participants themselves) are companies of a participant's"
    " group. Refused, nothing written: 422 invalid-campaign (a partner or store unknown,"
    " inactive or of no participant; shares not adding up; an end before the start), 409"
    " already-exists (the reference)."
)


class PartnerCampaignController(Controller):
    path = "/campaigns"
    tags = ["joint campaigns"]
    guards = [partner_scope(SCOPE)]
    security = partner_security(SCOPE)

    @post(
        "/",
        status_code=HTTPStatus.CREATED,
        summary="Propose a joint campaign to other partners",
        description=PROPOSE_DESCRIPTION,
        responses={**problem_responses(*PARTNER_WRITE), **replayed(CampaignView, "proposal")},
    )
    async def propose(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[CampaignProposal],
    ) -> Response[CampaignView]:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        view = await propose_campaign(
            db_session, program, data, datetime.now(UTC), principal=principal
        )
        return created_or_replayed(view)

    @get(
        "/",
        summary="The campaigns the partner takes part in, newest first",
        responses=problem_responses(*PARTNER_LIST),
    )
    async def list_all(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> CampaignPage:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        page = await list_campaigns(
            db_session, program, principal=principal, limit=limit, cursor=cursor
        )
        return CampaignPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/{campaign_id:uuid}",
        summary="A campaign the partner takes part in",
        responses=problem_responses(*PARTNER_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        campaign_id: CampaignIdPath,
    ) -> CampaignView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await get_campaign(db_session, program, campaign_id, principal=principal)

    @post(
        "/{campaign_id:uuid}/approvals",
        status_code=HTTPStatus.OK,
        summary="Approve the partner's share of a proposed campaign",
        description="Once every participant approved, the campaign is `approved` and starts"
        " at starts_at (its budget is then funded from each participant's issuance account;"
        " a participant short of points leaves it `unfunded`). Approving again changes"
        " nothing. A campaign no longer proposed: 409 campaign-not-open.",
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def approve(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        campaign_id: CampaignIdPath,
    ) -> CampaignView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await approve_campaign(
            db_session, program, campaign_id, datetime.now(UTC), principal=principal
        )

    @post(
        "/{campaign_id:uuid}/stop",
        status_code=HTTPStatus.OK,
        summary="Stop a campaign the partner takes part in",
        description="Any participant may stop it, before or while it runs: its bonus no"
        " longer applies, and the end job gives each participant's unspent budget back."
        " Stopping again changes nothing. A campaign ended (or unfunded): 409"
        " campaign-not-open.",
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def stop(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        campaign_id: CampaignIdPath,
    ) -> CampaignView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await stop_campaign(
            db_session, program, campaign_id, datetime.now(UTC), principal=principal
        )

    @get(
        "/{campaign_id:uuid}/attribution",
        summary="What the campaign achieved: reach, bonus, spend and cost, against its holdout",
        description="Members reached and bonus points issued; per participant the spend of"
        " targeted members at its stores and the bonus points it funded; the spend of the"
        " targeted members against the holdout's (drawn at the start, no bonus), per member.",
        responses=problem_responses(*PARTNER_READ),
    )
    async def attribution(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        campaign_id: CampaignIdPath,
    ) -> Attribution:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await campaign_attribution(
            db_session, program, campaign_id, datetime.now(UTC), principal=principal
        )
