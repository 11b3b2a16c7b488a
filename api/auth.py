"""Bearer-token guard of the operator (ledger) API."""

from __future__ import annotations

import secrets
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import SecurityScheme
from litestar.types import Guard

#: Name of the security scheme in the OpenAPI document.
SECURITY_SCHEME = "AdminToken"

ADMIN_TOKEN_SCHEME = SecurityScheme(
    type="http",
    scheme="bearer",
    description="The operator token (COALITION_ADMIN_TOKEN).",
)

_CHALLENGE = 'Bearer realm="coalition"'
_INVALID = 'Bearer realm="coalition", error="invalid_token"'


def require_admin_token(admin_token: str | None) -> Guard:
    """A guard admitting requests bearing ``admin_token``; with no token
    configured it admits none."""
    expected = admin_token.encode() if admin_token else None

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        scheme, _sep, presented = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise NotAuthorizedException(
                detail="a bearer token is required", headers={"WWW-Authenticate": _CHALLENGE}
            )
        # compare_digest takes time independent of where the tokens differ.
        if expected is None or not secrets.compare_digest(presented.strip().encode(), expected):
            raise NotAuthorizedException(
                detail="the bearer token is not valid",
                headers={"WWW-Authenticate": _INVALID},
            )

    return guard
