"""Stripe's webhook endpoint: verify, store once in the inbox, let the
worker process it."""

from __future__ import annotations

import functools
import logging
from typing import Annotated, Any

import msgspec
from celery import Celery
from litestar import Request, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.response import Response
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy.ext.asyncio import AsyncSession

from api.problems import MEDIA_TYPE, Problem, problem, problem_responses
from api.settings import Settings
from api.stripe.gateway import verify_webhook
from api.stripe.inbox import store_event

log = logging.getLogger(__name__)

#: The task of the job that processes the inbox (``api.stripe.module``).
PROCESS_INBOX_TASK = "api.worker.process_stripe_inbox"


class Received(msgspec.Struct, kw_only=True):
    id: Annotated[str, msgspec.Meta(description="The Stripe event's id.")]
    stored: Annotated[
        bool,
        msgspec.Meta(
            description="True when the event is new and was stored for processing (201);"
            " false when this event id was delivered before (200: nothing more is done)."
        ),
    ]


RESPONSES: dict[int, ResponseSpec] = {
    **problem_responses(413, 503),
    HTTP_200_OK: ResponseSpec(
        data_container=Received,
        description="A repeated delivery of an event already stored: nothing more is done"
        " (`stored` false).",
        generate_examples=False,
    ),
    400: ResponseSpec(
        data_container=Problem,
        media_type=MEDIA_TYPE,
        description="invalid-signature: the `Stripe-Signature` is missing or not Stripe's"
        " (or the signed body is not an event); malformed-event: a signed event without"
        " an id the inbox can keep.",
        generate_examples=False,
    ),
}


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
        _producer(settings).send_task(PROCESS_INBOX_TASK)
    except Exception:
        log.warning(
            "could not enqueue the Stripe inbox; the schedule will pick it up", exc_info=True
        )


@post(
    "/webhooks/stripe",
    tags=["payments"],
    summary="Stripe webhooks (signed)",
    description="Stores each event once, by its id, for the worker to process. The first"
    " delivery of an event answers 201; a repeated one (Stripe retries until it sees a 2xx)"
    " answers 200 and changes nothing.",
    responses=RESPONSES,
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
    try:
        stored = await store_event(db_session, event)
    except msgspec.ValidationError as error:
        raise problem(400, "malformed-event", f"the event cannot be stored: {error}") from None
    # Sent after the response, so after the commit of the stored event.
    background = BackgroundTask(_enqueue_processing, settings) if stored else None
    return Response(
        Received(id=event["id"], stored=stored),
        status_code=HTTP_201_CREATED if stored else HTTP_200_OK,
        background=background,
    )
