"""The operator API of the partner tokens' signing keys: list them, rotate
them. The platform's as a whole: a key bound to a program is refused (403).

A rotation takes effect at once: the new key signs every token from then
on, on every server (they hear of it through ``partner_access`` notices);
tokens the old key signed keep verifying until they expire.
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, platform_only, require_scope
from api.partner_access import PartnerAccess
from api.problems import problem_responses
from api.routes import OPERATOR_CREATE, OPERATOR_LIST
from partners.signing_keys import (
    PUBLISHED_AFTER_SUPERSEDED,
    SigningKeyUnavailable,
    SigningKeyView,
    list_signing_keys,
    rotate_signing_key,
)
from rewards.connections import session_connection


class SigningKeyController(Controller):
    path = "/partner-signing-keys"
    tags = ["partner access"]
    guards = [require_scope("keys:manage"), platform_only]

    @get(
        "/",
        summary="The partner tokens' signing keys, newest first",
        description="current (it signs), published (superseded; its tokens still verify, it"
        " is in the JWKS) or retired. Never a private part.",
        responses=problem_responses(*OPERATOR_LIST),
    )
    async def list_keys(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
    ) -> list[SigningKeyView]:
        return await list_signing_keys(
            await session_connection(db_session),
            principal=operator(request),
            now=datetime.now(UTC),
        )

    @post(
        "/rotations",
        status_code=HTTPStatus.CREATED,
        summary="Rotate the signing key: a new key signs from now on",
        description="The superseded key's private part is erased at once; its public part"
        " stays in the JWKS for"
        f" {int(PUBLISHED_AFTER_SUPERSEDED.total_seconds() // 60)} minutes, longer than any"
        " token it signed is valid. Answers the new current key. Needs the server's signing"
        " secret (503 signing-key-unavailable without it).",
        responses=problem_responses(*OPERATOR_CREATE),
    )
    async def rotate(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
    ) -> SigningKeyView:
        access: PartnerAccess = request.app.state.partner_access
        if access.sealer is None:
            raise SigningKeyUnavailable(
                "this server has no signing secret (COALITION_SIGNING_SECRET)"
            )
        rotated = await rotate_signing_key(
            await session_connection(db_session),
            access.sealer,
            principal=operator(request),
            now=datetime.now(UTC),
        )
        # This server signs with the new key from its next token on; the
        # others when the commit's notice reaches them.
        await db_session.commit()
        access.forget("signing_keys")
        return rotated
