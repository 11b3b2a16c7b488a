"""Partner access tokens: short-lived JWTs (RFC 9068's profile) signed with
the platform's current key (``partners.signing_keys``), ES256 only.

Claims: ``iss`` (the installation), ``aud`` (the partner API), ``sub`` and
``client_id`` (the client), ``iat``, ``exp``, ``jti``, ``scope`` (space
separated), ``program`` and ``partner`` (ids of the program and the
client's company) and ``reach``. The header names the key (``kid``) and the
type ``at+jwt``.

A token says who the client was when it was issued; whether the client may
still act (not revoked, its firm active) and which companies it reaches are
asked again of the records (``partners.client_access``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import jwt
import msgspec

from core.principal import Reach
from partners.signing_keys import ALGORITHM, Signer

#: The ``aud`` of every partner token.
AUDIENCE = "coalition-partner-api"
TOKEN_TYPE = "at+jwt"
_REQUIRED = ["iss", "aud", "sub", "exp", "iat", "jti", "scope", "program", "partner", "reach"]


class TokenRefused(Exception):
    """The token is not one of ours, is expired, or is malformed; the
    message says which (for the 401's description)."""


class TokenClaims(msgspec.Struct, frozen=True, kw_only=True):
    client_id: str
    program_id: uuid.UUID
    partner_id: uuid.UUID
    reach: Reach
    scopes: frozenset[str]
    #: Seconds since the epoch.
    expires_at: int


def sign_access_token(
    signer: Signer,
    *,
    client_id: str,
    program_id: uuid.UUID,
    partner_id: uuid.UUID,
    reach: Reach,
    scopes: Iterable[str],
    issuer: str,
    now: datetime,
    lifetime: timedelta,
) -> str:
    issued = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": client_id,
        "client_id": client_id,
        "iat": issued,
        "exp": issued + int(lifetime.total_seconds()),
        "jti": str(uuid.uuid4()),
        "scope": " ".join(sorted(scopes)),
        "program": str(program_id),
        "partner": str(partner_id),
        "reach": str(reach),
    }
    return jwt.encode(
        claims,
        signer.private_key,
        algorithm=ALGORITHM,
        headers={"kid": signer.kid, "typ": TOKEN_TYPE},
    )


def token_kid(token: str) -> str:
    """The ``kid`` of a token's header, once its algorithm is known to be
    ES256: no other is ever accepted (``none``, HS256 with the public key)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as error:
        raise TokenRefused(f"malformed token ({error})") from None
    if header.get("alg") != ALGORITHM:
        raise TokenRefused(f"tokens signed with {header.get('alg')!r} are not accepted")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenRefused("the token names no key (kid)")
    return kid


def read_access_token(token: str, key: Any, *, issuer: str) -> TokenClaims:
    """The claims of a token signed by ``key`` (the public key its ``kid``
    names), checked: signature, audience, issuer, expiry, every claim."""
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=issuer,
            options={"require": _REQUIRED},
        )
        return TokenClaims(
            client_id=str(claims["sub"]),
            program_id=uuid.UUID(str(claims["program"])),
            partner_id=uuid.UUID(str(claims["partner"])),
            reach=Reach(claims["reach"]),
            scopes=frozenset(str(claims["scope"]).split()),
            expires_at=int(claims["exp"]),
        )
    except jwt.PyJWTError as error:
        raise TokenRefused(str(error)) from None
    except (ValueError, TypeError, KeyError):
        raise TokenRefused("the token's claims are malformed") from None
