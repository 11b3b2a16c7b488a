"""``Idempotency-Key`` on every POST of the partner API: a request sent
again with the same key gets the first answer again, and runs once.

The header is required on partner POSTs (428 ``idempotency-key-required``
without it; ``/oauth/token`` is no partner API route and takes none): a
partner's point issuance retried after a lost answer must never run twice,
and a required header makes that the only way to call.

- Keys belong to the partner firm of the token (two firms may use the same
  key) and are kept 24 hours (``partners.idempotency_keys``; a job purges
  older ones). A key sent after that is a new request.
- The same key with another request (method, path, query or body, byte for
  byte) is 422 ``idempotency-key-mismatch``, and nothing runs.
- While the key's first request is in flight, another with the key is 409
  ``idempotency-key-in-flight`` (Retry-After: 1): it neither waits nor runs.
- Stored: the answers of the use case, 2xx and its refusals that the same
  request would meet again (404, 410, 422). Not stored, so that the same key
  may be sent again: refusals at the door (400, 401, 403, 413, 428, 429),
  conflicts (409, which are mostly "retry"), and failures (5xx). A replay
  carries the status, the body and the headers that describe them
  (Content-Type, Location, ETag, Link), and ``Idempotent-Replayed: true``.

Claimed without holding a connection: the key's row is written in flight
by one statement before the handler runs (``partners.idempotency_keys``),
and its answer filled in by one more before the answer is sent. Where the
handler wrote in the request's own database session (the one it gets as
``db_session``, committed once the answer starts), a 2xx answer is stored
in that session's transaction: the use case's rows and the stored answer
commit together or not at all. Where it did not (the issuance intake writes
in batches of its own, work through the ledger's writer commits there), the
answer is stored once the use case has committed: a crash between the two
leaves the key claimed until its lease passes (a minute), and a retry then
runs the use case again. Such use cases key their transfers by the
partner's business key (``core.codes.derived_id``), so that the second run
converges on the first run's transfers (an issuance answers 200 with the
first's figures instead of 201).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, cast

import asyncpg
import msgspec
from litestar import Request
from litestar.params import HeaderParameter
from litestar.plugins.problem_details import ProblemDetailsException
from litestar.types import ASGIApp, Receive, Scope, Send

from api.problems import MEDIA_TYPE, problem
from core.principal import Principal
from ledger.batching import MicroBatcher
from partners.idempotency_keys import (
    Answered,
    Claim,
    InFlight,
    KeptAnswer,
    KeyRequest,
    StoredAnswer,
    claim_many,
    release,
    store_answer_with,
    store_many,
)

if TYPE_CHECKING:
    from api.partner_access import PartnerAccess

HEADER = "Idempotency-Key"
#: Printable ASCII without spaces (a UUID, say), 1 to 200 characters.
KEY_PATTERN = r"^[!-~]{1,200}$"
_KEY = re.compile(KEY_PATTERN)
#: The largest request body taken (a partner POST is a small document).
BODY_MAX = 1024 * 1024
#: Refusals of the use case that are stored (see the module's docstring).
STORED_REFUSALS = frozenset({404, 410, 422})
#: Headers of an answer that a replay repeats.
KEPT_HEADERS = frozenset({"content-type", "location", "etag", "link"})
_PRINCIPAL = "partner_principal"
log = logging.getLogger(__name__)

#: The header as a partner POST handler declares it (so that the OpenAPI
#: document shows it): ``idempotency_key: IdempotencyKeyHeader``.
IdempotencyKeyHeader = Annotated[
    str,
    HeaderParameter(
        name=HEADER,
        pattern=KEY_PATTERN,
        min_length=1,
        max_length=200,
        description="Required: the request's key, unique per request (a UUID, say). Sent again"
        " within 24 h with the same request, it answers the first answer again"
        " (`Idempotent-Replayed: true`) and runs nothing; with another request: 422.",
    ),
]


def stored(status: int) -> bool:
    return 200 <= status < 300 or status in STORED_REFUSALS


def fingerprint(scope: Scope, body: bytes) -> bytes:
    digest = hashlib.sha256()
    method = str(scope.get("method", "")).encode()
    for part in (method, scope["raw_path"], scope.get("query_string", b"")):
        digest.update(len(part).to_bytes(4, "big") + part)
    digest.update(body)
    return digest.digest()


def _key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            return str(value.decode("latin-1"))
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > BODY_MAX:
            raise problem(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "request-entity-too-large",
                f"a partner API request body is at most {BODY_MAX} bytes",
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def idempotent(app: ASGIApp, access: PartnerAccess) -> ASGIApp:
    """``app`` with the Idempotency-Key of POSTs kept (the caller is
    identified before: without a principal the guard answers 401)."""

    async def keyed(scope: Scope, receive: Receive, send: Send) -> None:
        principal: Principal | None = scope.get("state", {}).get(_PRINCIPAL)
        if scope.get("method") != "POST" or principal is None:
            await app(scope, receive, send)
            return
        key = _key(scope)
        if key is None:
            raise problem(
                HTTPStatus.PRECONDITION_REQUIRED,
                "idempotency-key-required",
                f"every POST of the partner API needs an {HEADER} header (a UUID, say)",
            )
        if not _KEY.fullmatch(key):
            raise problem(
                HTTPStatus.BAD_REQUEST,
                "validation-error",
                f"{HEADER}: 1 to 200 printable ASCII characters, no spaces",
                title="Request is invalid",
                extra={
                    "errors": [
                        {
                            "message": "1 to 200 printable ASCII characters",
                            "key": HEADER,
                            "source": "header",
                        }
                    ]
                },
            )
        body = await _read_body(receive)
        request = fingerprint(scope, body)
        keys = access.key_store()
        outcome = await keys.claim(KeyRequest(principal, key, request))
        if isinstance(outcome, InFlight):
            raise problem(
                HTTPStatus.CONFLICT,
                "idempotency-key-in-flight",
                f"a request with this {HEADER} is in flight; retry once it has been answered",
                headers={"Retry-After": "1"},
            )
        if isinstance(outcome, Answered):
            if outcome.answer.request_sha256 != request:
                raise problem(
                    HTTPStatus.UNPROCESSABLE_ENTITY,
                    "idempotency-key-mismatch",
                    f"this {HEADER} was used for another request (its method, path or body"
                    " differ); use a new key for a new request",
                )
            await _replay(send, outcome.answer)
            return
        held = outcome
        settled = False

        delivered = False

        async def replayed_body() -> Any:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        start: dict[str, Any] | None = None
        chunks: list[bytes] = []

        async def keep(event: Any) -> None:
            nonlocal start, settled
            message: dict[str, Any] = event
            if message["type"] == "http.response.start":
                start, chunks[:] = message, []
                return
            if message["type"] != "http.response.body" or start is None:
                await send(event)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            content = b"".join(chunks)
            status = int(start["status"])
            if stored(status):
                kept = StoredAnswer(
                    request_sha256=request,
                    status_code=status,
                    headers=[
                        (name.decode("latin-1"), value.decode("latin-1"))
                        for name, value in start.get("headers", ())
                        if name.decode("latin-1").lower() in KEPT_HEADERS
                    ],
                    body=content,
                )
                session = access.opened_request_session(scope)
                if status < 300 and session is not None and session.in_transaction():
                    # With the use case's rows: they commit together, once
                    # the answer starts.
                    settled = await store_answer_with(session, held, kept)
                    if not settled:
                        # Answered instead of the use case's answer, whose
                        # work rolls back (a 409 is not committed).
                        await _send_problem(scope, send, _claim_lost())
                        return
                elif not await keys.store(KeptAnswer(held, kept)):
                    log.warning("Idempotency-Key %r: claim lost before its answer was stored", key)
                settled = True
            else:
                await keys.release(held)
                settled = True
            await send(cast(Any, start))
            await send({"type": "http.response.body", "body": content, "more_body": False})

        try:
            await app(scope, replayed_body, keep)
        finally:
            if not settled:
                # No answer to keep (the request failed or was cut off): the
                # next request with the key runs. If this fails too, the
                # claim's lease frees the key.
                with contextlib.suppress(Exception):
                    await keys.release(held)

    return keyed


class KeyStore:
    """The Idempotency-Key store of one server process: the claims of
    concurrent requests are written in one statement, and so are their
    answers (``partners.idempotency_keys``); a request holds no connection
    while it runs."""

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 500) -> None:
        self._pool = pool
        self._claims: MicroBatcher[KeyRequest, Claim | InFlight | Answered] = MicroBatcher(
            self._claim, name="idempotency-claims", max_batch=max_batch
        )
        self._answers: MicroBatcher[KeptAnswer, bool] = MicroBatcher(
            self._store, name="idempotency-answers", max_batch=max_batch
        )

    async def claim(self, request: KeyRequest) -> Claim | InFlight | Answered:
        return await self._claims.submit(request)

    async def store(self, kept: KeptAnswer) -> bool:
        """Whether the answer was kept (False: the claim was lost)."""
        return await self._answers.submit(kept)

    async def release(self, held: Claim) -> None:
        await release(self._pool, held)

    async def close(self) -> None:
        await self._claims.close()
        await self._answers.close()

    async def _claim(self, batch: list[KeyRequest]) -> list[Claim | InFlight | Answered]:
        return await claim_many(self._pool, batch, now=datetime.now(UTC))

    async def _store(self, batch: list[KeptAnswer]) -> list[bool]:
        return await store_many(self._pool, batch)


def _claim_lost() -> ProblemDetailsException:
    # The request outlived its claim's lease and another request with the
    # key took it over: this one's work rolls back.
    return problem(
        HTTPStatus.CONFLICT,
        "idempotency-key-in-flight",
        f"this request took longer than its {HEADER} claim lasts, and a request with the key"
        " took it over; its work was not kept. Retry once that one has been answered",
        headers={"Retry-After": "1"},
    )


async def _send_problem(scope: Scope, send: Send, refusal: ProblemDetailsException) -> None:
    # Sent as the answer (raising it here would come too late: the
    # handler's answer has already started, as far as Litestar knows).
    response = refusal.to_response(Request(scope))
    body = msgspec.json.encode(response.content)
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [
        (str(name).lower().encode("latin-1"), str(value).encode("latin-1"))
        for name, value in response.headers.items()
    ]
    status = int(response.status_code or refusal.status_code)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _replay(send: Send, answer: StoredAnswer) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers]
    headers.append((b"idempotent-replayed", b"true"))
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body, "more_body": False})
