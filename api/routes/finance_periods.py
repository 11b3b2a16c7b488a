"""Period close, the operator's routes under ``/programs/{slug}/finance/periods``:
list a program's months, close one, reopen one (``finance.periods``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_READ, OPERATOR_WRITE
from api.routes.paths import path_program
from core.models import Program
from finance.period_schemas import (
    FinancePeriodClosing,
    FinancePeriodList,
    FinancePeriodReopening,
    FinancePeriodReopenRequest,
)
from finance.periods import close_period, list_periods, reopen_period

# Parsed by the use case, not by a pattern here: a month that is not one
# answers 422 invalid-month, as every refusal of the period rules does.
MonthPath = Annotated[
    str,
    PathParameter(description="The calendar month, YYYY-MM (e.g. 2026-11)."),
]

CLOSE_DESCRIPTION = (
    "Closes a calendar month of the program (in its time zone): from then on the ledger"
    " refuses every transfer dated in it or before (result business_time_in_closed_period);"
    " corrections post in the open period (an adjustment with `corrects`). Months close in"
    " order, from the program's start month, once each has ended. A closed month answers as"
    " it is (`changed` false, nothing written). 422 invalid-month, period-before-program,"
    " period-not-ended; 409 period-out-of-order (an earlier month is open)."
)
REOPEN_DESCRIPTION = (
    "Reopens a closed month and every later closed month, with a reason for the audit"
    " trail: the ledger takes movements dated in them again. An open month answers with"
    " nothing reopened (nothing written). 422 invalid-month, period-before-program;"
    " 409 period-recognised when that month or a later one had its revenue recognised"
    " (a recognised month stays closed: corrections post in the open period)."
)


class FinancePeriodsController(Controller):
    path = "/programs/{slug:str}/finance/periods"
    tags = ["finance"]
    guards = [require_scope("finance:write", reading="finance:read")]
    dependencies = {"program": Provide(path_program)}

    @get(
        "",
        summary="The program's months, from its start month, closed or open",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def periods(
        self,
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
    ) -> FinancePeriodList:
        return await list_periods(db_session, program, datetime.now(UTC))

    @post(
        "/{month:str}/close",
        status_code=HTTP_200_OK,
        summary="Close a month: the ledger refuses movements dated in it",
        description=CLOSE_DESCRIPTION,
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def close(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        month: MonthPath,
    ) -> FinancePeriodClosing:
        return await close_period(
            db_session, program, month, datetime.now(UTC), principal=operator(request)
        )

    @post(
        "/{month:str}/reopen",
        status_code=HTTP_200_OK,
        summary="Reopen a month and every later one, with a reason",
        description=REOPEN_DESCRIPTION,
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def reopen(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        month: MonthPath,
        data: JSONBody[FinancePeriodReopenRequest],
    ) -> FinancePeriodReopening:
        return await reopen_period(
            db_session,
            program,
            month,
            data.reason,
            datetime.now(UTC),
            principal=operator(request),
        )
