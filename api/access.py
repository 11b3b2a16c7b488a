"""Who may call the operator API: the admin token, or API keys with scopes.

A key looks like ``ck_<prefix>_<secret>``; only the SHA-256 of the secret is
stored. A verified key is remembered for a short while so a busy client does
not cost a query per request; a revoked key stops working within that time.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from typing import Any

import asyncpg
import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from core.principal import ALL_SCOPES, Principal, PrincipalKind
from ledger import new_id

#: Every scope there is. ``*`` (``ALL_SCOPES``, the admin token) grants all.
SCOPES = frozenset(
    {
        "ledger:read",
        "ledger:write",
        "programs:read",
        "programs:write",
        "rules:read",
        "rules:write",
        "members:read",
        "members:write",
        "purchases:write",
        "events:write",
    }
)
CACHE_SECONDS = 30.0
_CHALLENGE = 'Bearer realm="coalition"'


class IssuedKey(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    key: str
    scopes: list[str]


async def issue_key(pool: asyncpg.Pool, name: str, scopes: list[str]) -> IssuedKey:
    unknown = set(scopes) - SCOPES
    if unknown or not scopes:
        raise ValueError(
            f"unknown scopes: {', '.join(sorted(unknown))}"
            if unknown
            else "a key needs at least one scope"
        )
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    key_id = new_id()
    await pool.execute(
        "INSERT INTO api_keys (id, name, prefix, secret_sha256, scopes)"
        " VALUES ($1, $2, $3, $4, $5)",
        key_id,
        name,
        prefix,
        hashlib.sha256(secret.encode()).digest(),
        sorted(scopes),
    )
    return IssuedKey(id=key_id, name=name, key=f"ck_{prefix}_{secret}", scopes=sorted(scopes))


async def revoke_key(pool: asyncpg.Pool, name: str) -> bool:
    status = await pool.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", name
    )
    return not status.endswith(" 0")


class Gatekeeper:
    """Turns a bearer credential into the operator ``Principal`` (``admin``
    or ``key:<name>``), or refuses it."""

    def __init__(self, pool: asyncpg.Pool | None, admin_token: str | None) -> None:
        self.pool = pool
        self._admin = admin_token.encode() if admin_token else None
        self._verified: dict[str, tuple[float, Principal]] = {}

    async def identify(self, presented: str) -> Principal | None:
        if self._admin is not None and secrets.compare_digest(presented.encode(), self._admin):
            return _ADMIN
        cached = self._verified.get(presented)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        _, prefix, secret = [*presented.split("_", 2), "", ""][:3]
        if not presented.startswith("ck_") or not prefix or not secret or self.pool is None:
            return None
        row = await self.pool.fetchrow(
            "SELECT name, secret_sha256, scopes FROM api_keys"
            " WHERE prefix = $1 AND revoked_at IS NULL",
            prefix,
        )
        digest = hashlib.sha256(secret.encode()).digest()
        if row is None or not secrets.compare_digest(bytes(row["secret_sha256"]), digest):
            return None
        principal = Principal(
            kind=PrincipalKind.OPERATOR, actor=f"key:{row['name']}", scopes=frozenset(row["scopes"])
        )
        self._verified[presented] = (time.monotonic() + CACHE_SECONDS, principal)
        return principal


_ADMIN = Principal(kind=PrincipalKind.OPERATOR, actor="admin", scopes=frozenset({ALL_SCOPES}))


def require_scope(scope: str, *, reading: str | None = None) -> Guard:
    """A guard admitting callers whose credential carries ``scope`` (or, for
    GET and HEAD requests, ``reading`` when given)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        needed = reading if reading and connection.scope.get("method") in ("GET", "HEAD") else scope
        gatekeeper: Gatekeeper = connection.app.state.gatekeeper
        scheme, _sep, presented = connection.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise NotAuthorizedException(
                detail="a bearer token is required", headers={"WWW-Authenticate": _CHALLENGE}
            )
        principal = await gatekeeper.identify(presented.strip())
        if principal is None:
            raise NotAuthorizedException(
                detail="the bearer token is not valid",
                headers={"WWW-Authenticate": 'Bearer realm="coalition", error="invalid_token"'},
            )
        if not principal.allows(needed):
            raise PermissionDeniedException(detail=f"this credential lacks the scope {needed!r}")
        connection.state.principal = principal

    return guard
