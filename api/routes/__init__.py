"""HTTP routes."""

from __future__ import annotations

from typing import Protocol, TypeVar

from litestar import Response
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED


class _Replayable(Protocol):
    @property
    def replayed(self) -> bool: ...


R = TypeVar("R", bound=_Replayable)


def created_or_replayed(outcome: R) -> Response[R]:
    """201 for a new record, 200 when an idempotency key repeated a request."""
    return Response(outcome, status_code=HTTP_200_OK if outcome.replayed else HTTP_201_CREATED)
