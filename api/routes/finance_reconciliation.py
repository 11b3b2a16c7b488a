"""Reconciliation, the operator's routes under
``/programs/{slug}/finance/reconciliations``: run one now, list the runs,
read one with its differences and their drill-downs
(``finance.reconciliation``)."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_WRITE
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_program
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT
from finance.reconciliation import get_run, list_runs, run_reconciliation
from finance.reconciliation_schemas import (
    ReconciliationRunDetail,
    ReconciliationRunPage,
    ReconciliationRunRequest,
)

RunIdPath = Annotated[UUID, PathParameter(description="The reconciliation run's id.")]

RUN_DESCRIPTION = (
    "Reconciles the program's points ledger and money ledgers now, on one snapshot: every"
    " account's balances re-derived from its transfers and the ledgers' other invariants,"
    " each partner statement's total against the money ledger's transfers that posted it,"
    " each payment (a bank transfer, a Stripe PaymentIntent) against its statement and its"
    " transfer, each block bought through Stripe against its funding, each wallet's lots"
    " against its posted balance, and the daily aggregates of the window against the"
    " transfers. Every difference is stored with its drill-down (answered here, the first"
    " page) and none is absorbed; a run with differences writes the outbox event"
    " `finance.reconciliation_differences` and a WARNING log line. Every request makes a run."
    " 400 for a malformed body (an unknown field, a day that is not one, `last_day` before"
    " `first_day`, a window of more than 366 days); 422 invalid-reconciliation-window when"
    " only the defaults make it wrong (a `first_day` after today, or more than 366 days"
    " before it, with no `last_day`). Nothing written on either."
)


class FinanceReconciliationController(Controller):
    path = "/programs/{slug:str}/finance/reconciliations"
    tags = ["finance"]
    guards = [require_scope("finance:write", reading="finance:read")]
    dependencies = {"program": Provide(path_program)}

    @post(
        "",
        status_code=HTTPStatus.CREATED,
        summary="Reconcile the program's ledgers now",
        description=RUN_DESCRIPTION,
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def run(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[ReconciliationRunRequest],
    ) -> ReconciliationRunDetail:
        return await run_reconciliation(
            db_session, program, data, datetime.now(UTC), principal=operator(request)
        )

    @get(
        "",
        summary="The program's reconciliation runs, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def runs(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> ReconciliationRunPage:
        page = await list_runs(
            db_session, program, principal=operator(request), limit=limit, cursor=cursor
        )
        return ReconciliationRunPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/{run_id:uuid}",
        summary="A reconciliation run with a page of its differences and their drill-downs",
        description="Differences in the order the run found them; `cursor` pages on.",
        responses=problem_responses(*LIST_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        run_id: RunIdPath,
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> ReconciliationRunDetail:
        return await get_run(
            db_session,
            program,
            run_id,
            principal=operator(request),
            limit=limit,
            cursor=cursor,
        )
