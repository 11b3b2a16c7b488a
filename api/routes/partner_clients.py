"""The operator API of partner firms' OAuth clients: create one (its secret
shown once), list them, rotate a secret with an overlap, revoke one.

Each handler parses, calls one use case (``partners.clients``) and renders;
the program and the firm of the path are looked up within the caller's
tenant (``api.routes.paths``): one outside it is not found.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.partner_access import PartnerAccess
from api.problems import problem_responses
from api.routes import OPERATOR_DELETE, OPERATOR_WRITE
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_partner, path_program
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT
from partners import clients
from partners.client_schemas import (
    CLIENT_ID_PATTERN,
    ClientSpec,
    ClientView,
    IssuedClient,
    IssuedSecret,
    SecretRotation,
)
from partners.models import Partner

ClientIdPath = Annotated[
    str,
    PathParameter(pattern=CLIENT_ID_PATTERN, description="The client's `client_id` (`pc_...`)."),
]


class ClientPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[ClientView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class PartnerClientController(Controller):
    path = "/programs/{slug:str}/partners/{partner:str}/clients"
    tags = ["partners"]
    guards = [require_scope("partners:write", reading="partners:read")]
    dependencies = {"program": Provide(path_program), "firm": Provide(path_partner)}

    @post(
        "/",
        status_code=HTTPStatus.CREATED,
        summary="Create an OAuth client for a partner firm (its secret shown once)",
        description="A client of the firm with scopes (points:issue, points:redeem,"
        " statements:read, webhooks:manage) and a reach (company, subsidiaries, group). The"
        " answer holds `client_secret`, never shown again (kept only as an Argon2id hash):"
        " the client gets tokens at POST /oauth/token. A name in use in the firm: 409"
        " already-exists naming `name` (rotate that client's secret instead); an unknown"
        " scope or an offboarded firm: 422 partner-client-refused. Tokens are issued only"
        " while the firm is active.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        data: JSONBody[ClientSpec],
    ) -> IssuedClient:
        return await clients.create_client(
            db_session, program, firm, data, principal=operator(request)
        )

    @get(
        "/",
        summary="A partner firm's OAuth clients, revoked ones too, newest first",
        description="Never a secret.",
        responses=problem_responses(*LIST_READ),
    )
    async def list_clients(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> ClientPage:
        page = await clients.list_clients(
            db_session, program, firm, principal=operator(request), limit=limit, cursor=cursor
        )
        return ClientPage(items=page.items, next_cursor=page.next_cursor)

    @post(
        "/{client_id:str}/secret-rotations",
        status_code=HTTPStatus.CREATED,
        summary="Rotate a client's secret (the current one keeps working for a while)",
        description="A new secret, in this answer only. The current secret keeps working"
        " for `overlap_seconds` (default 24 h, at most 7 days, 0: it stops now); an older"
        " one still in its overlap stops now. Tokens already issued keep working until they"
        " expire. A revoked client: 409 partner-client-revoked.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def rotate_secret(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        client_id: ClientIdPath,
        data: JSONBody[SecretRotation],
    ) -> IssuedSecret:
        return await clients.rotate_secret(
            db_session, program, firm, client_id, data, principal=operator(request)
        )

    @delete(
        "/{client_id:str}",
        status_code=HTTPStatus.NO_CONTENT,
        summary="Revoke a client: no more tokens, and its live tokens refused at once",
        description="On every server at once (each hears of it as the revocation commits)."
        " Revoking a revoked client again: 204, nothing changes. The client stays listed.",
        responses=problem_responses(*OPERATOR_DELETE),
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        client_id: ClientIdPath,
    ) -> None:
        await clients.revoke_client(
            db_session, program, firm, client_id, principal=operator(request)
        )
        # Committed, then forgotten here at once (the other servers forget it
        # when the commit's notice reaches them), so that no request can
        # verify it again in between and be trusted for a while more.
        await db_session.commit()
        access: PartnerAccess = request.app.state.partner_access
        access.forget("partner_clients")
