"""The deliveries of a webhook endpoint as both APIs answer them: a
partner's endpoints (``api.routes.partner_webhooks``) and a program's own
(``api.routes.program_webhooks``) share the log, its page, replays and the
path of a delivery. Each route module declares its own operations (paths,
summaries, scopes, problems) and passes who asks and, for a program's own
endpoints, ``own``: the program's id."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request
from litestar.params import PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.settings import Settings
from core.principal import Principal
from partners import webhook_deliveries as deliveries
from partners.webhook_models import DeliveryStatus
from partners.webhook_schemas import (
    MESSAGE_ID_PATTERN,
    DeliveryDetail,
    DeliveryView,
    Replayed,
    ReplaySince,
    delivery_id,
)
from partners.webhook_targets import TargetPolicy

DeliveryIdPath = Annotated[
    str,
    PathParameter(
        pattern=MESSAGE_ID_PATTERN,
        description="The delivery's id: the `webhook-id` its attempts carry (`msg_...`).",
    ),
]
DeliveryStatusQuery = Annotated[
    Literal["pending", "succeeded", "dead"] | None,
    QueryParameter(description="Only the deliveries of this status."),
]


class DeliveryPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[DeliveryView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


def webhook_targets(request: Request[Any, Any, Any]) -> TargetPolicy:
    """The URLs the platform sends to, as its operator set them."""
    settings: Settings = request.app.state.settings
    return TargetPolicy(private=settings.webhook_private_targets)


async def delivery_log(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    *,
    principal: Principal,
    status: str | None,
    cursor: str | None,
    limit: int,
    own: uuid.UUID | None = None,
) -> DeliveryPage:
    page = await deliveries.list_deliveries(
        session,
        endpoint_id,
        principal=principal,
        status=DeliveryStatus(status) if status else None,
        cursor=cursor,
        limit=limit,
        own=own,
    )
    return DeliveryPage(items=page.items, next_cursor=page.next_cursor)


async def replay_dead(
    session: AsyncSession,
    endpoint_id: uuid.UUID,
    replay: ReplaySince,
    *,
    principal: Principal,
    own: uuid.UUID | None = None,
) -> Replayed:
    count = await deliveries.replay_dead_since(
        session, endpoint_id, replay, principal=principal, own=own
    )
    return Replayed(replayed=count)


async def delivery(
    session: AsyncSession, message_id: str, *, principal: Principal, own: uuid.UUID | None = None
) -> DeliveryDetail:
    return await deliveries.get_delivery(
        session, delivery_id(message_id), principal=principal, own=own
    )


async def replay(
    session: AsyncSession, message_id: str, *, principal: Principal, own: uuid.UUID | None = None
) -> DeliveryView:
    return await deliveries.replay_delivery(
        session, delivery_id(message_id), principal=principal, own=own
    )
