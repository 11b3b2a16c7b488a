"""The operator API of settlement: a partner's statements (the next one's
draft, issuing, reading, recomputing, a line's transfers), payments
received for them, payouts made to the partner, and net positions.

Each handler parses, calls one use case (``partners.statements``,
``partners.statement_reads``, ``partners.payouts``,
``partners.positions``) and renders; the use case writes the audit line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import (
    OPERATOR_READ,
    OPERATOR_WRITE,
    created_or_found,
    created_or_replayed,
    replayed,
)
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_partner, path_program
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT
from ledger import Ledger
from partners.models import Partner
from partners.payouts import list_payouts, record_payment, record_payout
from partners.positions import positions
from partners.statement_reads import (
    line_transfers,
    list_statements,
    read_statement,
    recompute_statement,
)
from partners.statement_schemas import (
    PERIOD_PATTERN,
    LineTransferPage,
    PaymentRequest,
    PayoutPage,
    PayoutRequest,
    PayoutView,
    PositionPage,
    PositionView,
    Recomputation,
    StatementPage,
    StatementRequest,
    StatementView,
)
from partners.statements import draft_statement, issue_statement

NumberPath = Annotated[
    int, PathParameter(ge=1, le=2**31 - 1, description="The statement's number (1, 2...).")
]
LinePath = Annotated[int, PathParameter(ge=1, le=2**31 - 1, description="The line's number.")]
Period = Annotated[
    str | None,
    QueryParameter(
        pattern=PERIOD_PATTERN,
        description="A settlement period (2026-11, 2026-Q4, 2026-W48); left out: all.",
    ),
]

SAME_STATEMENT = ResponseSpec(
    data_container=StatementView,
    description="The period's statement was issued already: it is answered, nothing written.",
    generate_examples=False,
)


class PartnerStatementController(Controller):
    path = "/programs/{slug:str}/partners/{partner:str}"
    tags = ["partner settlement"]
    guards = [require_scope("partners:write", reading="partners:read")]
    dependencies = {"program": Provide(path_program), "firm": Provide(path_partner)}

    @get(
        "/statements/draft",
        summary="The partner's next statement as it stands now (stored nowhere)",
        description="Computed from the ledger up to now; its period may still be running."
        " 409 not-a-contract-holder for a firm acting under another's contract.",
        responses=problem_responses(*OPERATOR_READ, HTTPStatus.CONFLICT),
    )
    async def draft(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
    ) -> StatementView:
        return await draft_statement(db_session, ledger, program, firm, principal=operator(request))

    @post(
        "/statements",
        status_code=HTTPStatus.CREATED,
        summary="Issue the statement of a period that has ended (the same period again: 200)",
        description="The period must be the partner's next, and have ended (else 409"
        " statement-period-refused). Its lines are stored and posted on the money ledger;"
        " `partner.statement_issued` is sent.",
        responses={**problem_responses(*OPERATOR_WRITE), HTTPStatus.OK: SAME_STATEMENT},
    )
    async def issue(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        data: JSONBody[StatementRequest],
    ) -> Response[StatementView]:
        view, created = await issue_statement(
            db_session, ledger, program, firm, data, datetime.now(UTC), principal=operator(request)
        )
        return created_or_found(view, created)

    @get(
        "/statements",
        summary="The partner's issued statements, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def list_issued(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> StatementPage:
        page = await list_statements(
            db_session,
            program.id,
            principal=operator(request),
            partner=firm,
            limit=limit,
            cursor=cursor,
        )
        return StatementPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/statements/{number:int}",
        summary="An issued statement and its lines",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        number: NumberPath,
    ) -> StatementView:
        return await read_statement(
            db_session, program.id, principal=operator(request), number=number, partner=firm
        )

    @get(
        "/statements/{number:int}/recomputation",
        summary="An issued statement computed again from the ledger, beside the stored one",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def recompute(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        number: NumberPath,
    ) -> Recomputation:
        return await recompute_statement(
            db_session, ledger, program, firm, number, principal=operator(request)
        )

    @get(
        "/statements/{number:int}/lines/{line:int}/transfers",
        summary="The ledger transfers a statement line counts, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def transfers(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        number: NumberPath,
        line: LinePath,
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> LineTransferPage:
        return await line_transfers(
            db_session,
            ledger,
            program.id,
            line,
            principal=operator(request),
            number=number,
            partner=firm,
            limit=limit,
            cursor=cursor,
        )

    @post(
        "/statements/{number:int}/payments",
        status_code=HTTPStatus.CREATED,
        summary="Record a payment received for a statement (idempotent by reference)",
        description="Never more than the statement has left to pay (409 payment-refused);"
        " the statement is paid once its total is. Sends `partner.payment_succeeded`.",
        responses={**problem_responses(*OPERATOR_WRITE), HTTPStatus.OK: SAME_STATEMENT},
    )
    async def pay(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        number: NumberPath,
        data: JSONBody[PaymentRequest],
    ) -> Response[StatementView]:
        view, created = await record_payment(
            db_session, ledger, program, firm, number, data, principal=operator(request)
        )
        return created_or_found(view, created)

    @post(
        "/payouts",
        status_code=HTTPStatus.CREATED,
        summary="Record money paid to the partner (idempotent by reference)",
        description="Never more than the program owes it (409 payment-refused, by the money"
        " ledger itself).",
        responses={**problem_responses(*OPERATOR_WRITE), **replayed(PayoutView, "payout")},
    )
    async def payout(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        data: JSONBody[PayoutRequest],
    ) -> Response[PayoutView]:
        view, _ = await record_payout(
            db_session, ledger, program, firm, data, datetime.now(UTC), principal=operator(request)
        )
        return created_or_replayed(view)

    @get(
        "/payouts",
        summary="Payouts made to the partner, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def payouts(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> PayoutPage:
        page = await list_payouts(
            db_session, firm, principal=operator(request), limit=limit, cursor=cursor
        )
        return PayoutPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/position",
        summary="The partner's net position (points and money), in a period or overall",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def position(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        period: Period = None,
    ) -> PositionView:
        found = await positions(
            db_session,
            ledger,
            program,
            principal=operator(request),
            period=period,
            partner_ids=[firm.id],
        )
        if found:
            return found[0]
        return PositionView(
            partner=firm.slug,
            period=period,
            points_issued=0,
            points_redeemed=0,
            net_points=0,
            billed_minor=0,
            reimbursed_minor=0,
            net_minor=0,
            money=[],
        )


class PartnerPositionController(Controller):
    path = "/programs/{slug:str}/partner-positions"
    tags = ["partner settlement"]
    guards = [require_scope("partners:write", reading="partners:read")]
    dependencies = {"program": Provide(path_program)}

    @get(
        "/",
        summary="Every partner's net position in a period (from issued statements)",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def list_positions(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        period: Period = None,
    ) -> PositionPage:
        found = await positions(
            db_session, ledger, program, principal=operator(request), period=period
        )
        return PositionPage(items=found)
