"""The exchange of points between programs: the operators' agreements
under ``/programs/{slug}/exchange-agreements``, and the member app's quotes
and conversions under ``/me/exchanges``.

Each handler parses, calls one use case (``partners.exchange_agreements``,
``partners.exchanges``) and renders; the use case writes the audit line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.member_auth import MemberIdentity, require_member
from api.problems import problem_responses
from api.routes import (
    MEMBER_READ,
    MEMBER_WRITE,
    OPERATOR_READ,
    OPERATOR_WRITE,
    created_or_found,
    created_or_replayed,
    found_again,
    replayed,
)
from api.routes.members import IdempotencyKey
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_program
from core.members import get_member
from core.models import Member, Program
from core.pagination import PAGE_LIMIT_DEFAULT
from core.programs import get_program
from ledger import Ledger
from ledger.bounds import INTEGER_MAX
from partners.exchange_agreements import (
    accept_rates,
    exchange_position,
    get_agreement,
    list_agreements,
    propose_agreement,
    propose_rates,
)
from partners.exchange_schemas import (
    MAX_POINTS,
    AgreementPage,
    AgreementProposal,
    AgreementView,
    ExchangeOutcome,
    ExchangePage,
    ExchangePosition,
    ExchangeQuote,
    ExchangeRequest,
    RateProposal,
    RateVersionView,
)
from partners.exchanges import convert_points, list_exchanges, quote_exchange
from rewards.programs import SLUG_PATTERN

MEMBER_LIST = (*MEMBER_READ, HTTPStatus.UNPROCESSABLE_ENTITY)
#: A quote is refused as the conversion would be (409 closed, 422 bounds).
MEMBER_QUOTE = (*MEMBER_READ, HTTPStatus.CONFLICT, HTTPStatus.UNPROCESSABLE_ENTITY)

AgreementPath = Annotated[
    UUID, PathParameter(description="The exchange agreement's id, as its proposal answered.")
]
VersionPath = Annotated[
    int, PathParameter(ge=1, le=INTEGER_MAX, description="The rate version's number.")
]


class ExchangeAgreementController(Controller):
    path = "/programs/{slug:str}/exchange-agreements"
    tags = ["programs"]
    guards = [require_scope("exchanges:write", reading="exchanges:read")]
    dependencies = {"program": Provide(path_program)}

    @post(
        "/",
        status_code=HTTPStatus.CREATED,
        summary="Propose an exchange agreement to another program, with its first rates",
        description="Version 1 of the rates awaits the counterparty's acceptance. The same"
        " proposal again answers it (200); another while the two programs have an agreement:"
        " 409 already-exists naming `counterparty`.",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **found_again(AgreementView, "The agreement the same proposal made before"),
        },
    )
    async def propose(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[AgreementProposal],
    ) -> Response[AgreementView]:
        view, created = await propose_agreement(
            db_session, program, data, datetime.now(UTC), principal=operator(request)
        )
        return created_or_found(view, created)

    @get(
        "/",
        summary="The program's exchange agreements, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def index(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> AgreementPage:
        page = await list_agreements(
            db_session,
            program,
            datetime.now(UTC),
            principal=operator(request),
            limit=limit,
            cursor=cursor,
        )
        return AgreementPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/{agreement_id:uuid}",
        summary="An exchange agreement and its rate versions",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        agreement_id: AgreementPath,
    ) -> AgreementView:
        return await get_agreement(
            db_session, program, agreement_id, datetime.now(UTC), principal=operator(request)
        )

    @post(
        "/{agreement_id:uuid}/versions",
        status_code=HTTPStatus.CREATED,
        summary="Propose a new rate version, for the other program to accept",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **found_again(
                RateVersionView, "The latest version, this very proposal awaiting acceptance"
            ),
        },
    )
    async def propose_version(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        agreement_id: AgreementPath,
        data: JSONBody[RateProposal],
    ) -> Response[RateVersionView]:
        view, created = await propose_rates(
            db_session, program, agreement_id, data, principal=operator(request)
        )
        return created_or_found(view, created)

    @post(
        "/{agreement_id:uuid}/versions/{version:int}/accept",
        status_code=HTTPStatus.OK,
        summary="Accept the other program's rate version (an accepted one answers as it is)",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def accept_version(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        agreement_id: AgreementPath,
        version: VersionPath,
    ) -> RateVersionView:
        view, _ = await accept_rates(
            db_session,
            ledger,
            program,
            agreement_id,
            version,
            datetime.now(UTC),
            principal=operator(request),
        )
        return view

    @get(
        "/{agreement_id:uuid}/position",
        summary="What each program owes the other, from their exchange accounts",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def position(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        agreement_id: AgreementPath,
    ) -> ExchangePosition:
        return await exchange_position(
            db_session, ledger, program, agreement_id, principal=operator(request)
        )


async def _me(request: Request[Any, Any, Any], session: AsyncSession) -> tuple[Program, Member]:
    identity: MemberIdentity = request.state.member_identity
    program = await get_program(session, identity.principal, identity.program)
    return program, await get_member(session, program, identity.member)


def _member(request: Request[Any, Any, Any]) -> MemberIdentity:
    identity: MemberIdentity = request.state.member_identity
    return identity


class MemberExchangeController(Controller):
    path = "/me/exchanges"
    tags = ["members"]
    guards = [require_member]

    @get(
        "/quote",
        summary="What converting points into another program would give now",
        responses=problem_responses(*MEMBER_QUOTE),
    )
    async def quote(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        to: Annotated[
            str,
            QueryParameter(
                pattern=SLUG_PATTERN, description="The slug of the program to receive points of."
            ),
        ],
        points: Annotated[
            int,
            QueryParameter(
                ge=1, le=MAX_POINTS, description="Points of the member's program to give."
            ),
        ],
    ) -> ExchangeQuote:
        program, member = await _me(request, db_session)
        return await quote_exchange(
            db_session,
            program,
            member,
            to,
            points,
            datetime.now(UTC),
            principal=_member(request).principal,
        )

    @post(
        "/",
        summary="Convert points into another program's (needs an Idempotency-Key)",
        responses={
            **problem_responses(*MEMBER_WRITE),
            **replayed(ExchangeOutcome, "exchange (the same Idempotency-Key)"),
        },
    )
    async def convert(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        idempotency_key: IdempotencyKey,
        data: JSONBody[ExchangeRequest],
    ) -> Response[ExchangeOutcome]:
        program, member = await _me(request, db_session)
        outcome = await convert_points(
            db_session,
            ledger,
            program,
            member,
            idempotency_key,
            data,
            datetime.now(UTC),
            principal=_member(request).principal,
        )
        return created_or_replayed(outcome)

    @get(
        "/",
        summary="The member's conversions into other programs, newest first",
        responses=problem_responses(*MEMBER_LIST),
    )
    async def history(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> ExchangePage:
        program, member = await _me(request, db_session)
        page = await list_exchanges(
            db_session,
            program,
            member,
            principal=_member(request).principal,
            limit=limit,
            cursor=cursor,
        )
        return ExchangePage(items=page.items, next_cursor=page.next_cursor)
