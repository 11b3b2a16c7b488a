"""The operator's view of a partner firm's webhook endpoints: read them, and
disable or enable one (a partner manages its own through the partner API,
``api.routes.partner_webhooks``)."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_READ, OPERATOR_WRITE
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_partner, path_program
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT
from partners.models import Partner
from partners.webhook_endpoints import get_endpoint, list_endpoints, set_endpoint_status
from partners.webhook_models import EndpointStatus
from partners.webhook_schemas import EndpointView, StatusChange

EndpointIdPath = Annotated[UUID, PathParameter(description="The webhook endpoint's id.")]


class EndpointPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[EndpointView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class OperatorWebhookController(Controller):
    path = "/programs/{slug:str}/partners/{partner:str}/webhook-endpoints"
    tags = ["partner webhooks"]
    guards = [require_scope("partners:write", reading="partners:read")]
    dependencies = {"program": Provide(path_program), "firm": Provide(path_partner)}

    @get(
        "/",
        summary="A partner firm's webhook endpoints, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def list_endpoints(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> EndpointPage:
        page = await list_endpoints(
            db_session, principal=operator(request), partner_id=firm.id, cursor=cursor, limit=limit
        )
        return EndpointPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/{endpoint_id:uuid}",
        summary="A partner firm's webhook endpoint",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        endpoint_id: EndpointIdPath,
    ) -> EndpointView:
        return await get_endpoint(
            db_session, endpoint_id, principal=operator(request), partner_id=firm.id
        )

    @post(
        "/{endpoint_id:uuid}/disable",
        status_code=200,
        summary="Disable a partner's webhook endpoint",
        description="Nothing more is sent to it; its due deliveries are dead-lettered (the"
        " partner replays them once it is enabled again). Audited with the reason. Disabled"
        " already: nothing changes.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def disable(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        endpoint_id: EndpointIdPath,
        data: JSONBody[StatusChange],
    ) -> EndpointView:
        return await set_endpoint_status(
            db_session,
            endpoint_id,
            EndpointStatus.DISABLED,
            principal=operator(request),
            partner_id=firm.id,
            reason=data.reason,
        )

    @post(
        "/{endpoint_id:uuid}/enable",
        status_code=200,
        summary="Enable a partner's webhook endpoint again",
        description="Events are sent to it again from now on, its past failures forgotten."
        " Audited. Enabled already: nothing changes.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def enable(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        endpoint_id: EndpointIdPath,
        data: JSONBody[StatusChange],
    ) -> EndpointView:
        return await set_endpoint_status(
            db_session,
            endpoint_id,
            EndpointStatus.ENABLED,
            principal=operator(request),
            partner_id=firm.id,
            reason=data.reason,
        )
