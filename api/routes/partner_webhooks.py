"""The partner API of webhooks: a partner's endpoints (URL, event types,
secret and its rotation), their delivery log, replays and test events.
Every operation needs the ``webhooks:manage`` scope; another partner's
endpoint or delivery is not found (404), exactly as a missing one."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from litestar import Controller, Request, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
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
from api.routes import webhook_deliveries as shared
from api.routes.operator_webhooks import EndpointIdPath, EndpointPage
from api.routes.pagination import Cursor, Limit
from api.routes.webhook_deliveries import (
    DeliveryIdPath,
    DeliveryPage,
    DeliveryStatusQuery,
    webhook_targets,
)
from core.pagination import PAGE_LIMIT_DEFAULT
from partners import webhook_deliveries as deliveries
from partners import webhook_endpoints as endpoints
from partners.webhook_schemas import (
    CreatedEndpoint,
    DeliveryDetail,
    DeliveryView,
    EndpointChange,
    EndpointSecretRotation,
    EndpointSpec,
    EndpointView,
    Replayed,
    ReplaySince,
    RotatedSecret,
)

SCOPE = "webhooks:manage"
READ = PARTNER_READ
#: A list names an endpoint that may be missing, and may meet a bad cursor.
LIST = (*PARTNER_READ, 422)
WRITE = PARTNER_WRITE


class PartnerWebhookController(Controller):
    path = "/"
    tags = ["partner webhooks"]
    guards = [partner_scope(SCOPE)]
    security = partner_security(SCOPE)

    @post(
        "/webhook-endpoints",
        status_code=HTTPStatus.CREATED,
        summary="Add a webhook endpoint",
        description="Events of the types given (all, left out) are sent to the URL, signed"
        " per Standard Webhooks with the secret answered here, this once. At most 20"
        " endpoints (409 too-many-webhook-endpoints); a URL the platform does not send to"
        " (not https, a private address): 422 webhook-url-refused.",
        responses=problem_responses(*WRITE),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[EndpointSpec],
        idempotency_key: IdempotencyKeyHeader,
    ) -> CreatedEndpoint:
        return await endpoints.create_endpoint(
            db_session, data, principal=partner(request), targets=webhook_targets(request)
        )

    @get(
        "/webhook-endpoints",
        summary="The partner's webhook endpoints, newest first",
        responses=problem_responses(*PARTNER_LIST),
    )
    async def list_endpoints(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> EndpointPage:
        page = await endpoints.list_endpoints(
            db_session, principal=partner(request), cursor=cursor, limit=limit
        )
        return EndpointPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/webhook-endpoints/{endpoint_id:uuid}",
        summary="A webhook endpoint (never its secret)",
        responses=problem_responses(*READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        endpoint_id: EndpointIdPath,
    ) -> EndpointView:
        return await endpoints.get_endpoint(db_session, endpoint_id, principal=partner(request))

    @patch(
        "/webhook-endpoints/{endpoint_id:uuid}",
        summary="Change a webhook endpoint: URL, event types, description, status",
        description="Sets each field given. `status` disabled stops its deliveries (those"
        " due are dead-lettered, to replay); enabled starts it afresh.",
        responses=problem_responses(*WRITE),
    )
    async def change(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        endpoint_id: EndpointIdPath,
        data: JSONBody[EndpointChange],
    ) -> EndpointView:
        return await endpoints.update_endpoint(
            db_session,
            endpoint_id,
            data,
            principal=partner(request),
            targets=webhook_targets(request),
        )

    @delete(
        "/webhook-endpoints/{endpoint_id:uuid}",
        summary="Delete a webhook endpoint and its delivery log",
        responses=problem_responses(*READ),
    )
    async def remove(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        endpoint_id: EndpointIdPath,
    ) -> None:
        await endpoints.delete_endpoint(db_session, endpoint_id, principal=partner(request))

    @post(
        "/webhook-endpoints/{endpoint_id:uuid}/secret-rotations",
        status_code=HTTPStatus.CREATED,
        summary="Rotate the endpoint's signing secret",
        description="Answers the new secret, this once. The secret before keeps signing for"
        " `overlap_seconds` (a day, left out): meanwhile each delivery carries both"
        " signatures, so the receiver can switch at its own pace.",
        responses=problem_responses(*WRITE),
    )
    async def rotate(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        endpoint_id: EndpointIdPath,
        data: JSONBody[EndpointSecretRotation],
        idempotency_key: IdempotencyKeyHeader,
    ) -> RotatedSecret:
        return await endpoints.rotate_secret(
            db_session, endpoint_id, data, principal=partner(request)
        )

    @get(
        "/webhook-endpoints/{endpoint_id:uuid}/deliveries",
        summary="The endpoint's deliveries, newest first",
        responses=problem_responses(*LIST),
    )
    async def log(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        endpoint_id: EndpointIdPath,
        status: DeliveryStatusQuery = None,
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> DeliveryPage:
        return await shared.delivery_log(
            db_session,
            endpoint_id,
            principal=partner(request),
            status=status,
            cursor=cursor,
            limit=limit,
        )

    @post(
        "/webhook-endpoints/{endpoint_id:uuid}/replays",
        status_code=HTTPStatus.OK,
        summary="Send again the endpoint's dead-lettered deliveries made since a time",
        description="Each is sent once more, at once, with its own webhook-id. The endpoint"
        " must be enabled (409 delivery-not-replayable).",
        responses=problem_responses(*WRITE),
    )
    async def replay_dead(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        endpoint_id: EndpointIdPath,
        data: JSONBody[ReplaySince],
        idempotency_key: IdempotencyKeyHeader,
    ) -> Replayed:
        return await shared.replay_dead(db_session, endpoint_id, data, principal=partner(request))

    @post(
        "/webhook-endpoints/{endpoint_id:uuid}/test-events",
        status_code=HTTPStatus.CREATED,
        summary="Send a webhook.test event to this endpoint",
        responses=problem_responses(*WRITE),
    )
    async def send_test(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        endpoint_id: EndpointIdPath,
        idempotency_key: IdempotencyKeyHeader,
    ) -> DeliveryView:
        return await deliveries.send_test_event(db_session, endpoint_id, principal=partner(request))

    @get(
        "/webhook-deliveries/{message_id:str}",
        summary="A delivery: its body and every attempt (time, status, latency, error)",
        responses=problem_responses(*READ),
    )
    async def delivery(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        message_id: DeliveryIdPath,
    ) -> DeliveryDetail:
        return await shared.delivery(db_session, message_id, principal=partner(request))

    @post(
        "/webhook-deliveries/{message_id:str}/replays",
        status_code=HTTPStatus.OK,
        summary="Send a delivery again, at once, with the same webhook-id",
        description="One attempt (if it fails, the delivery is dead again). A pending"
        " delivery, or one of a disabled endpoint: 409 delivery-not-replayable.",
        responses=problem_responses(*WRITE),
    )
    async def replay(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        message_id: DeliveryIdPath,
        idempotency_key: IdempotencyKeyHeader,
    ) -> DeliveryView:
        return await shared.replay(db_session, message_id, principal=partner(request))
