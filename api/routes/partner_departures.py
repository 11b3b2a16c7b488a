"""The operator API of a partner leaving the coalition: its departure (two
last days and a valuation date), its report, and its final statement.

Each handler parses, calls one use case (``partners.departures``,
``partners.final_statements``) and renders; the use case writes the audit
line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_READ, OPERATOR_WRITE, created_or_found
from api.routes.paths import path_partner, path_program
from core.models import Program
from ledger import Ledger
from partners.departure_schemas import DepartureReport, DepartureRequest, DepartureView
from partners.departures import departure_report, read_departure, record_departure
from partners.final_statements import issue_final_statement
from partners.models import Partner
from partners.statement_schemas import StatementView

SAME_DEPARTURE = ResponseSpec(
    data_container=DepartureView,
    description="The departure was recorded before: changed as asked (its days still to"
    " come), or answered as it is when nothing differs.",
    generate_examples=False,
)
SAME_FINAL = ResponseSpec(
    data_container=StatementView,
    description="The final statement was issued already: it is answered (`replayed`),"
    " nothing written.",
    generate_examples=False,
)


class PartnerDepartureController(Controller):
    path = "/programs/{slug:str}/partners/{partner:str}/departure"
    tags = ["partner settlement"]
    guards = [require_scope("partners:write", reading="partners:read")]
    dependencies = {"program": Provide(path_program), "firm": Provide(path_partner)}

    @put(
        "/",
        status_code=HTTPStatus.CREATED,
        summary="Record the partner's departure, or change it (the same again: 200)",
        description="The last day it issues points, the last day it takes new holds, and the"
        " valuation date (on or after both) at whose end its final statement values its share"
        " of the outstanding points. Days of the program's time zone, today or later: a day"
        " that has ended can no longer be set or moved (422 invalid-departure, 409"
        " departure-change-refused), nor anything once the final statement is issued. A firm"
        " without a published contract of its own is 409 not-a-contract-holder; an"
        " offboarded one 409 partner-not-active.",
        responses={**problem_responses(*OPERATOR_WRITE), HTTPStatus.OK: SAME_DEPARTURE},
    )
    async def record(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        data: JSONBody[DepartureRequest],
    ) -> Response[DepartureView]:
        view, created = await record_departure(
            db_session, program, firm, data, datetime.now(UTC), principal=operator(request)
        )
        return created_or_found(view, created)

    @get(
        "/",
        summary="The partner's departure",
        description="404 when none is recorded.",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
    ) -> DepartureView:
        return await read_departure(db_session, program, firm, principal=operator(request))

    @get(
        "/report",
        summary="What the leaving partner issued, what was redeemed at it, what remains",
        description="From the ledger: now before the valuation instant, at that instant after"
        " it, and as the final statement valued them once it is issued. Its share of the"
        " outstanding points is pro rata of the points issued to members.",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def report(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
    ) -> DepartureReport:
        return await departure_report(
            db_session, ledger, program, firm, datetime.now(UTC), principal=operator(request)
        )

    @post(
        "/final-statement",
        status_code=HTTPStatus.CREATED,
        summary="Issue the leaving partner's final statement (issued already: 200)",
        description="Its last period up to the valuation instant, with the"
        " `liability_transferred` line (money code 166); then the firm and its member companies"
        " under its contract are offboarded. Before the valuation instant (and 10 minutes"
        " after it), or while a regular statement before it is still to issue: 409"
        " departure-not-due. The `issue-final-statements` job does the same every hour.",
        responses={**problem_responses(*OPERATOR_WRITE), HTTPStatus.OK: SAME_FINAL},
    )
    async def final_statement(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
    ) -> Response[StatementView]:
        view, created = await issue_final_statement(
            db_session, ledger, program, firm, datetime.now(UTC), principal=operator(request)
        )
        return created_or_found(view, created)
