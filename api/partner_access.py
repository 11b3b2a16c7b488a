"""Who may call the partner API: a partner client's access token (a JWT the
token endpoint signed, ``partners.access_tokens``), checked on every
request, and the limits the partner API keeps (requests per partner firm per
minute, ``Idempotency-Key`` on every POST: ``api.idempotency``).

A route of the partner API takes ``guards=[partner_scope("points:issue")]``
and ``security=partner_security("points:issue")``; its handler reads the
caller with ``partner(request)``.

The hot path costs no database round trip. A token's signature is checked
once (ES256, against the published key its ``kid`` names; ``alg`` pinned,
``aud`` and ``iss`` checked) and remembered until it expires; what its
client may do now (not revoked, its firm active, the companies of its
reach) is remembered per client. That memory is dropped at once in every
process whenever a client, a firm or a signing key changes: the tables'
triggers notify the channel ``partner_access`` at commit, and each process
listens on a connection of its own. While that connection is down, nothing
is remembered about clients (each request asks the records), so a missed
notice can never keep a revoked client working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig

# Where the plugin keeps a request's session (``provide_session`` reads it
# there): a handler that never asked for one has none.
from advanced_alchemy.extensions.litestar._utils import get_aa_scope_state
from litestar import Litestar, Request
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import OAuthFlow, OAuthFlows, SecurityScheme
from litestar.types import ASGIApp, Guard, Receive, Scope, Send
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.idempotency import KeyStore, idempotent
from api.rate_limits import MemberRateLimit
from api.settings import Settings, SettingsError
from core.principal import Principal
from partners.access_tokens import TokenClaims, TokenRefused, read_access_token, token_kid
from partners.client_access import ClientAccess, client_access, partner_principal
from partners.module import PARTNER_SCOPES
from partners.signing_keys import (
    KeySealer,
    PublicKey,
    Signer,
    SigningKeyUnavailable,
    current_signer,
    published_keys,
)

log = logging.getLogger(__name__)

#: Name of the partner token's security scheme in the OpenAPI document.
PARTNER_SCHEME = "PartnerToken"
TOKEN_PATH = "/oauth/token"
JWKS_PATH = "/.well-known/jwks.json"
CHANNEL = "partner_access"
#: Seconds a client's access is remembered (also while notices arrive: a
#: bound, should one be lost without the connection dropping).
CLIENT_SECONDS = 60.0
#: Seconds the current signing key is remembered by the token endpoint.
SIGNER_SECONDS = 60.0
#: Seconds the published keys are remembered for the JWKS document.
JWKS_SECONDS = 5.0
#: Seconds at least between two reads of the keys for an unknown ``kid``
#: (a forged token cannot make every request read them).
KEY_RELOAD_SECONDS = 1.0
#: Seconds between attempts to listen again after the connection dropped.
LISTEN_RETRY_SECONDS = 1.0
#: Verified tokens remembered at most.
TOKENS_MAX = 100_000

_PRINCIPAL = "partner_principal"
_REFUSAL = "partner_token_refusal"
_CHALLENGE = 'Bearer realm="coalition-partners"'

# The problems partner routes may answer with (api.problems): as operator
# routes, and 429 (the partner's rate limit); a POST also 428 (no
# Idempotency-Key) and 409 (the key's first request still in flight) and
# 422 (the key used for another request).
PARTNER_READ = (400, 401, 403, 404, 429, 503)
PARTNER_LIST = (400, 401, 403, 422, 429, 503)
PARTNER_WRITE = (400, 401, 403, 404, 409, 413, 422, 428, 429, 503)


def partner_token_scheme() -> SecurityScheme:
    return SecurityScheme(
        type="oauth2",
        description="A partner client's access token (OAuth 2.0 client credentials, RFC"
        f" 6749 section 4.4) from {TOKEN_PATH}; JWTs signed ES256 with the keys at"
        f" {JWKS_PATH}.",
        flows=OAuthFlows(
            client_credentials=OAuthFlow(token_url=TOKEN_PATH, scopes=dict(PARTNER_SCOPES))
        ),
    )


def partner_security(scope: str) -> list[dict[str, list[str]]]:
    """The ``security`` of a partner operation needing ``scope``."""
    return [{PARTNER_SCHEME: [scope]}]


class PartnerAccess:
    """The partner API's door, one per process: verifies tokens, remembers
    what it may, signs tokens for the token endpoint, counts requests."""

    def __init__(self, settings: Settings, database: SQLAlchemyAsyncConfig, url: str) -> None:
        self.sealer: KeySealer | None = None
        if settings.signing_secret:
            try:
                self.sealer = KeySealer.from_setting(settings.signing_secret)
            except ValueError as error:
                raise SettingsError(f"COALITION_SIGNING_SECRET: {error}") from None
        self.issuer = settings.partner_token_issuer
        self.lifetime = timedelta(seconds=settings.partner_token_seconds)
        self._database = database
        self._url = url
        self.pool: asyncpg.Pool | None = None
        self._key_store: KeyStore | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        #: Token -> its verified claims, and the principal last built for it
        #: with the access it was built from.
        self._tokens: dict[str, tuple[TokenClaims, ClientAccess | None, Principal | None]] = {}
        self._clients: dict[str, tuple[float, ClientAccess | None]] = {}
        self._keys: dict[str, PublicKey] = {}
        self._verifiers: dict[str, Any] = {}
        self._keys_read_at = -KEY_RELOAD_SECONDS
        self._signer: tuple[float, Signer] | None = None
        self._jwks: tuple[float, list[PublicKey]] | None = None
        self._listening = False
        #: Who awaits the next notice (``changed``), each with its loop: a
        #: test's loop may not be the one that hears the notice.
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        #: Notices received (a test waits for one, by ``changed``).
        self.notices = 0
        self.rate_limit = MemberRateLimit(
            settings.partner_rate_limit, _rate_key, settings.redis_url
        )
        # Only its count is used: by client id, in the token endpoint.
        self.token_rate_limit = MemberRateLimit(
            settings.token_rate_limit, _rate_key, settings.redis_url
        )

    # -- the door ---------------------------------------------------------

    async def identify(self, token: str) -> Principal:
        """The principal a token carries now, or ``TokenRefused``."""
        seen = self._tokens.get(token)
        if seen is None or seen[0].expires_at <= time.time():
            claims = await self._verify(token)
            seen = (claims, None, None)
        claims, built_from, principal = seen
        access = await self._access(claims.client_id)
        if access is None:
            raise TokenRefused("the client is revoked or its partner is not active")
        if principal is None or built_from is not access:
            principal = partner_principal(claims, access)
            if principal is None:
                raise TokenRefused("the token does not match its client")
        if len(self._tokens) >= TOKENS_MAX:
            self._tokens.clear()
        self._tokens[token] = (claims, access, principal)
        return principal

    async def _verify(self, token: str) -> TokenClaims:
        kid = token_kid(token)
        key = await self._verifier(kid)
        if key is None:
            raise TokenRefused(f"no published key {kid!r}")
        return read_access_token(token, key, issuer=self.issuer)

    async def _verifier(self, kid: str) -> Any:
        now = datetime.now(UTC)
        known = self._keys.get(kid)
        if known is None and time.monotonic() - self._keys_read_at >= KEY_RELOAD_SECONDS:
            await self._read_keys(now)
            known = self._keys.get(kid)
        if known is None or (known.retire_at is not None and known.retire_at <= now):
            return None
        return self._verifiers[kid]

    async def _read_keys(self, now: datetime) -> list[PublicKey]:
        assert self.pool is not None, "the partner access lifespan has not started"
        async with self.pool.acquire() as connection:
            keys = await published_keys(connection, now=now)
        self._verifiers = {k.kid: jwt.PyJWK(k.jwk).key for k in keys}
        self._keys = {k.kid: k for k in keys}
        self._keys_read_at = time.monotonic()
        return keys

    async def _access(self, client_id: str) -> ClientAccess | None:
        cached = self._clients.get(client_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        # A notice that arrives while the records are read may be about
        # them: what was read is then not remembered.
        notices = self.notices
        async with self.sessions()() as session:
            access = await client_access(session, client_id)
        if self._listening and self.notices == notices:
            self._clients[client_id] = (time.monotonic() + CLIENT_SECONDS, access)
        return access

    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """Sessions of the app's engine, apart from the request's."""
        if self._sessions is None:
            raise RuntimeError("the partner access lifespan has not started")
        return self._sessions

    def request_session(self, scope: Scope) -> AsyncSession:
        """The request's own session (the one its handler gets as
        ``db_session``), opened now if it is not yet."""
        return self._database.provide_session(scope["app"].state, scope)

    def key_store(self) -> KeyStore:
        """The Idempotency-Key store of this process."""
        if self._key_store is None:
            raise RuntimeError("the partner access lifespan has not started")
        return self._key_store

    def opened_request_session(self, scope: Scope) -> AsyncSession | None:
        """The request's own session if its handler opened one, else None."""
        session: AsyncSession | None = get_aa_scope_state(scope, self._database.session_scope_key)
        return session

    # -- signing ----------------------------------------------------------

    async def signer(self) -> Signer:
        """The current signing key (made on first use)."""
        if self.sealer is None:
            raise SigningKeyUnavailable(
                "this server has no signing secret (COALITION_SIGNING_SECRET): it issues"
                " no partner tokens"
            )
        if self._signer is not None and self._signer[0] > time.monotonic():
            return self._signer[1]
        assert self.pool is not None, "the partner access lifespan has not started"
        async with self.pool.acquire() as connection:
            signer = await current_signer(connection, self.sealer, now=datetime.now(UTC))
        self._signer = (time.monotonic() + SIGNER_SECONDS, signer)
        return signer

    async def public_keys(self) -> list[PublicKey]:
        """The published keys, for the JWKS document."""
        if self._jwks is not None and self._jwks[0] > time.monotonic():
            return self._jwks[1]
        keys = await self._read_keys(datetime.now(UTC))
        self._jwks = (time.monotonic() + JWKS_SECONDS, keys)
        return keys

    # -- forgetting -------------------------------------------------------

    def forget(self, what: str = "") -> None:
        """Drop what is remembered of clients (and, for ``signing_keys`` or
        everything, of keys)."""
        self._clients.clear()
        if what in ("", "signing_keys"):
            self._signer = None
            self._jwks = None
            self._keys_read_at = -KEY_RELOAD_SECONDS
            self._keys = {}
            self._tokens.clear()

    def _on_notice(self, _connection: Any, _pid: int, _channel: str, payload: object) -> None:
        self.forget(str(payload))
        self.notices += 1
        waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    async def changed(self, after: int) -> None:
        """Return once more than ``after`` notices have arrived."""
        while self.notices <= after:
            future = asyncio.get_running_loop().create_future()
            self._waiters.append((asyncio.get_running_loop(), future))
            if self.notices > after:
                return
            await future

    @property
    def listening(self) -> bool:
        return self._listening

    async def _listen(self) -> None:
        while True:
            lost = asyncio.Event()
            try:
                connection = await asyncpg.connect(self._url)
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("partner access: cannot listen for changes (%r); retrying", error)
                await asyncio.sleep(LISTEN_RETRY_SECONDS)
                continue
            try:
                connection.add_termination_listener(_setter(lost))
                await connection.add_listener(CHANNEL, self._on_notice)
                # Whatever changed while nobody listened.
                self.forget()
                self._listening = True
                await lost.wait()
                log.warning("partner access: the connection listening for changes dropped")
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("partner access: listening failed (%r); retrying", error)
            finally:
                self._listening = False
                self.forget()
                with contextlib.suppress(Exception):
                    await connection.close(timeout=1)
            await asyncio.sleep(LISTEN_RETRY_SECONDS)

    @asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        self.pool = app.state.pool
        self._key_store = KeyStore(self.pool)
        app.state.partner_access = self
        listener = asyncio.create_task(self._listen())
        try:
            yield
        finally:
            await self._key_store.close()
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(self.rate_limit.lifespan(app))
                await stack.enter_async_context(self.token_rate_limit.lifespan(app))

    def bind_sessions(self, app: Litestar) -> None:
        """Take the app's session maker (its SQLAlchemy plugin sets it up
        after this lifespan has started, so on the first request)."""
        if self._sessions is None:
            self._sessions = app.state[self._database.session_maker_app_state_key]

    # -- the middleware ---------------------------------------------------

    def around(self, app: ASGIApp) -> ASGIApp:
        """``app`` behind the partner's rate limit and the Idempotency-Key
        of POSTs, once the caller is identified (the guard answers 401 and
        403)."""
        limited = self.rate_limit.middleware(idempotent(app, self))

        async def partner_api(scope: Scope, receive: Receive, send: Send) -> None:
            self.bind_sessions(scope["app"])
            await self.identify_scope(scope)
            await limited(scope, receive, send)

        return partner_api

    async def identify_scope(self, scope: Scope) -> Principal | None:
        """The caller of the request, remembered in its state (once per request)."""
        state = scope.setdefault("state", {})
        if _PRINCIPAL in state or _REFUSAL in state:
            principal: Principal | None = state.get(_PRINCIPAL)
            return principal
        token = _bearer(scope)
        if token is None:
            state[_REFUSAL] = ""
            return None
        try:
            principal = await self.identify(token)
        except TokenRefused as error:
            state[_REFUSAL] = str(error)
            return None
        state[_PRINCIPAL] = principal
        return principal


def partner_middleware(app: ASGIApp) -> ASGIApp:
    """The partner API's middleware (``PartnerAccess.around``), for the
    app's own ``PartnerAccess``: looked up per request, since Litestar
    copies a router's middleware, and a copy of the object would have no
    lifespan of its own."""
    built: list[tuple[PartnerAccess, ASGIApp]] = []

    async def partner_api(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        access: PartnerAccess = scope["app"].state.partner_access
        if not built or built[0][0] is not access:
            built[:] = [(access, access.around(app))]
        await built[0][1](scope, receive, send)

    return partner_api


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _setter(event: asyncio.Event) -> Any:
    return lambda _connection: event.set()


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


def _rate_key(scope: Scope) -> str:
    """Whom a request counts against: its partner firm, else (no valid
    token) its address, so that a forged token spends no partner's quota."""
    principal: Principal | None = scope.get("state", {}).get(_PRINCIPAL)
    if principal is not None:
        return f"partner:{principal.partner_id}"
    client = scope.get("client")
    return f"partner-address:{client[0] if client else 'unknown'}"


def partner_scope(scope: str) -> Guard:
    """A guard admitting partner tokens that carry ``scope``: 401 (with
    WWW-Authenticate) without a valid token, 403 without the scope."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        access: PartnerAccess = connection.app.state.partner_access
        access.bind_sessions(connection.app)
        principal = await access.identify_scope(connection.scope)
        if principal is None:
            refusal = connection.scope.get("state", {}).get(_REFUSAL) or ""
            if not refusal:
                raise NotAuthorizedException(
                    detail="a partner access token is required (Authorization: Bearer)",
                    headers={"WWW-Authenticate": _CHALLENGE},
                )
            description = refusal.replace('"', "'")
            raise NotAuthorizedException(
                detail=f"the token is not valid: {refusal}",
                headers={
                    "WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token",'
                    f' error_description="{description}"'
                },
            )
        if not principal.allows(scope):
            raise PermissionDeniedException(
                detail=f"this token lacks the scope {scope!r}",
                headers={
                    "WWW-Authenticate": f'{_CHALLENGE}, error="insufficient_scope", scope="{scope}"'
                },
            )
        connection.state.principal = principal

    return guard


def partner(request: Request[Any, Any, Any]) -> Principal:
    """The partner principal the guard admitted (``partner_scope``)."""
    principal: Principal = request.state.principal
    return principal
