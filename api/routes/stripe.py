"""Stripe's webhook endpoint: verify, store once, let the worker process."""

from __future__ import annotations

import functools
import logging
from typing import Annotated, Any

import msgspec
from celery import Celery
from litestar import Request, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.response import Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from api.payments import verify_webhook
from api.problems import problem, problem_responses
from api.settings import Settings

log = logging.getLogger(__name__)


class Received(msgspec.Struct, kw_only=True):
    id: Annotated[str, msgspec.Meta(description="The Stripe event's id.")]
    stored: Annotated[
        bool,
        msgspec.Meta(
            description="True when the event is new and was stored for processing; false"
            " when this event id was delivered before (nothing more is done)."
        ),
    ]


@functools.cache
def _producer(settings: Settings) -> Celery:
    """One Celery app per process to send with (settings never change)."""
    from api.worker import create_celery

    return create_celery(settings)


def _enqueue_processing(settings: Settings) -> None:
    """Ask the worker to process the inbox now. Best effort: the worker's
    schedule also sweeps the inbox, so a lost message only delays."""
    if not settings.broker_url:
        return
    try:
        _producer(settings).send_task("api.worker.process_stripe_inbox")
    except Exception:
        log.warning(
            "could not enqueue the Stripe inbox; the schedule will pick it up", exc_info=True
        )


@post(
    "/webhooks/stripe",
    tags=["payments"],
    summary="Stripe webhooks (signed)",
    responses=problem_responses(400, 413, 503),
)
async def stripe_webhook(
    request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
) -> Response[Received]:
    settings: Settings = request.app.state.settings
    payload = await request.body()
    try:
        event = verify_webhook(settings, payload, request.headers.get("stripe-signature"))
    except ValueError as error:
        raise problem(400, "invalid-signature", str(error)) from None
    stored = await db_session.scalar(
        text(
            "INSERT INTO stripe_events (id, type, payload) VALUES (:id, :type, :payload)"
            " ON CONFLICT (id) DO NOTHING RETURNING id"
        ),
        {
            "id": event["id"],
            "type": event.get("type", ""),
            "payload": msgspec.json.encode(event).decode(),
        },
    )
    # Sent after the response, so after the commit of the stored event.
    background = BackgroundTask(_enqueue_processing, settings) if stored else None
    return Response(Received(id=event["id"], stored=stored is not None), background=background)
