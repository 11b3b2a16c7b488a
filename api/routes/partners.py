"""The operator API of a program's partner firms: the firms (profile,
member companies, status and its history) and their users.

Each handler parses, calls one use case (``partners.firms``,
``partners.users``) and renders; the use case writes the audit line. The
program and the partner of the path come from dependencies that look them
up within the caller's tenant: one outside it is not found, exactly as a
missing one.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any, TypeVar
from uuid import UUID

import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_DELETE, OPERATOR_READ, OPERATOR_WRITE, created_or_found, found_again
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_partner, path_program
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT
from partners import users
from partners.firm_schemas import (
    PartnerChange,
    PartnerSpec,
    PartnerView,
    StatusChangeView,
    StatusMove,
)
from partners.firms import (
    change_status,
    create_partner,
    list_partners,
    partner_history,
    partner_view,
    update_partner,
)
from partners.models import Partner, PartnerStatus
from partners.users import UserChange, UserSpec, UserView
from rewards.programs import SLUG_PATTERN

T = TypeVar("T")


UserIdPath = Annotated[UUID, PathParameter(description="The user's id, as added.")]


class PartnerPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[PartnerView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class StatusHistoryPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[StatusChangeView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class UserPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[UserView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class PartnerController(Controller):
    path = "/programs/{slug:str}/partners"
    tags = ["partners"]
    guards = [require_scope("partners:write", reading="partners:read")]
    # ``firm``, not ``partner``: that is the path parameter's name.
    dependencies = {"program": Provide(path_program), "firm": Provide(path_partner)}

    @post(
        "/",
        status_code=HTTPStatus.CREATED,
        summary="Create a partner firm (idempotent by slug: 200 when it exists as asked)",
        description="A firm of the program, optionally a member company of another (`parent`),"
        " starting `invited` or `active`; its creation starts its status history. The same"
        " request again answers the firm (200); another request under a taken slug: 409"
        " already-exists naming `slug`. A parent that is not a firm of the program, or is"
        " offboarded, or a group that would be too deep: 422 partner-hierarchy-refused.",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **found_again(PartnerView, "The firm the same request created before"),
        },
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[PartnerSpec],
    ) -> Response[PartnerView]:
        view, created = await create_partner(db_session, program, data, principal=operator(request))
        return created_or_found(view, created)

    @get(
        "/",
        summary="The program's partner firms, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def list_firms(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        status: Annotated[
            PartnerStatus | None, QueryParameter(description="Only the firms of this status.")
        ] = None,
        parent: Annotated[
            str | None,
            QueryParameter(
                pattern=SLUG_PATTERN,
                description="Only the member companies of this firm (its slug).",
            ),
        ] = None,
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> PartnerPage:
        page = await list_partners(
            db_session,
            program,
            principal=operator(request),
            status=status,
            parent=parent,
            limit=limit,
            cursor=cursor,
        )
        return PartnerPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/{partner:str}",
        summary="A partner firm",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
    ) -> PartnerView:
        return await partner_view(db_session, program, firm, principal=operator(request))

    @patch(
        "/{partner:str}",
        summary="Change a partner firm's profile, tier or parent",
        description="Sets each field the body gives and keeps the others; `tier` and"
        " `parent` may be null (no tier; a top-level firm). A new parent must be a firm of"
        " the program, not offboarded, neither this firm nor one of its member companies"
        " (no cycles), and keep the group within 5 levels: else 422"
        " partner-hierarchy-refused. Audited with each field before and after.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def change(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        data: JSONBody[PartnerChange],
    ) -> PartnerView:
        return await update_partner(db_session, program, firm, data, principal=operator(request))

    @post(
        "/{partner:str}/status",
        status_code=HTTPStatus.CREATED,
        summary="Move a partner firm's status (200: it has that status already)",
        description="invited -> active or offboarded; active -> suspended or offboarded;"
        " suspended -> active or offboarded; offboarded is final. Any other move: 409"
        " partner-status-move-refused, as is offboarding a firm whose member companies are"
        " not offboarded. The move is recorded in the firm's history with its reason and"
        " actor (201). To the status the firm has: nothing changes, and the answer is the"
        " move that took it there (200).",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **found_again(
                StatusChangeView, "The firm has this status already: the move that set it"
            ),
        },
    )
    async def move_status(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        data: JSONBody[StatusMove],
    ) -> Response[StatusChangeView]:
        view, moved = await change_status(
            db_session, program, firm, data, principal=operator(request)
        )
        return created_or_found(view, moved)

    @get(
        "/{partner:str}/status-history",
        summary="A partner firm's status moves, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def status_history(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> StatusHistoryPage:
        page = await partner_history(
            db_session, program, firm, principal=operator(request), limit=limit, cursor=cursor
        )
        return StatusHistoryPage(items=page.items, next_cursor=page.next_cursor)

    @post(
        "/{partner:str}/users",
        status_code=HTTPStatus.CREATED,
        summary="Add a user to a partner firm (idempotent by e-mail: 200 when it is there"
        " as asked)",
        description="The e-mail is the user's key in the firm, lower-cased. The same request"
        " again answers the user (200); another name or role under an e-mail in use: 409"
        " already-exists naming `email` (change the user instead). The e-mail of a removed"
        " user brings that user back, with this name and role (201).",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **found_again(UserView, "The user the same request added before"),
        },
    )
    async def add_user(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        data: JSONBody[UserSpec],
    ) -> Response[UserView]:
        view, added = await users.add_user(
            db_session, program, firm, data, principal=operator(request)
        )
        return created_or_found(view, added)

    @get(
        "/{partner:str}/users",
        summary="A partner firm's users (not the removed ones), newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def list_users(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> UserPage:
        page = await users.list_users(
            db_session, program, firm, principal=operator(request), limit=limit, cursor=cursor
        )
        return UserPage(items=page.items, next_cursor=page.next_cursor)

    @patch(
        "/{partner:str}/users/{user_id:uuid}",
        summary="Change a partner user's name or role",
        description="A removed user, or an id that is no user of the firm: 404.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def change_user(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        user_id: UserIdPath,
        data: JSONBody[UserChange],
    ) -> UserView:
        return await users.change_user(
            db_session, program, firm, user_id, data, principal=operator(request)
        )

    @delete(
        "/{partner:str}/users/{user_id:uuid}",
        status_code=HTTPStatus.NO_CONTENT,
        summary="Remove a user from a partner firm",
        description="The user is no longer listed; the record stays (the audit trail names"
        " it). Removing a removed user again: 204, nothing changes. An id that is no user of"
        " the firm: 404.",
        responses=problem_responses(*OPERATOR_DELETE),
    )
    async def remove_user(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        user_id: UserIdPath,
    ) -> None:
        await users.remove_user(db_session, program, firm, user_id, principal=operator(request))
