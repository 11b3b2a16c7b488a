"""HTTP routes."""

from __future__ import annotations

from typing import Annotated, Any, Protocol, TypeVar
from uuid import UUID

from litestar import Response
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED


class _Replayable(Protocol):
    @property
    def replayed(self) -> bool: ...


R = TypeVar("R", bound=_Replayable)
T = TypeVar("T")

#: Used by the member's and the operator's hold routes alike.
HoldIdPath = Annotated[
    UUID, PathParameter(description="The hold's id, the `id` its creation answered.")
]


def created_or_replayed(outcome: R) -> Response[R]:
    """201 for a new record, 200 when an idempotency key repeated a request."""
    return Response(outcome, status_code=HTTP_200_OK if outcome.replayed else HTTP_201_CREATED)


def created_or_found(view: T, created: bool) -> Response[T]:
    """201 for a new record, 200 for one the same request made before (a
    create idempotent by a natural key: a slug, a SKU, a period)."""
    return Response(view, status_code=HTTP_201_CREATED if created else HTTP_200_OK)


def found_again(model: type[Any], answer: str) -> dict[int, ResponseSpec]:
    """The OpenAPI answer of a route using ``created_or_found`` besides its
    201: ``answer`` says what the same request again finds."""
    return {
        HTTP_200_OK: ResponseSpec(
            data_container=model, description=f"{answer}; nothing written.", generate_examples=False
        )
    }


def replayed(model: type[Any], what: str = "request") -> dict[int, ResponseSpec]:
    """The OpenAPI answer of a route using ``created_or_replayed`` besides its 201."""
    return {
        HTTP_200_OK: ResponseSpec(
            data_container=model,
            description=f"A repeated {what}: the first answer, with `replayed` true.",
            generate_examples=False,
        )
    }


# The problems each kind of route may answer with (see api.problems): any
# request may be malformed (400: a parameter, a header, a body) and any
# route may meet an unavailable database (503); a token may lack the scope
# (403); a body may be too large (413) or hold a value that breaks a rule
# or a stored bound (422); any write may meet a conflicting one (409).
OPERATOR_READ = (400, 401, 403, 404, 503)
OPERATOR_WRITE = (400, 401, 403, 404, 409, 413, 422, 503)
#: Reads and writes whose path names nothing that could be missing.
OPERATOR_LIST = tuple(s for s in OPERATOR_READ if s != 404)
OPERATOR_CREATE = tuple(s for s in OPERATOR_WRITE if s != 404)
#: A removal names what goes (404); it takes no body.
OPERATOR_DELETE = OPERATOR_READ
#: Running a job on demand: it may meet a conflicting write (409, to retry)
#: or fail (500 job-failed: what it did stays done, and a run again is safe).
JOB_RUN = (400, 401, 403, 404, 409, 500, 503)
MEMBER_READ = (400, 401, 404, 429, 503)
MEMBER_WRITE = (400, 401, 404, 409, 413, 422, 429, 503)
