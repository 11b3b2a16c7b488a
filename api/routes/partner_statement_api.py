"""The partner API of settlement (scope ``statements:read``): the
statements of the firms within the credential's reach, a line's ledger
transfers, and their net positions. Another partner's statement is not
found (404), as a missing one: the queries filter by the reach."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.partner_access import (
    PARTNER_LIST,
    PARTNER_READ,
    partner,
    partner_scope,
    partner_security,
)
from api.problems import problem_responses
from api.routes.pagination import Cursor, Limit
from api.routes.partner_statements import LinePath, Period
from core.errors import NotFound
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT
from ledger import Ledger
from partners.positions import positions
from partners.statement_reads import line_transfers, list_statements, read_statement
from partners.statement_schemas import LineTransferPage, PositionPage, StatementPage, StatementView

SCOPE = "statements:read"

StatementIdPath = Annotated[UUID, PathParameter(description="The statement's id.")]


class PartnerStatementApiController(Controller):
    path = "/"
    tags = ["partner settlement"]
    guards = [partner_scope(SCOPE)]
    security = partner_security(SCOPE)

    @get(
        "/statements",
        summary="The issued statements of the firms within reach, newest first",
        responses=problem_responses(*PARTNER_LIST),
    )
    async def list_issued(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> StatementPage:
        principal = partner(request)
        assert principal.program_id is not None
        page = await list_statements(
            db_session, principal.program_id, principal=principal, limit=limit, cursor=cursor
        )
        return StatementPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/statements/{statement_id:uuid}",
        summary="An issued statement and its lines",
        responses=problem_responses(*PARTNER_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        statement_id: StatementIdPath,
    ) -> StatementView:
        principal = partner(request)
        assert principal.program_id is not None
        return await read_statement(
            db_session, principal.program_id, principal=principal, statement_id=statement_id
        )

    @get(
        "/statements/{statement_id:uuid}/lines/{line:int}/transfers",
        summary="The ledger transfers a statement line counts, newest first",
        responses=problem_responses(*PARTNER_READ, 422),
    )
    async def transfers(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        statement_id: StatementIdPath,
        line: LinePath,
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> LineTransferPage:
        principal = partner(request)
        assert principal.program_id is not None
        return await line_transfers(
            db_session,
            ledger,
            principal.program_id,
            line,
            principal=principal,
            statement_id=statement_id,
            limit=limit,
            cursor=cursor,
        )

    @get(
        "/position",
        summary="The net positions of the firms within reach, in a period or overall",
        responses=problem_responses(*PARTNER_LIST),
    )
    async def position(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        period: Period = None,
    ) -> PositionPage:
        principal = partner(request)
        program = await db_session.get(Program, principal.program_id)
        if program is None:
            raise NotFound("no program")
        found = await positions(db_session, ledger, program, principal=principal, period=period)
        return PositionPage(items=found)
