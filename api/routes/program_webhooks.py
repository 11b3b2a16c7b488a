"""The operator API of a program's own webhook endpoints, under
``/programs/{slug}``: endpoints (URL, program event types, secret and its
rotation, enabled or disabled), their delivery log, replays and test
events, as a partner has for its own (``api.routes.partner_webhooks``).
Reading needs ``webhooks:read``, the rest ``webhooks:write``; a partner's
endpoint or another program's is not found (404), exactly as a missing one.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_DELETE, OPERATOR_READ, OPERATOR_WRITE
from api.routes import webhook_deliveries as shared
from api.routes.operator_webhooks import EndpointIdPath
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_program
from api.routes.webhook_deliveries import (
    DeliveryIdPath,
    DeliveryPage,
    DeliveryStatusQuery,
    webhook_targets,
)
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT
from partners import program_webhooks as own
from partners import webhook_deliveries as deliveries
from partners.program_webhook_events import OPERATOR_EVENTS
from partners.program_webhook_schemas import (
    PROGRAM_ENDPOINTS_MAX,
    CreatedProgramEndpoint,
    ProgramEndpointChange,
    ProgramEndpointSpec,
    ProgramEndpointView,
)
from partners.webhook_schemas import (
    DeliveryDetail,
    DeliveryView,
    EndpointSecretRotation,
    Replayed,
    ReplaySince,
    RotatedSecret,
)

_EVENTS = "; ".join(f"`{topic}`: {what}" for topic, what in sorted(OPERATOR_EVENTS.items()))


class ProgramEndpointPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[ProgramEndpointView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class ProgramWebhookController(Controller):
    path = "/programs/{slug:str}"
    tags = ["program webhooks"]
    guards = [require_scope("webhooks:write", reading="webhooks:read")]
    dependencies = {"program": Provide(path_program)}

    @post(
        "/webhook-endpoints",
        status_code=HTTPStatus.CREATED,
        summary="Add a webhook endpoint of the program's own",
        description="The program's events of the types given (all, left out) are sent to"
        " the URL, signed per Standard Webhooks with the secret answered here, this once."
        f" The types: {_EVENTS}. At most {PROGRAM_ENDPOINTS_MAX} endpoints (409"
        " too-many-webhook-endpoints); an unknown type: 422 unknown-event-type; a URL the"
        " platform does not send to (not https, a private address): 422 webhook-url-refused.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[ProgramEndpointSpec],
    ) -> CreatedProgramEndpoint:
        return await own.create_program_endpoint(
            db_session, program, data, principal=operator(request), targets=webhook_targets(request)
        )

    @get(
        "/webhook-endpoints",
        summary="The program's own webhook endpoints, newest first",
        description="Never their secrets; partners' endpoints are under"
        " /programs/{slug}/partners/{partner}/webhook-endpoints.",
        responses=problem_responses(*LIST_READ),
    )
    async def list_endpoints(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> ProgramEndpointPage:
        page = await own.list_program_endpoints(
            db_session, program, principal=operator(request), cursor=cursor, limit=limit
        )
        return ProgramEndpointPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/webhook-endpoints/{endpoint_id:uuid}",
        summary="A webhook endpoint of the program's own (never its secret)",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        endpoint_id: EndpointIdPath,
    ) -> ProgramEndpointView:
        return await own.get_program_endpoint(
            db_session, program, endpoint_id, principal=operator(request)
        )

    @patch(
        "/webhook-endpoints/{endpoint_id:uuid}",
        summary="Change a webhook endpoint of the program's own: URL, event types,"
        " description, status",
        description="Sets each field given; audited. `status` disabled stops its deliveries"
        " (those due are dead-lettered, to replay); enabled starts it afresh.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def change(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        endpoint_id: EndpointIdPath,
        data: JSONBody[ProgramEndpointChange],
    ) -> ProgramEndpointView:
        return await own.update_program_endpoint(
            db_session,
            program,
            endpoint_id,
            data,
            principal=operator(request),
            targets=webhook_targets(request),
        )

    @delete(
        "/webhook-endpoints/{endpoint_id:uuid}",
        summary="Delete a webhook endpoint of the program's own and its delivery log",
        responses=problem_responses(*OPERATOR_DELETE),
    )
    async def remove(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        endpoint_id: EndpointIdPath,
    ) -> None:
        await own.delete_program_endpoint(
            db_session, program, endpoint_id, principal=operator(request)
        )

    @post(
        "/webhook-endpoints/{endpoint_id:uuid}/secret-rotations",
        status_code=HTTPStatus.CREATED,
        summary="Rotate the signing secret of a webhook endpoint of the program's own",
        description="Answers the new secret, this once. The secret before keeps signing for"
        " `overlap_seconds` (a day, left out): meanwhile each delivery carries both"
        " signatures, so the receiver can switch at its own pace.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def rotate(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        endpoint_id: EndpointIdPath,
        data: JSONBody[EndpointSecretRotation],
    ) -> RotatedSecret:
        return await own.rotate_program_secret(
            db_session, program, endpoint_id, data, principal=operator(request)
        )

    @get(
        "/webhook-endpoints/{endpoint_id:uuid}/deliveries",
        summary="The deliveries of a webhook endpoint of the program's own, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def log(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        endpoint_id: EndpointIdPath,
        status: DeliveryStatusQuery = None,
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> DeliveryPage:
        return await shared.delivery_log(
            db_session,
            endpoint_id,
            principal=operator(request),
            status=status,
            cursor=cursor,
            limit=limit,
            own=program.id,
        )

    @post(
        "/webhook-endpoints/{endpoint_id:uuid}/replays",
        status_code=HTTPStatus.OK,
        summary="Send again the dead-lettered deliveries of a webhook endpoint of the"
        " program's own made since a time",
        description="Each is sent once more, at once, with its own webhook-id. The endpoint"
        " must be enabled (409 delivery-not-replayable).",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def replay_dead(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        endpoint_id: EndpointIdPath,
        data: JSONBody[ReplaySince],
    ) -> Replayed:
        return await shared.replay_dead(
            db_session, endpoint_id, data, principal=operator(request), own=program.id
        )

    @post(
        "/webhook-endpoints/{endpoint_id:uuid}/test-events",
        status_code=HTTPStatus.CREATED,
        summary="Send a webhook.test event to a webhook endpoint of the program's own",
        description="Due at once, sent like any other delivery (retries included). The"
        " endpoint disabled: 409 delivery-not-replayable.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def send_test(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        endpoint_id: EndpointIdPath,
    ) -> DeliveryView:
        return await deliveries.send_test_event(
            db_session, endpoint_id, principal=operator(request), own=program.id
        )

    @get(
        "/webhook-deliveries/{message_id:str}",
        summary="A delivery to an endpoint of the program's own: its body and every attempt",
        description="Each attempt with its time, status, latency and error.",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def delivery(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        message_id: DeliveryIdPath,
    ) -> DeliveryDetail:
        return await shared.delivery(
            db_session, message_id, principal=operator(request), own=program.id
        )

    @post(
        "/webhook-deliveries/{message_id:str}/replays",
        status_code=HTTPStatus.OK,
        summary="Send a delivery to an endpoint of the program's own again, at once",
        description="With the same webhook-id; one attempt (if it fails, the delivery is"
        " dead again). A pending delivery, or one of a disabled endpoint: 409"
        " delivery-not-replayable.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def replay(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        message_id: DeliveryIdPath,
    ) -> DeliveryView:
        return await shared.replay(
            db_session, message_id, principal=operator(request), own=program.id
        )
