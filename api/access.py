"""Who may call the operator API: the admin token, or API keys with scopes.

A key looks like ``ck_<prefix>_<secret>``; only the SHA-256 of the secret is
stored. A verified key is remembered for a short while so a busy client does
not cost a query per request; a revoked key stops working within that time
(at once in the process that revoked it).

A key's name is its actor in the audit trail (``key:<name>``), so a name is
never given to a second key, even after the first is revoked (a unique
index on names, migration 0019). A repeat of the request that issued a key,
a short while after, re-issues that key with a fresh secret (``issue_key``).

The scopes are those the modules declare (``api.modules.SCOPES``).

A key may be bound to one program (its tenant): it then acts in that
program only, its look-ups are filtered by it, and it cannot act on what
belongs to the platform as a whole (jobs, the raw ledger). A key grants at
most its issuer's scopes and tenant: a key bound to a program issues, lists
and revokes only keys bound to the same program.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from api.modules import SCOPES
from core import audit
from core.errors import NotFound
from core.principal import ALL_SCOPES, Principal, PrincipalKind
from core.programs import read_program
from ledger import new_id
from rewards.connections import Connection

__all__ = ["SCOPES"]

CACHE_SECONDS = 30.0
_CHALLENGE = 'Bearer realm="coalition"'

#: A key's name: it appears in paths (``DELETE /api-keys/{name}``) and as the
#: audit trail's actor.
KEY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
#: How long after a key's issue a repeat of the request that issued it
#: re-issues it (a fresh secret) rather than being refused (``issue_key``).
REISSUE_WINDOW = timedelta(minutes=15)


class KeyRefused(ValueError):
    """A key cannot be issued as asked; ``field`` is the request's field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class InvalidKeyRequest(KeyRefused):
    """Unknown scopes, none at all, or a name of the wrong form."""


class KeyNameTaken(KeyRefused):
    """Another key, active or revoked, has this name."""


class KeyBeyondIssuer(KeyRefused):
    """The key would grant a scope its issuer lacks."""


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
    program: Annotated[
        str | None,
        msgspec.Meta(
            description="The slug of the one program the key acts in; null: every program."
        ),
    ]
    created_at: Annotated[datetime, msgspec.Meta(description="When the key was issued.")]
    reissued: Annotated[
        bool,
        msgspec.Meta(
            description="True when this answers a repeat of the request that issued the key"
            f" (within {REISSUE_WINDOW.seconds // 60} minutes): the same key with a fresh secret"
            " and prefix; the secret answered before no longer works."
        ),
    ] = False


class KeyView(msgspec.Struct, frozen=True, kw_only=True):
    """An API key as listed: never its secret."""

    name: Annotated[str, msgspec.Meta(description="The key's name, unique for good.")]
    prefix: Annotated[
        str, msgspec.Meta(description="The key's public part, `ck_<prefix>_...`, to tell it by.")
    ]
    scopes: Annotated[list[str], msgspec.Meta(description="The scopes the key grants.")]
    program: Annotated[
        str | None,
        msgspec.Meta(
            description="The slug of the one program the key acts in; null: every program."
        ),
    ]
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


async def issue_key(
    db: asyncpg.Pool | Connection,
    name: str,
    scopes: list[str],
    program: str | None = None,
    *,
    principal: Principal,
) -> IssuedKey:
    """Issue a key on behalf of ``principal``, bound to the program with the
    slug ``program`` (None: the issuer's own program, or every program for
    an issuer of the platform), in a transaction of its own or, on a
    connection inside one, in the caller's (so that it commits with the
    caller's audit line). A program outside the issuer's tenant is refused
    exactly as a missing one is.

    The secret is shown once and stored only hashed, so a retry after a
    lost answer cannot be shown it again. Instead, a repeat of the same
    request (same name, scopes and program, same issuer) within
    ``REISSUE_WINDOW`` of the key's issue re-issues that key: the same id
    and name, a fresh secret and prefix (``reissued``); the earlier secret
    stops working when this commits (a server's cache of it must be dropped:
    ``Gatekeeper.forget``). Any other request under a taken name, a revoked
    key's included, is ``KeyNameTaken``. Of two identical requests at once,
    the one that commits last holds the working secret.

    Whether the key was used meanwhile is not asked. Knowing it would cost
    a write on the hot path (a ``last_used_at`` on each verification), and
    it would not change what a re-issue can do: it grants nothing new (the
    same scopes and program, to the issuer who was shown the earlier
    secret), and only that issuer can cause it, who could revoke the key
    anyway. The window keeps a stale repeat from rotating a key long in use
    under its users; a key issued by someone else, or before issuers were
    kept, is never re-issued."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as acquired:
            return await issue_key(acquired, name, scopes, program, principal=principal)
    connection = db
    granted = check_scopes(scopes)
    if lacking := [scope for scope in granted if not principal.allows(scope)]:
        raise KeyBeyondIssuer(
            "scopes", f"this credential cannot grant {', '.join(lacking)}, which it lacks"
        )
    if not re.fullmatch(KEY_NAME_PATTERN, name):
        raise InvalidKeyRequest(
            "name", "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    program_id, program = await _key_program(connection, principal, program)
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    digest = hashlib.sha256(secret.encode()).digest()
    async with connection.transaction():
        # A second issue of one name waits here for the first to commit (the
        # unique index on names), then inserts nothing.
        row = await connection.fetchrow(
            "INSERT INTO api_keys (id, name, prefix, secret_sha256, scopes, program_id, issued_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING"
            " RETURNING id, created_at",
            new_id(),
            name,
            prefix,
            digest,
            granted,
            program_id,
            principal.actor,
        )
        reissued = row is None
        if reissued:
            # Under the row's lock, so the comparison and the new secret are one.
            row = await connection.fetchrow(
                "UPDATE api_keys SET prefix = $2, secret_sha256 = $3"
                " WHERE name = $1 AND revoked_at IS NULL AND scopes = $4::text[]"
                " AND program_id IS NOT DISTINCT FROM $5::uuid AND issued_by = $6"
                " AND created_at > now() - $7::interval"
                " RETURNING id, created_at",
                name,
                prefix,
                digest,
                granted,
                program_id,
                principal.actor,
                REISSUE_WINDOW,
            )
        elif row is not None:
            # With the key, whatever door issued it (the API, the CLI); a
            # re-issue answers the same request again, as a replay does.
            # Not the prefix: a re-issue changes it, the id names the key.
            await audit.record_on(
                connection,
                principal,
                "api-key.issue",
                f"api-key:{name}",
                {"id": str(row["id"]), "scopes": granted, "program": program},
            )
    if row is None:
        raise KeyNameTaken("name", f"a key named {name!r} exists already (names are never reused)")
    return IssuedKey(
        id=row["id"],
        name=name,
        key=f"ck_{prefix}_{secret}",
        prefix=prefix,
        scopes=granted,
        program=program,
        created_at=row["created_at"],
        reissued=reissued,
    )


async def _key_program(
    connection: Connection, principal: Principal, slug: str | None
) -> tuple[uuid.UUID | None, str | None]:
    """The id and slug of the program a new key is bound to."""
    if slug is None:
        if principal.program_id is None:
            return None, None
        # The issuer's own tenant: a key never reaches wider than its issuer's.
        own = await connection.fetchval(
            "SELECT slug FROM programs WHERE id = $1", principal.program_id
        )
        return principal.program_id, own
    try:
        # Filtered by the issuer's tenant, like every program look-up.
        program = await read_program(connection, principal, slug)
    except NotFound as error:
        raise InvalidKeyRequest("program", str(error)) from None
    return program.id, program.slug


async def revoke_key(db: asyncpg.Pool | Connection, name: str, *, principal: Principal) -> bool:
    """Revoke the active key named ``name`` within ``principal``'s tenant,
    audited; False if there is none (a key of another program is none)."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as acquired:
            return await revoke_key(acquired, name, principal=principal)
    async with db.transaction():
        status = await db.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL"
            " AND ($2::uuid IS NULL OR program_id = $2::uuid)",
            name,
            principal.program_id,
        )
        revoked = not status.endswith(" 0")
        if revoked:
            await audit.record_on(db, principal, "api-key.revoke", f"api-key:{name}")
    return revoked


async def list_keys(db: asyncpg.Pool | Connection, *, principal: Principal) -> list[KeyView]:
    """Every key within ``principal``'s tenant, active and revoked."""
    rows = await db.fetch(
        "SELECT k.name, k.prefix, k.scopes, p.slug AS program, k.created_at, k.revoked_at"
        " FROM api_keys k LEFT JOIN programs p ON p.id = k.program_id"
        " WHERE $1::uuid IS NULL OR k.program_id = $1::uuid"
        " ORDER BY k.created_at, k.name",
        principal.program_id,
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
            "SELECT name, secret_sha256, scopes, program_id FROM api_keys"
            " WHERE prefix = $1 AND revoked_at IS NULL",
            prefix,
        )
        digest = hashlib.sha256(secret.encode()).digest()
        if row is None or not secrets.compare_digest(bytes(row["secret_sha256"]), digest):
            return None
        principal = Principal(
            kind=PrincipalKind.OPERATOR,
            actor=f"key:{row['name']}",
            scopes=frozenset(row["scopes"]),
            program_id=row["program_id"],
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

#: Who acts through the command line (``coalition api-key ...``): whoever
#: can reach the database can do everything.
CONSOLE = Principal(kind=PrincipalKind.OPERATOR, actor="console", scopes=frozenset({ALL_SCOPES}))


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


async def platform_only(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """A guard, after ``require_scope``, for what belongs to the platform as a
    whole (jobs that run over every program, the raw ledger): a key bound
    to one program is refused with 403. Not 404: the refusal depends on the
    credential alone, never on another program's data, so it reveals
    nothing, and the route exists for the caller to see in the reference."""
    principal: Principal = connection.state.principal
    if principal.program_id is not None:
        raise PermissionDeniedException(
            detail=f"{principal.actor} acts in one program only; this belongs to the platform"
        )


def operator(request: Request[Any, Any, Any]) -> Principal:
    """The operator the guard admitted (``require_scope``)."""
    principal: Principal = request.state.principal
    return principal
