"""Member tokens: JWTs from the program's identity provider.

RS256 and ES256 tokens are checked against a configured JSON Web Key Set;
HS256 is accepted only with a configured secret (for development). The
audience and, when configured, the issuer are checked, and so is expiry. The
token's ``sub`` is the member's external id and its ``program`` claim the
program's slug: a member can only ever see their own data. The identity
carries the member ``Principal``, bound to that program, for the look-ups
and the audit lines of the member's requests.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Scope

from api.settings import Settings, SettingsError
from core import principal
from core.principal import Principal
from core.programs import program_id_for

_ASYMMETRIC = ("RS256", "ES256")
#: Verified tokens remembered at most (a member app sends the same token
#: until it expires; checking its signature each time was a tenth of a read).
_VERIFIED_MAX = 100_000
_CHALLENGE = 'Bearer realm="coalition-members"'


class MemberIdentity(msgspec.Struct, frozen=True):
    program: str
    member: str
    #: Built once per token (verified tokens are remembered with it).
    principal: Principal


class InvalidToken(Exception):
    pass


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._secret = settings.member_jwt_secret
        self._keys = None
        if settings.member_jwt_jwks:
            try:
                self._keys = jwt.PyJWKSet.from_json(settings.member_jwt_jwks)
            except (jwt.PyJWTError, ValueError, TypeError) as error:
                raise SettingsError(f"MEMBER_JWT_JWKS: not a usable key set ({error})") from None
        self._audience = settings.member_jwt_audience
        self._issuer = settings.member_jwt_issuer
        self._verified: dict[str, tuple[float, MemberIdentity]] = {}

    def verify(self, token: str) -> MemberIdentity:
        """The identity a token carries, or ``InvalidToken``. A token seen
        valid before is trusted again, byte for byte, until it expires."""
        seen = self._verified.get(token)
        if seen is not None:
            if seen[0] > time.time():
                return seen[1]
            del self._verified[token]
        identity, expires = self._check(token)
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[token] = (expires, identity)
        return identity

    def _check(self, token: str) -> tuple[MemberIdentity, float]:
        try:
            header = jwt.get_unverified_header(token)
            key = self._key_for(header)
            claims = jwt.decode(
                token,
                key,
                algorithms=[header["alg"]],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "sub", "aud"]},
            )
        except (jwt.PyJWTError, KeyError, TypeError, ValueError) as error:
            # TypeError/ValueError: a key of another kind than the header's
            # algorithm (an RSA key for an ES256 header, say).
            raise InvalidToken(str(error)) from None
        program, member = claims.get("program"), claims.get("sub")
        if not isinstance(program, str) or not isinstance(member, str) or not program:
            raise InvalidToken("the token names no program or member")
        identity = MemberIdentity(
            program=program,
            member=member,
            principal=principal.member(program_id_for(program), member),
        )
        return identity, float(claims["exp"])

    def _key_for(self, header: dict[str, Any]) -> Any:
        algorithm = header.get("alg")
        if algorithm == "HS256" and self._secret:
            return self._secret
        if algorithm in _ASYMMETRIC and self._keys is not None:
            kid = header.get("kid")
            for key in self._keys.keys:
                if key.key_id == kid or (kid is None and len(self._keys.keys) == 1):
                    return key.key
            raise InvalidToken(f"no key {kid!r} in the key set")
        raise InvalidToken(f"tokens signed with {algorithm!r} are not accepted")


async def require_member(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    verifier: TokenVerifier = connection.app.state.token_verifier
    scheme, _sep, token = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorizedException(
            detail="a bearer token is required", headers={"WWW-Authenticate": _CHALLENGE}
        )
    if connection.state.get("member_identity") is not None:
        return  # verified already, by the rate limiter's key
    try:
        connection.state.member_identity = verifier.verify(token.strip())
    except InvalidToken as error:
        raise NotAuthorizedException(
            detail=f"the token is not valid: {error}",
            headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
        ) from None


def rate_limit_key(scope: Scope) -> str:
    """Whom a request counts against: the member its (verified) token names,
    else its address, so that a forged token spends no member's quota. Read
    from the ASGI scope: a request object per request costs more."""
    verifier: TokenVerifier = scope["litestar_app"].state.token_verifier
    token = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            token = value
            break
    _scheme, _sep, credentials = token.decode("latin-1").partition(" ")
    try:
        identity = verifier.verify(credentials.strip())
    except InvalidToken:
        client = scope.get("client")
        return f"address:{client[0] if client else 'unknown'}"
    # The guard that follows reuses it: one verification per request.
    scope.setdefault("state", {})["member_identity"] = identity
    return f"member:{identity.program}:{identity.member}"
