"""RFC 9457 problem details: every error the API answers with.

Domain errors (``core.errors.DomainError``) carry a stable ``type_slug`` and a
kind; here each becomes a problem whose ``type`` is
``https://coalition.dev/problems/<slug>`` with its kind's status, so a new
module's errors need no entry here. The ledger sits below the core: its
errors keep a small map of their own.
Unexpected exceptions become a bare 500 problem: the details go to the log,
never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Annotated, Any

import asyncpg
import msgspec
import stripe
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.modules import CONSTRAINTS
from api.stripe.gateway import PaymentsNotConfigured
from core.constraints import violation
from core.errors import AlreadyExists, ConcurrentChange, DomainError, ErrorKind
from ledger.errors import (
    UNREACHABLE,
    BatchTooLarge,
    InvalidCursor,
    LedgerError,
    LedgerUnavailable,
    PeriodClosed,
    is_input_fault,
    refusal,
)

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://coalition.dev/problems/"
MEDIA_TYPE = "application/problem+json"

#: The status of each kind of domain error.
KIND_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID: HTTPStatus.UNPROCESSABLE_ENTITY,
    ErrorKind.NOT_FOUND: HTTPStatus.NOT_FOUND,
    ErrorKind.CONFLICT: HTTPStatus.CONFLICT,
    ErrorKind.FORBIDDEN: HTTPStatus.FORBIDDEN,
    ErrorKind.TOO_LARGE: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    ErrorKind.UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
}

#: Status of each ledger error (the ledger is below the core and knows no
#: kinds); a subclass not listed takes its nearest base's.
LEDGER_ERROR_STATUS: dict[type[LedgerError], int] = {
    LedgerError: HTTPStatus.UNPROCESSABLE_ENTITY,
    # The batch is larger than the ledger takes in one call: content too large.
    BatchTooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    InvalidCursor: HTTPStatus.BAD_REQUEST,
    LedgerUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
    # The records' state refuses it (the period is closed), not its data.
    PeriodClosed: HTTPStatus.CONFLICT,
}


class ProblemError(msgspec.Struct, kw_only=True):
    """Why one field was rejected."""

    message: Annotated[
        str, msgspec.Meta(description="What is wrong with the value, e.g. Expected `int` >= 0.")
    ]
    key: Annotated[
        str | None, msgspec.Meta(description="The field, as a path: transfers[0].amount.")
    ] = None
    source: Annotated[
        str | None, msgspec.Meta(description="Where the field was sent: body, query, path.")
    ] = None


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem (application/problem+json)."""

    type: Annotated[
        str,
        msgspec.Meta(
            description=f"The kind of failure, {PROBLEM_BASE}<slug>: one stable slug per kind."
        ),
    ]
    title: Annotated[str, msgspec.Meta(description="A short summary of the kind of failure.")]
    status: Annotated[int, msgspec.Meta(description="The HTTP status code of the answer.")]
    detail: Annotated[str, msgspec.Meta(description="What went wrong with this request.")]
    errors: Annotated[
        list[ProblemError] | None,
        msgspec.Meta(description="The rejected fields, for validation-error (400)."),
    ] = None
    field: Annotated[
        str | None,
        msgspec.Meta(description="The field whose value is taken, for already-exists (409)."),
    ] = None


def problem(
    status: int,
    slug: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> ProblemDetailsException:
    return ProblemDetailsException(
        status_code=status,
        type_=PROBLEM_BASE + slug,
        title=title or _title(slug),
        detail=detail,
        headers=headers,
        extra=extra,
    )


def not_found(what: str) -> ProblemDetailsException:
    return problem(HTTPStatus.NOT_FOUND, "not-found", f"{what} does not exist")


#: What each error status means in this API (the problem types it carries),
#: as the OpenAPI document describes it.
STATUS_MEANINGS: dict[int, str] = {
    HTTPStatus.BAD_REQUEST: "The request is invalid: validation-error (with the rejected"
    " fields in `errors`), malformed-body, invalid-cursor.",
    HTTPStatus.UNAUTHORIZED: "No valid token: unauthorized (see WWW-Authenticate).",
    HTTPStatus.FORBIDDEN: "The token lacks the scope the operation needs: forbidden.",
    HTTPStatus.NOT_FOUND: "What the path names does not exist: not-found.",
    HTTPStatus.CONFLICT: "The request conflicts with the state of the records: the type"
    " names which conflict (e.g. idempotency-key-reused; already-exists, naming the taken"
    " `field`; concurrent-change, which is safe to retry; period-closed, a movement dated"
    " in a closed period).",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "The body or the batch is larger than accepted:"
    " request-entity-too-large, batch-too-large.",
    HTTPStatus.UNPROCESSABLE_ENTITY: "Well-formed, but refused by the rules of the domain"
    " or a bound of what stores it; the type names the rule.",
    HTTPStatus.TOO_MANY_REQUESTS: "Too many requests: too-many-requests; Retry-After and"
    " RateLimit-* headers say when to come back.",
    HTTPStatus.BAD_GATEWAY: "The payment provider failed: payment-provider-error.",
    HTTPStatus.SERVICE_UNAVAILABLE: "Unavailable for now, with Retry-After:"
    " database-unavailable, ledger-unavailable (retrying with the same ids is safe),"
    " payments-not-configured.",
}


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI documentation of the problems a route may answer with."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type=MEDIA_TYPE,
            description=STATUS_MEANINGS.get(status, HTTPStatus(status).phrase),
            generate_examples=False,
        )
        for status in statuses
    }


def _title(slug: str) -> str:
    return slug.replace("-", " ").capitalize()


def _slug(status: int) -> str:
    return HTTPStatus(status).phrase.lower().replace(" ", "-").replace("'", "")


def from_http_exception(exc: HTTPException) -> ProblemDetailsException:
    phrase = HTTPStatus(exc.status_code).phrase
    if exc.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
        # Framework 5xx details can describe internals; say only what happened.
        log.error("HTTP %s: %s", exc.status_code, exc.detail)
        detail = phrase
    else:
        detail = exc.detail
    slug = _slug(exc.status_code)
    if isinstance(exc.__cause__, SerializationException):
        slug, phrase = "malformed-body", "Request body is malformed"
    headers = dict(exc.headers or {})
    if exc.status_code in (HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE):
        # Every 429 and 503 says when to come back, the framework's too.
        headers.setdefault("Retry-After", "1")
    return problem(exc.status_code, slug, detail, title=phrase, headers=headers or None)


def from_validation_exception(exc: ValidationException) -> ProblemDetailsException:
    errors = exc.extra if isinstance(exc.extra, list) else []
    return problem(
        HTTPStatus.BAD_REQUEST,
        "validation-error",
        _describe(errors) or exc.detail,
        title="Request is invalid",
        headers=exc.headers,
        extra={"errors": errors},
    )


def from_ledger_error(exc: LedgerError) -> ProblemDetailsException:
    status = next(
        LEDGER_ERROR_STATUS[cls] for cls in type(exc).__mro__ if cls in LEDGER_ERROR_STATUS
    )
    headers = None
    detail = str(exc) or _title(exc.type_slug)
    if isinstance(exc, LedgerUnavailable):
        # Its message may quote the database; the log keeps it.
        log.warning("ledger unavailable: %s", exc)
        detail = "the ledger could not confirm the request; retrying with the same ids is safe"
        headers = {"Retry-After": "1"}
    return problem(status, exc.type_slug, detail, headers=headers)


def from_domain_error(exc: DomainError) -> ProblemDetailsException:
    status = KIND_STATUS[exc.kind]
    # Every 503, and every refusal the same request can outlive, says when
    # to come back.
    retry = exc.retryable or status == HTTPStatus.SERVICE_UNAVAILABLE
    headers = {"Retry-After": "1"} if retry else None
    extra = {"field": exc.field} if isinstance(exc, AlreadyExists) and exc.field else None
    return problem(
        status, exc.type_slug, str(exc) or _title(exc.type_slug), headers=headers, extra=extra
    )


def _driver_error(exc: BaseException) -> BaseException:
    """The driver's (asyncpg's) or the socket's own error under SQLAlchemy's
    wrappers, or ``exc`` itself."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, asyncpg.PostgresError | asyncpg.InterfaceError | OSError):
            return current
        nested = getattr(current, "orig", None)
        current = nested if isinstance(nested, BaseException) else current.__cause__
    return exc


#: Lost or stalled: the database is unreachable, or cancelled the statement
#: (its statement timeout).
_STALLED: tuple[type[Exception], ...] = (*UNREACHABLE, asyncpg.QueryCanceledError)


def from_database_error(exc: Exception) -> ProblemDetailsException:
    """Every class of database error: contention (409, retry), data it
    refuses (422), lost or stalled database (503, retry later), and what is
    left a plain 500."""
    cause = _driver_error(exc)
    if isinstance(cause, asyncpg.UniqueViolationError):
        # Its constraint says whether a field is taken (retrying cannot
        # help) or two requests raced on a key looked up first.
        log.info("integrity error: %s", cause)
        constraint = getattr(cause, "constraint_name", None)
        meaning = violation(CONSTRAINTS, constraint)
        if meaning is None:
            # Not declared by any module: say what it is, promise nothing.
            log.warning("unique constraint %s has no declared meaning", constraint)
            meaning = AlreadyExists("the request conflicts with a record that exists")
        return from_domain_error(meaning)
    if isinstance(cause, asyncpg.IntegrityConstraintViolationError):
        log.info("integrity error: %s", cause)
        constraint = getattr(cause, "constraint_name", None)
        return _invalid_data(
            f"the request breaks the rule {constraint}" if constraint else "invalid data"
        )
    if is_input_fault(cause):
        log.info("data refused by the database: %s", cause)
        return _invalid_data(_refusal(cause))
    if isinstance(cause, asyncpg.TransactionRollbackError | asyncpg.LockNotAvailableError):
        log.info("contention: %s", cause)
        return _concurrent_change(
            "another request changed the same records at the same time; retrying is safe"
        )
    if (
        isinstance(cause, _STALLED)
        or isinstance(exc, PoolTimeout)
        or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
    ):
        return from_connection_error(exc)
    return from_unexpected(exc)


def _concurrent_change(detail: str) -> ProblemDetailsException:
    return from_domain_error(ConcurrentChange(detail))


def _invalid_data(detail: str) -> ProblemDetailsException:
    return problem(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "invalid-data",
        detail,
        title="Request holds data that cannot be stored",
    )


def _refusal(cause: BaseException) -> str:
    return f"the database cannot store a value of this request: {refusal(cause)[1]}"


def from_recursion_error(exc: RecursionError) -> ProblemDetailsException:
    return problem(
        HTTPStatus.BAD_REQUEST,
        "malformed-body",
        "the request body is nested too deeply",
        title="Request body is malformed",
    )


def from_payments_not_configured(exc: Exception) -> ProblemDetailsException:
    # A matter of configuration: worth asking again only much later.
    return problem(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "payments-not-configured",
        str(exc),
        headers={"Retry-After": "3600"},
    )


def from_stripe_error(exc: Exception) -> ProblemDetailsException:
    log.warning("stripe: %s", exc)
    return problem(
        HTTPStatus.BAD_GATEWAY,
        "payment-provider-error",
        "the payment provider refused or failed; try again",
    )


def from_connection_error(exc: Exception) -> ProblemDetailsException:
    log.warning("database unreachable: %r", exc)
    return database_unavailable("the database does not answer; try again shortly")


def database_unavailable(detail: str) -> ProblemDetailsException:
    """503 database-unavailable, to retry in a second."""
    return problem(
        HTTPStatus.SERVICE_UNAVAILABLE, "database-unavailable", detail, headers={"Retry-After": "1"}
    )


def from_unexpected(exc: Exception) -> ProblemDetailsException:
    log.error("unexpected error", exc_info=exc)
    return problem(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        "internal-server-error",
        "the server failed to handle the request",
        title="Internal Server Error",
    )


def _describe(errors: list[Any]) -> str:
    """'transfers[0].amount: Expected `int` >= 0' for the first rejected field."""
    for error in errors:
        if isinstance(error, Mapping) and "message" in error:
            key = error.get("key")
            return f"{key}: {error['message']}" if key else str(error["message"])
    return ""


def problem_details_config() -> ProblemDetailsConfig:
    handlers: dict[type[Exception], Callable[[Any], ProblemDetailsException]] = {
        HTTPException: from_http_exception,
        ValidationException: from_validation_exception,
        LedgerError: from_ledger_error,
        DomainError: from_domain_error,
        PaymentsNotConfigured: from_payments_not_configured,
        stripe.StripeError: from_stripe_error,
        # Every class of database error, wrapped by SQLAlchemy (StatementError
        # and its DBAPIError, IntegrityError...) or not.
        StatementError: from_database_error,
        PoolTimeout: from_database_error,
        asyncpg.PostgresError: from_database_error,
        asyncpg.InterfaceError: from_database_error,
        # A read that loses the database: its outcome is known (nothing changed).
        # OSError covers ConnectionError and TimeoutError (asyncpg's command timeout).
        OSError: from_connection_error,
        RecursionError: from_recursion_error,
        Exception: from_unexpected,
    }
    return ProblemDetailsConfig(
        enable_for_all_http_exceptions=True, exception_to_problem_detail_map=handlers
    )
