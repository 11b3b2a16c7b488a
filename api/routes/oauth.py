"""The token endpoint of partner clients (OAuth 2.0 client credentials, RFC
6749 section 4.4) and the key set that verifies its tokens.

The token endpoint answers errors as RFC 6749 section 5.2 says, a JSON
object ``{"error": "invalid_client", "error_description": ...}`` with
``Cache-Control: no-store``, not as problem+json like the rest of the API:
OAuth client libraries read those fields and no others. Only what OAuth
does not define (429 too many token requests, 503 no signing key) is a
problem.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal
from urllib.parse import unquote_plus

import msgspec
from litestar import Request, Response, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import ClientException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body
from sqlalchemy.ext.asyncio import AsyncSession

from api.partner_access import JWKS_PATH, TOKEN_PATH, PartnerAccess
from api.problems import problem, problem_responses
from partners.access_tokens import sign_access_token
from partners.client_access import ClientNotAuthorized, InvalidClient, authenticate_client
from partners.client_schemas import CLIENT_ID_PATTERN

GRANT_TYPE = "client_credentials"
_CLIENT_ID = re.compile(CLIENT_ID_PATTERN)
#: The longest client secret and scope parameter looked at.
_SECRET_MAX = 200
_SCOPE_MAX = 1000
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_BASIC_CHALLENGE = 'Basic realm="coalition-partners"'

OAuthErrorCode = Literal[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
]


class TokenRequest(msgspec.Struct, kw_only=True):
    """The form of a token request (``application/x-www-form-urlencoded``).
    The client authenticates with HTTP Basic (its id and secret) or with
    ``client_id`` and ``client_secret`` here, not both."""

    grant_type: Annotated[str | None, msgspec.Meta(description="`client_credentials`.")] = None
    client_id: Annotated[str | None, msgspec.Meta(description="Without HTTP Basic.")] = None
    client_secret: Annotated[str | None, msgspec.Meta(description="Without HTTP Basic.")] = None
    scope: Annotated[
        str | None,
        msgspec.Meta(
            description="Space-separated scopes, within the client's; left out: all of them."
        ),
    ] = None


class TokenAnswer(msgspec.Struct, kw_only=True, frozen=True):
    """A token granted (RFC 6749 section 5.1)."""

    access_token: Annotated[
        str, msgspec.Meta(description="An ES256 JWT; send it as `Authorization: Bearer`.")
    ]
    token_type: Annotated[
        Literal["Bearer"], msgspec.Meta(description="Always `Bearer` (RFC 6750).")
    ]
    expires_in: Annotated[int, msgspec.Meta(description="Seconds until the token expires.")]
    scope: Annotated[str, msgspec.Meta(description="The token's scopes, space-separated.")]


class OAuthError(msgspec.Struct, kw_only=True, frozen=True):
    """An error of the token endpoint (RFC 6749 section 5.2)."""

    error: Annotated[OAuthErrorCode, msgspec.Meta(description="The RFC 6749 error code.")]
    error_description: Annotated[
        str | None, msgspec.Meta(description="What went wrong, for a person.")
    ] = None


class Jwk(msgspec.Struct, kw_only=True, frozen=True):
    """A public key (RFC 7517, RFC 7518 section 6.2)."""

    kty: Annotated[Literal["EC"], msgspec.Meta(description="Key type: elliptic curve.")]
    crv: Annotated[Literal["P-256"], msgspec.Meta(description="The curve.")]
    x: Annotated[str, msgspec.Meta(description="The point's x coordinate, base64url.")]
    y: Annotated[str, msgspec.Meta(description="The point's y coordinate, base64url.")]
    kid: Annotated[
        str, msgspec.Meta(description="The key's id (RFC 7638 thumbprint), tokens' `kid`.")
    ]
    alg: Annotated[Literal["ES256"], msgspec.Meta(description="The one algorithm it signs.")]
    use: Annotated[Literal["sig"], msgspec.Meta(description="Signatures only.")]


class JwkSet(msgspec.Struct, kw_only=True, frozen=True):
    keys: Annotated[
        list[Jwk],
        msgspec.Meta(description="The current key and the superseded ones still trusted."),
    ]


def _refusal(
    code: OAuthErrorCode, description: str, status: int = HTTPStatus.BAD_REQUEST
) -> Response[OAuthError]:
    headers = dict(_NO_STORE)
    if status == HTTPStatus.UNAUTHORIZED:
        headers["WWW-Authenticate"] = _BASIC_CHALLENGE
    return Response(
        OAuthError(error=code, error_description=description),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


def _malformed(_: Request[Any, Any, Any], error: ClientException) -> Response[OAuthError]:
    return _refusal("invalid_request", f"the token request is malformed: {error.detail}")


def _credentials(
    request: Request[Any, Any, Any], form: TokenRequest
) -> tuple[str, str] | Response[OAuthError]:
    """The client id and secret, from HTTP Basic or the form (RFC 6749 2.3.1)."""
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    basic = scheme.lower() == "basic"
    if basic and (form.client_id is not None or form.client_secret is not None):
        return _refusal("invalid_request", "authenticate with HTTP Basic or the form, not both")
    if basic:
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return _refusal(
                "invalid_client", "malformed HTTP Basic credentials", HTTPStatus.UNAUTHORIZED
            )
        client_id, colon, secret = decoded.partition(":")
        if not colon:
            return _refusal(
                "invalid_client", "malformed HTTP Basic credentials", HTTPStatus.UNAUTHORIZED
            )
        return unquote_plus(client_id), unquote_plus(secret)
    if form.client_id is None or form.client_secret is None:
        return _refusal("invalid_client", "the client must authenticate", HTTPStatus.UNAUTHORIZED)
    return form.client_id, form.client_secret


@post(
    TOKEN_PATH,
    status_code=HTTPStatus.OK,
    tags=["partner access"],
    security=[],
    summary="An access token for a partner client (OAuth 2.0 client credentials)",
    description="RFC 6749 section 4.4: `grant_type=client_credentials`, the client"
    " authenticated by HTTP Basic or by `client_id` and `client_secret` in the form, and an"
    " optional `scope` narrowing the client's scopes. Errors follow RFC 6749 section 5.2"
    ' (`{"error": ...}`, not problem+json): 401 invalid_client (unknown client, wrong or'
    " expired secret, revoked client); 400 invalid_request, unsupported_grant_type,"
    " invalid_scope, or unauthorized_client (the client's partner is not active). Token"
    " requests are limited per client (429, Retry-After). No Idempotency-Key: a token"
    " request changes nothing.",
    # The handler answers a token or an OAuth error, so its return type
    # names neither: the answers are spelled out here.
    responses={
        HTTPStatus.OK: ResponseSpec(
            data_container=TokenAnswer,
            media_type="application/json",
            description="The token, with Cache-Control: no-store (RFC 6749 section 5.1).",
            generate_examples=False,
        ),
        HTTPStatus.BAD_REQUEST: ResponseSpec(
            data_container=OAuthError,
            media_type="application/json",
            description="invalid_request, unsupported_grant_type, invalid_scope,"
            " unauthorized_client (RFC 6749 section 5.2).",
            generate_examples=False,
        ),
        HTTPStatus.UNAUTHORIZED: ResponseSpec(
            data_container=OAuthError,
            media_type="application/json",
            description="invalid_client (with WWW-Authenticate: Basic).",
            generate_examples=False,
        ),
        **problem_responses(HTTPStatus.TOO_MANY_REQUESTS, HTTPStatus.SERVICE_UNAVAILABLE),
    },
    # Each class the app maps to a problem, mapped here to RFC 6749's answer.
    exception_handlers={ValidationException: _malformed, ClientException: _malformed},
)
async def issue_token(
    request: Request[Any, Any, Any],
    db_session: NamedDependency[AsyncSession],
    data: Annotated[TokenRequest, Body(media_type=RequestEncodingType.URL_ENCODED)],
) -> Response[Any]:
    credentials = _credentials(request, data)
    if isinstance(credentials, Response):
        return credentials
    client_id, secret = credentials
    if data.grant_type is None:
        return _refusal("invalid_request", "grant_type is missing")
    if data.grant_type != GRANT_TYPE:
        return _refusal("unsupported_grant_type", f"only {GRANT_TYPE} is supported")
    if data.scope is not None and len(data.scope) > _SCOPE_MAX:
        return _refusal("invalid_scope", f"scope: at most {_SCOPE_MAX} characters")
    if not _CLIENT_ID.fullmatch(client_id) or len(secret) > _SECRET_MAX:
        return _refusal(
            "invalid_client",
            "the client is unknown, revoked, or its secret is wrong",
            HTTPStatus.UNAUTHORIZED,
        )
    access: PartnerAccess = request.app.state.partner_access
    # Before the secret is checked: each check costs Argon2id's time.
    count, closes_in = await access.token_rate_limit.count(f"token:{client_id}")
    if count > access.token_rate_limit.limit:
        seconds = max(1, math.ceil(closes_in))
        raise problem(
            HTTPStatus.TOO_MANY_REQUESTS,
            "too-many-requests",
            f"more than {access.token_rate_limit.limit} token requests a minute for this"
            f" client; retry in {seconds} s (a token is valid for"
            f" {int(access.lifetime.total_seconds())} s: reuse it)",
            headers={"Retry-After": str(seconds)},
        )
    now = datetime.now(UTC)
    try:
        grant = await authenticate_client(db_session, client_id, secret, now=now)
    except InvalidClient as error:
        return _refusal("invalid_client", str(error), HTTPStatus.UNAUTHORIZED)
    except ClientNotAuthorized as error:
        return _refusal("unauthorized_client", str(error))
    scopes = grant.scopes
    if data.scope is not None and data.scope.strip():
        asked = frozenset(data.scope.split())
        if beyond := sorted(asked - grant.scopes):
            return _refusal(
                "invalid_scope",
                f"the client has no scope {', '.join(beyond)}; its scopes are"
                f" {' '.join(sorted(grant.scopes))}",
            )
        scopes = asked
    signer = await access.signer()
    token = sign_access_token(
        signer,
        client_id=grant.client_id,
        program_id=grant.program_id,
        partner_id=grant.partner_id,
        reach=grant.reach,
        scopes=scopes,
        issuer=access.issuer,
        now=now,
        lifetime=access.lifetime,
    )
    answer = TokenAnswer(
        access_token=token,
        token_type="Bearer",
        expires_in=int(access.lifetime.total_seconds()),
        scope=" ".join(sorted(scopes)),
    )
    return Response(answer, headers=_NO_STORE)


@get(
    JWKS_PATH,
    tags=["partner access"],
    security=[],
    summary="The keys that verify partner access tokens (JWKS, RFC 7517)",
    description="The current signing key and the superseded ones whose tokens may still be"
    " valid; never a private part. Cacheable for 5 minutes: a token naming a `kid` not in a"
    " cached set means a rotation, so fetch the set again.",
    responses=problem_responses(HTTPStatus.SERVICE_UNAVAILABLE),
)
async def jwks(request: Request[Any, Any, Any]) -> Response[JwkSet]:
    access: PartnerAccess = request.app.state.partner_access
    keys = await access.public_keys()
    document = JwkSet(keys=[msgspec.convert(key.jwk, Jwk) for key in keys])
    return Response(document, headers={"Cache-Control": "public, max-age=300"})
