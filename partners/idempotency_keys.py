"""The partner API's stored answers by ``Idempotency-Key`` (the HTTP side is
``api.idempotency``): one per partner firm and key, kept 24 hours, then
purged by a job.

A key is claimed with a transaction-scoped advisory lock, so that of two
requests with one key at once the second learns it at once (and is told to
retry) instead of waiting or running twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import msgspec
from sqlalchemy import delete, select, text, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.modules import JobContext
from core.principal import Principal
from partners.access_models import idempotency_keys

#: How long an answer is kept: a key sent again later is a new request.
KEPT = timedelta(hours=24)
#: Rows a purge deletes per statement (a short transaction each).
PURGE_BATCH = 10_000


class StoredAnswer(msgspec.Struct, frozen=True, kw_only=True):
    request_sha256: bytes
    status_code: int
    headers: list[tuple[str, str]]
    body: bytes


def _partner(principal: Principal) -> tuple[uuid.UUID, uuid.UUID]:
    # Only a partner principal calls the partner API.
    assert principal.partner_id is not None
    assert principal.program_id is not None
    return principal.partner_id, principal.program_id


async def claim(session: AsyncSession, principal: Principal, key: str) -> bool:
    """Whether this transaction now holds the key (until it ends); False:
    another request with the key is in flight."""
    partner_id, _ = _partner(principal)
    held = await session.scalar(
        text("SELECT pg_try_advisory_xact_lock(hashtextextended(:name, 0))"),
        {"name": f"idempotency:{partner_id}:{key}"},
    )
    return bool(held)


async def stored_answer(
    session: AsyncSession, principal: Principal, key: str, *, now: datetime
) -> StoredAnswer | None:
    """The answer stored for the key within ``KEPT``, if any."""
    partner_id, program_id = _partner(principal)
    row = (
        await session.execute(
            select(
                idempotency_keys.c.request_sha256,
                idempotency_keys.c.status_code,
                idempotency_keys.c.response_headers,
                idempotency_keys.c.response_body,
            ).where(
                idempotency_keys.c.partner_id == partner_id,
                idempotency_keys.c.program_id == program_id,
                idempotency_keys.c.key == key,
                idempotency_keys.c.created_at > now - KEPT,
            )
        )
    ).first()
    if row is None:
        return None
    return StoredAnswer(
        request_sha256=bytes(row.request_sha256),
        status_code=row.status_code,
        headers=[(str(name), str(value)) for name, value in row.response_headers],
        body=bytes(row.response_body),
    )


async def store_answer(
    session: AsyncSession, principal: Principal, key: str, answer: StoredAnswer, *, now: datetime
) -> None:
    """Keep the answer, in the session's transaction. A row of the key older
    than ``KEPT`` (not purged yet) is replaced."""
    partner_id, program_id = _partner(principal)
    values = {
        "partner_id": partner_id,
        "key": key,
        "program_id": program_id,
        "request_sha256": answer.request_sha256,
        "status_code": answer.status_code,
        "response_headers": [list(pair) for pair in answer.headers],
        "response_body": answer.body,
        "created_at": now,
    }
    statement = insert(idempotency_keys).values(values)
    excluded = statement.excluded
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[idempotency_keys.c.partner_id, idempotency_keys.c.key],
            set_={name: excluded[name] for name in values if name not in ("partner_id", "key")},
            where=idempotency_keys.c.created_at <= now - KEPT,
        )
    )


async def purge_idempotency_keys(context: JobContext) -> int:
    """Delete the answers older than ``KEPT``, a batch per transaction."""
    before = context.now - KEPT
    total = 0
    while True:
        async with context.sessions() as session, session.begin():
            oldest = (
                select(idempotency_keys.c.partner_id, idempotency_keys.c.key)
                .where(idempotency_keys.c.created_at < before)
                .limit(PURGE_BATCH)
            )
            result = await session.execute(
                delete(idempotency_keys).where(
                    tuple_(idempotency_keys.c.partner_id, idempotency_keys.c.key).in_(oldest)
                )
            )
        deleted = int(result.rowcount or 0)  # type: ignore[attr-defined]
        total += deleted
        if deleted < PURGE_BATCH:
            return total
