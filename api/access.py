"""Who may call the operator API: the admin token, or API keys with scopes.

A key looks like ``ck_<prefix>_<secret>``; only the SHA-256 of the secret is
stored. A verified key is remembered for a short while so a busy client does
not cost a query per request; a revoked key stops working within that time
(at once in the process that revoked it).

A key's name is its actor in the audit trail (``key:<name>``), so a name is
never given to a second key, even after the first is revoked.

The scopes are those the modules declare (``api.modules.SCOPES``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from api.modules import SCOPES
from core.principal import ALL_SCOPES, Principal, PrincipalKind
from ledger import new_id
from rewards.connections import Connection

__all__ = ["SCOPES"]

CACHE_SECONDS = 30.0
_CHALLENGE = 'Bearer realm="coalition"'

#: A key's name: it appears in paths (``DELETE /api-keys/{name}``) and as the
#: audit trail's actor.
KEY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
#: Two keys issued under one name at once wait for each other here (the
#: table has no unique index on names: revoked and active keys share it).
_NAME_LOCK = 1095778633  # "ApiK"


class KeyRefused(ValueError):
    """A key cannot be issued as asked; ``field`` is the request's field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class InvalidKeyRequest(KeyRefused):
    """Unknown scopes, none at all, or a name of the wrong form."""


class KeyNameTaken(KeyRefused):
    """Another key, active or revoked, has this name."""


class IssuedKey(msgspec.Struct, frozen=True, kw_only=True):
    id: Annotated[uuid.UUID, msgspec.Meta(description="The key's id.")]
    name: Annotated[str, msgspec.Meta(description="The key's name, unique for good.")]
    key: Annotated[
        str,
        msgspec.Meta(
            description="The key itself, to send as `Authorization: Bearer <key>`: shown"
            " this once, stored only hashed."
        ),
    ]
    prefix: Annotated[
        str, msgspec.Meta(description="The key's public part, `ck_<prefix>_...`, to tell it by.")
    ]
    scopes: Annotated[list[str], msgspec.Meta(description="The scopes the key grants.")]
    created_at: Annotated[datetime, msgspec.Meta(description="When the key was issued.")]


class KeyView(msgspec.Struct, frozen=True, kw_only=True):
    """An API key as listed: never its secret."""

    name: Annotated[str, msgspec.Meta(description="The key's name, unique for good.")]
    prefix: Annotated[
        str, msgspec.Meta(description="The key's public part, `ck_<prefix>_...`, to tell it by.")
    ]
    scopes: Annotated[list[str], msgspec.Meta(description="The scopes the key grants.")]
    created_at: Annotated[datetime, msgspec.Meta(description="When the key was issued.")]
    revoked_at: Annotated[
        datetime | None,
        msgspec.Meta(description="When the key was revoked; null while it works."),
    ] = None


def check_scopes(scopes: list[str]) -> list[str]:
    """The scopes, each once and sorted; refused if empty or unknown."""
    if not scopes:
        raise InvalidKeyRequest("scopes", "a key needs at least one scope")
    if unknown := sorted(set(scopes) - SCOPES.keys()):
        raise InvalidKeyRequest(
            "scopes",
            f"unknown scopes: {', '.join(unknown)}; the scopes are {', '.join(sorted(SCOPES))}",
        )
    return sorted(set(scopes))


async def issue_key(db: asyncpg.Pool | Connection, name: str, scopes: list[str]) -> IssuedKey:
    """Issue a key, in a transaction of its own or, on a connection inside
    one, in the caller's (so that it commits with the caller's audit line)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as acquired:
            return await issue_key(acquired, name, scopes)
    connection = db
    granted = check_scopes(scopes)
    if not re.fullmatch(KEY_NAME_PATTERN, name):
        raise InvalidKeyRequest(
            "name", "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    key_id = new_id()
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _NAME_LOCK, name)
        created_at = await connection.fetchval(
            "INSERT INTO api_keys (id, name, prefix, secret_sha256, scopes)"
            " SELECT $1, $2::varchar, $3, $4, $5"
            " WHERE NOT EXISTS (SELECT FROM api_keys WHERE name = $2::varchar)"
            " RETURNING created_at",
            key_id,
            name,
            prefix,
            hashlib.sha256(secret.encode()).digest(),
            granted,
        )
    if created_at is None:
        raise KeyNameTaken("name", f"a key named {name!r} exists already (names are never reused)")
    return IssuedKey(
        id=key_id,
        name=name,
        key=f"ck_{prefix}_{secret}",
        prefix=prefix,
        scopes=granted,
        created_at=created_at,
    )


async def revoke_key(db: asyncpg.Pool | Connection, name: str) -> bool:
    """Revoke the active key named ``name``; False if there is none."""
    status = await db.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL", name
    )
    return not status.endswith(" 0")


async def list_keys(db: asyncpg.Pool | Connection) -> list[KeyView]:
    rows = await db.fetch(
        "SELECT name, prefix, scopes, created_at, revoked_at FROM api_keys"
        " ORDER BY created_at, name"
    )
    return [KeyView(**dict(row)) for row in rows]


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

    def forget(self, name: str) -> None:
        """Stop trusting the remembered verifications of the key ``name``
        (just revoked): this process refuses it from now on."""
        actor = f"key:{name}"
        for presented, (_, principal) in list(self._verified.items()):
            if principal.actor == actor:
                self._verified.pop(presented, None)


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


def operator(request: Request[Any, Any, Any]) -> Principal:
    """The operator the guard admitted (``require_scope``)."""
    principal: Principal = request.state.principal
    return principal
