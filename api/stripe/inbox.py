"""The inbox of Stripe's events (``stripe_events``): each stored once, keyed
by Stripe's event id, as the webhook receives it; then processed by the
worker, one event per transaction, into the domains' use cases
(``api.stripe.events``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from sqlalchemy import Row, text
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


#: Tries of an event that keeps failing before it is left for an operator
#: (about an hour and eight minutes of retries, the delays doubling from a
#: second).
MAX_ATTEMPTS = 12

#: Longest wait between two tries of a failing event.
MAX_BACKOFF = timedelta(hours=1)

#: Characters of a failure kept on its row.
_ERROR_LENGTH = 2000

# The oldest event still to process and due; events other runs hold are
# skipped, and a failing event waits for its next try while younger ones go.
_NEXT_DUE = text(
    "SELECT id, payload, attempts FROM stripe_events"
    " WHERE processed_at IS NULL AND failed_at IS NULL"
    " AND (next_attempt_at IS NULL OR next_attempt_at <= :now)"
    " ORDER BY received_at LIMIT 1 FOR UPDATE SKIP LOCKED"
)


async def process_inbox(
    sessions: async_sessionmaker[AsyncSession],
    ledger: Ledger,
    limit: int = 100,
    *,
    now: datetime | None = None,
) -> int:
    """Process stored, due events one at a time, oldest first, each in its
    own transaction (claimed with SKIP LOCKED, so workers share the inbox);
    answers how many were processed (handled or refused).

    A business refusal is final and kept on the row. Any other failure (a
    race worth retrying included) is noted on the row (its tries, its error,
    when it is due again, after a growing delay) and the inbox goes on with
    the next event: one bad event holds up no other. After ``MAX_ATTEMPTS``
    tries it is marked failed and left for an operator."""
    at = now if now is not None else datetime.now(UTC)
    processed = 0
    for _ in range(limit):
        row: Row[Any] | None = None
        try:
            async with sessions() as session, session.begin():
                row = (await session.execute(_NEXT_DUE, {"now": at})).first()
                if row is None:
                    return processed
                try:
                    # The savepoint undoes what a failing event wrote, while
                    # its row stays locked until the failure is noted.
                    async with session.begin_nested():
                        outcome = await handle_event(session, ledger, row.payload)
                except DomainError as error:
                    if error.retryable:
                        await _postpone(session, row, at, error)
                        continue
                    # A business refusal is final: keep it visible, do not retry.
                    outcome = f"refused: {error.type_slug}: {error}"
                    log.warning("stripe event %s refused: %s", row.id, error)
                except Exception as failure:
                    await _postpone(session, row, at, failure)
                    continue
                await session.execute(
                    text(
                        "UPDATE stripe_events SET processed_at = now(), outcome = :outcome,"
                        " attempts = attempts + 1 WHERE id = :id"
                    ),
                    {"outcome": outcome[:OUTCOME_MAX], "id": row.id},
                )
            processed += 1
        except Exception as failure:
            if row is None:
                raise
            # The event's work failed where its savepoint could not catch it
            # (at commit, or a transaction it broke): without a note it would
            # come first in every run and fail again. If the database is
            # gone, this raises too.
            async with sessions() as session, session.begin():
                await _postpone(session, row, at, failure)
    return processed


async def _postpone(
    session: AsyncSession, row: Row[Any], now: datetime, failure: Exception
) -> None:
    """Note a failed try on the event's row: due again after a delay that
    doubles with each try, or failed for good after ``MAX_ATTEMPTS``."""
    attempts = row.attempts + 1
    # PostgreSQL's text cannot hold NUL, which an error may quote.
    error = f"{type(failure).__name__}: {failure}".replace("\x00", "\\x00")[:_ERROR_LENGTH]
    if attempts >= MAX_ATTEMPTS:
        log.error(
            "stripe event %s failed %d times and is left for an operator (see docs/operations.md)",
            row.id,
            attempts,
            exc_info=failure,
        )
    else:
        log.warning("stripe event %s failed (try %d)", row.id, attempts, exc_info=failure)
    delay = min(MAX_BACKOFF, timedelta(seconds=2 ** min(row.attempts, 12)))
    await session.execute(
        text(
            "UPDATE stripe_events SET attempts = :attempts, last_error = :error,"
            " next_attempt_at = :next, failed_at = :failed"
            # Another run may have taken and processed it since this one let go.
            " WHERE id = :id AND processed_at IS NULL"
        ),
        {
            "attempts": attempts,
            "error": error,
            "next": now + delay,
            "failed": now if attempts >= MAX_ATTEMPTS else None,
            "id": row.id,
        },
    )
