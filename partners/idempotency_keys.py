"""The partner API's stored answers by ``Idempotency-Key`` (the HTTP side is
``api.idempotency``): one per partner firm and key, kept 24 hours, then
purged by a job.

A request claims its key by writing the key's row in flight (no answer yet,
a claim id and a lease), in one statement committed at once, and fills in
the answer once it has one. Of two requests with one key at once the second
learns it at once (and is told to retry) instead of waiting or running
twice; and no database connection is held while the request runs (an
advisory lock held one for the whole request, which bounded the partner
API's issuance at a tenth of its speed).

A claim whose request never finished (its process died) is taken over by
the next request with the key once its lease (``CLAIM_LEASE``) has passed.
A request that outlives its lease loses its claim: its answer is then not
stored (and, where it is stored with the use case's rows, those roll back).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from sqlalchemy import delete, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from core.modules import JobContext
from core.principal import Principal
from partners.access_models import idempotency_keys

#: How long an answer is kept: a key sent again later is a new request.
KEPT = timedelta(hours=24)
#: How long a claim holds without its answer: after that, a request with the
#: key takes the claim over (the first one's process is taken for dead).
CLAIM_LEASE = timedelta(seconds=60)
#: Rows a purge deletes per statement (a short transaction each).
PURGE_BATCH = 10_000


class StoredAnswer(msgspec.Struct, frozen=True, kw_only=True):
    request_sha256: bytes
    status_code: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class Claim:
    """The key is this request's, under ``claim_id``, until it stores its
    answer or releases the key."""

    partner_id: uuid.UUID
    key: str
    claim_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class InFlight:
    """Another request holds the key: it has not answered yet."""


@dataclass(frozen=True, slots=True)
class Answered:
    """The key's request was answered, with ``answer``."""

    answer: StoredAnswer


def _partner(principal: Principal) -> tuple[uuid.UUID, uuid.UUID]:
    # Only a partner principal calls the partner API.
    assert principal.partner_id is not None
    assert principal.program_id is not None
    return principal.partner_id, principal.program_id


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """A request asking for its key: ``claim_many`` answers it."""

    principal: Principal
    key: str
    request_sha256: bytes


@dataclass(frozen=True, slots=True)
class KeptAnswer:
    """A claim's answer to store: ``store_many`` keeps it."""

    held: Claim
    answer: StoredAnswer


# Each asked key's row is written (a new key, or one whose answer is older
# than KEPT, or a claim whose lease has passed), or else its row as it was
# is read: both in one statement, for a batch of keys. The outer SELECT sees
# the table as it was when the statement began: a key another request
# claimed meanwhile shows no row there (and is in flight). Rows are written
# in key order, so that two batches never wait on each other in a cycle.
_CLAIM = """
WITH asked AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::bytea[], $5::uuid[])
        WITH ORDINALITY AS a (partner_id, key, program_id, request_sha256, claim_id, n)
), claimed AS (
    INSERT INTO idempotency_keys AS k
        (partner_id, key, program_id, request_sha256, claim_id, claimed_until, created_at)
    SELECT partner_id, key, program_id, request_sha256, claim_id,
        $6::timestamptz + $7::interval, $6::timestamptz
    FROM asked ORDER BY partner_id, key
    ON CONFLICT (partner_id, key) DO UPDATE SET
        program_id = excluded.program_id,
        request_sha256 = excluded.request_sha256,
        status_code = NULL,
        response_headers = NULL,
        response_body = NULL,
        claim_id = excluded.claim_id,
        claimed_until = excluded.claimed_until,
        created_at = excluded.created_at
    WHERE k.created_at <= $6::timestamptz - $8::interval
        OR (k.status_code IS NULL AND k.claimed_until <= $6::timestamptz)
    RETURNING k.claim_id
)
SELECT a.n, a.claim_id IN (SELECT claim_id FROM claimed) AS claimed,
    k.request_sha256, k.status_code, k.response_headers::text AS headers, k.response_body
FROM asked AS a
LEFT JOIN idempotency_keys AS k
    ON k.partner_id = a.partner_id AND k.key = a.key
    AND k.created_at > $6::timestamptz - $8::interval
ORDER BY a.n
"""

_STORE = """
UPDATE idempotency_keys AS k SET status_code = s.status_code,
    response_headers = s.headers::jsonb, response_body = s.body,
    claim_id = NULL, claimed_until = NULL
FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::int2[], $5::text[], $6::bytea[])
    AS s (partner_id, key, claim_id, status_code, headers, body)
WHERE k.partner_id = s.partner_id AND k.key = s.key AND k.claim_id = s.claim_id
RETURNING s.claim_id
"""
_STORE_IN_SESSION = text(
    "UPDATE idempotency_keys SET status_code = :status, response_headers ="
    " CAST(CAST(:headers AS TEXT) AS JSONB), response_body = :body, claim_id = NULL,"
    " claimed_until = NULL WHERE partner_id = :partner_id AND key = :key AND claim_id = :claim_id"
)
_RELEASE = "DELETE FROM idempotency_keys WHERE partner_id = $1 AND key = $2 AND claim_id = $3"


async def claim_many(
    pool: asyncpg.Pool, requests: Sequence[KeyRequest], *, now: datetime
) -> list[Claim | InFlight | Answered]:
    """Claim each request's key (one statement for all, committed at once),
    or say why not: another request with it is in flight (a request of this
    very batch, too), or it was answered."""
    outcomes: list[Claim | InFlight | Answered] = [InFlight()] * len(requests)
    asked: dict[tuple[uuid.UUID, str], int] = {}
    for position, request in enumerate(requests):
        partner_id, _ = _partner(request.principal)
        # A key asked twice in one batch: the first asks, the second is in
        # flight behind it.
        asked.setdefault((partner_id, request.key), position)
    positions = list(asked.values())
    chosen = [requests[p] for p in positions]
    claim_ids = [uuid.uuid4() for _ in chosen]
    rows = await pool.fetch(
        _CLAIM,
        [_partner(r.principal)[0] for r in chosen],
        [r.key for r in chosen],
        [_partner(r.principal)[1] for r in chosen],
        [r.request_sha256 for r in chosen],
        claim_ids,
        now,
        CLAIM_LEASE,
        KEPT,
    )
    for position, request, claim_id, row in zip(positions, chosen, claim_ids, rows, strict=True):
        outcomes[position] = _outcome(request, claim_id, row)
    return outcomes


def _outcome(
    request: KeyRequest, claim_id: uuid.UUID, row: asyncpg.Record
) -> Claim | InFlight | Answered:
    if row["claimed"]:
        return Claim(_partner(request.principal)[0], request.key, claim_id)
    if row["status_code"] is None:
        return InFlight()
    headers = msgspec.json.decode(row["headers"])
    return Answered(
        StoredAnswer(
            request_sha256=bytes(row["request_sha256"]),
            status_code=row["status_code"],
            headers=[(str(name), str(value)) for name, value in headers],
            body=bytes(row["response_body"]),
        )
    )


def _headers(answer: StoredAnswer) -> str:
    return msgspec.json.encode([list(pair) for pair in answer.headers]).decode()


async def store_many(pool: asyncpg.Pool, kept: Sequence[KeptAnswer]) -> list[bool]:
    """Keep the answers of claims' requests (one statement for all); each
    False if its claim was lost (its lease passed and another took it)."""
    rows = await pool.fetch(
        _STORE,
        [k.held.partner_id for k in kept],
        [k.held.key for k in kept],
        [k.held.claim_id for k in kept],
        [k.answer.status_code for k in kept],
        [_headers(k.answer) for k in kept],
        [k.answer.body for k in kept],
    )
    stored = {row["claim_id"] for row in rows}
    return [k.held.claim_id in stored for k in kept]


async def store_answer_with(session: AsyncSession, held: Claim, answer: StoredAnswer) -> bool:
    """Keep the answer in the session's transaction, so that it commits with
    the use case's rows or not at all; False if the claim was lost."""
    result: Any = await session.execute(
        _STORE_IN_SESSION,
        {
            "status": answer.status_code,
            "headers": _headers(answer),
            "body": answer.body,
            "partner_id": held.partner_id,
            "key": held.key,
            "claim_id": held.claim_id,
        },
    )
    return bool(result.rowcount == 1)


async def release(pool: asyncpg.Pool, held: Claim) -> None:
    """Give the key up without an answer: the next request with it runs."""
    await pool.execute(_RELEASE, held.partner_id, held.key, held.claim_id)


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
