"""The inbox of Stripe's events (``stripe_events``): each stored once, keyed
by Stripe's event id, as the webhook receives it; then processed by the
worker, one event per transaction, into the domains' use cases
(``api.stripe.events``)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.stripe.events import handle_event
from core.errors import DomainError
from ledger import Ledger
from ledger.bounds import NO_NUL

log = logging.getLogger(__name__)

#: Longest outcome the inbox row keeps (its column's width).
OUTCOME_MAX = 200


class Envelope(msgspec.Struct, kw_only=True):
    """What the inbox keys and files an event by (its columns' bounds)."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=255, pattern=NO_NUL)]
    type: Annotated[str, msgspec.Meta(max_length=100, pattern=NO_NUL)] = ""


def envelope(event: dict[str, Any]) -> Envelope:
    """The event's id and type; ``msgspec.ValidationError`` if it has none
    the inbox can store."""
    return msgspec.convert(event, Envelope)


async def store_event(session: AsyncSession, event: dict[str, Any]) -> bool:
    """Store the event once, in the session's transaction; False if its id
    was stored before (a repeated delivery: nothing more to do)."""
    keys = envelope(event)
    stored = await session.scalar(
        text(
            "INSERT INTO stripe_events (id, type, payload) VALUES (:id, :type, :payload)"
            " ON CONFLICT (id) DO NOTHING RETURNING id"
        ),
        {"id": keys.id, "type": keys.type, "payload": msgspec.json.encode(event).decode()},
    )
    return stored is not None


async def process_inbox(
    sessions: async_sessionmaker[AsyncSession], ledger: Ledger, limit: int = 100
) -> int:
    """Process stored, unprocessed events one at a time, each in its own
    transaction (claimed with SKIP LOCKED, so workers share the inbox)."""
    processed = 0
    for _ in range(limit):
        async with sessions() as session, session.begin():
            row = (
                await session.execute(
                    text(
                        "SELECT id, payload FROM stripe_events WHERE processed_at IS NULL"
                        " ORDER BY received_at LIMIT 1 FOR UPDATE SKIP LOCKED"
                    )
                )
            ).first()
            if row is None:
                return processed
            try:
                async with session.begin_nested():
                    outcome = await handle_event(session, ledger, row.payload)
            except DomainError as error:
                # A business refusal is final: keep it visible, do not retry.
                outcome = f"refused: {error.type_slug}: {error}"
                log.warning("stripe event %s refused: %s", row.id, error)
            await session.execute(
                text(
                    "UPDATE stripe_events SET processed_at = now(), outcome = :outcome"
                    " WHERE id = :id"
                ),
                {"outcome": outcome[:OUTCOME_MAX], "id": row.id},
            )
            processed += 1
    return processed
