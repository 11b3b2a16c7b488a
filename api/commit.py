"""The request's transaction committed before its answer leaves, and a
failed commit answered as the failure it is.

advanced-alchemy's ``autocommit`` handler commits when the answer starts and
logs a failed commit at debug level: the client would then get its 2xx for
writes that were rolled back (a deferred constraint, a serialization
failure at commit, the database gone at that instant). This handler commits
at the same moment, and when the commit fails it turns the answer, which
has not left yet, into the problem the error maps to
(``api.problems.from_database_error``): the status line, the headers and
the body are all replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, cast

import msgspec
from advanced_alchemy.extensions.litestar._utils import (
    delete_aa_scope_state,
    get_aa_scope_state,
)
from advanced_alchemy.extensions.litestar.plugins.init.config.common import (
    SESSION_TERMINUS_ASGI_EVENTS,
)
from litestar.plugins.problem_details import ProblemDetailsException
from litestar.types import Message, Scope
from sqlalchemy.ext.asyncio import AsyncSession

from api.problems import from_database_error

log = logging.getLogger(__name__)

#: Where the problem replacing a failed commit's answer waits for the body
#: message, in the request's ASGI scope.
_REPLACED_BODY = "coalition.commit_failure_body"


def _problem_answer(error: Exception) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """The status, headers and body of the problem ``error`` maps to."""
    problem: ProblemDetailsException = from_database_error(error)
    status = problem.status_code or 500
    document: dict[str, Any] = {
        "type": problem.type_,
        "title": problem.title,
        "status": status,
        "detail": problem.detail,
    }
    if isinstance(problem.extra, dict):
        document.update(problem.extra)
    body = msgspec.json.encode({k: v for k, v in document.items() if v is not None})
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in (problem.headers or {}).items()]
    return status, headers, body


def commit_before_send(
    session_scope_key: str,
) -> Callable[[Message, Scope], Coroutine[Any, Any, None]]:
    """The before-send handler of the database config whose sessions sit
    at ``session_scope_key`` in the scope (advanced-alchemy makes that key
    unique per config)."""

    async def handler(message: Message, scope: Scope) -> None:
        await _commit_or_answer(message, scope, session_scope_key)

    return handler


async def _commit_or_answer(message: Message, scope: Scope, session_scope_key: str) -> None:
    """Commit a 2xx answer's transaction, roll back any other's; on a
    failed commit, answer the error instead of the 2xx."""
    state = cast(dict[str, Any], scope)
    session = cast(AsyncSession | None, get_aa_scope_state(scope, session_scope_key))
    try:
        if message["type"] == "http.response.start" and session is not None:
            if 200 <= message["status"] < 300:
                try:
                    await session.commit()
                except Exception as error:
                    log.warning("commit failed, answering its error instead: %s", error)
                    try:
                        await session.rollback()
                    except Exception:
                        log.debug("rollback after a failed commit failed", exc_info=True)
                    status, headers, body = _problem_answer(error)
                    message["status"] = status
                    message["headers"] = headers
                    state[_REPLACED_BODY] = body
            else:
                await session.rollback()
        elif message["type"] == "http.response.body" and _REPLACED_BODY in state:
            replacement = state[_REPLACED_BODY]
            # The first body message carries the whole problem; any later
            # ones (a streamed answer) carry nothing.
            state[_REPLACED_BODY] = b""
            message["body"] = replacement
            message["more_body"] = False
    finally:
        if session is not None and message["type"] in SESSION_TERMINUS_ASGI_EVENTS:
            try:
                await session.close()
            except Exception:
                log.debug("closing the session failed", exc_info=True)
            delete_aa_scope_state(scope, session_scope_key)
