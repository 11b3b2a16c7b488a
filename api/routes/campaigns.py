"""The operator's oversight of joint campaigns under ``/programs/{slug}``:
propose one to partners of the program, read and stop any of them, and
their attribution. The operator funds nothing and approves nothing: the
participants do (``api.routes.partner_campaigns``). Each handler parses,
calls one use case and renders."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import (
    OPERATOR_READ,
    OPERATOR_WRITE,
    created_or_replayed,
    replayed,
)
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.partner_campaigns import PROPOSE_DESCRIPTION, CampaignIdPath
from api.routes.paths import path_program
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT
from partners.campaigns.attribution import campaign_attribution
from partners.campaigns.proposals import (
    get_campaign,
    list_campaigns,
    propose_campaign,
    stop_campaign,
)
from partners.campaigns.schemas import Attribution, CampaignPage, CampaignProposal, CampaignView


class CampaignController(Controller):
    path = "/programs/{slug:str}/campaigns"
    tags = ["joint campaigns"]
    guards = [require_scope("campaigns:write", reading="campaigns:read")]
    dependencies = {"program": Provide(path_program)}

    @post(
        "/",
        status_code=HTTPStatus.CREATED,
        summary="Propose a joint campaign to partners of the program",
        description=PROPOSE_DESCRIPTION.replace(
            " (the proposing partner is one, and approves its share by proposing)",
            " (every one of them must approve it: the operator funds nothing)",
        ),
        responses={**problem_responses(*OPERATOR_WRITE), **replayed(CampaignView, "proposal")},
    )
    async def propose(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[CampaignProposal],
    ) -> Response[CampaignView]:
        view = await propose_campaign(
            db_session, program, data, datetime.now(UTC), principal=operator(request)
        )
        return created_or_replayed(view)

    @get(
        "/",
        summary="The program's joint campaigns, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def list_all(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> CampaignPage:
        page = await list_campaigns(
            db_session, program, principal=operator(request), limit=limit, cursor=cursor
        )
        return CampaignPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/{campaign_id:uuid}",
        summary="A joint campaign",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        campaign_id: CampaignIdPath,
    ) -> CampaignView:
        return await get_campaign(db_session, program, campaign_id, principal=operator(request))

    @post(
        "/{campaign_id:uuid}/stop",
        status_code=HTTPStatus.OK,
        summary="Stop a joint campaign",
        description="Its bonus no longer applies; the end job gives each participant's unspent"
        " budget back. Stopping again changes nothing; an ended one: 409 campaign-not-open.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def stop(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        campaign_id: CampaignIdPath,
    ) -> CampaignView:
        return await stop_campaign(
            db_session, program, campaign_id, datetime.now(UTC), principal=operator(request)
        )

    @get(
        "/{campaign_id:uuid}/attribution",
        summary="What the campaign achieved: reach, bonus, spend and cost, against its holdout",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def attribution(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        campaign_id: CampaignIdPath,
    ) -> Attribution:
        return await campaign_attribution(
            db_session, program, campaign_id, datetime.now(UTC), principal=operator(request)
        )
