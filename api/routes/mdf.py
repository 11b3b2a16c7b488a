"""Market development funds, the operator's routes under
``/programs/{slug}/mdf``: allocate funds (the program's own, or on behalf
of a brand partner), decide on activities and claims, read a fund's
reconciliation. Each handler parses, calls one use case
(``partners.mdf``) and renders."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_READ, OPERATOR_WRITE, created_or_replayed, replayed
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_program
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT, decode_cursor, page_of
from ledger import Ledger
from partners.mdf.activities import approve_activity, get_activity, list_activities, refuse_activity
from partners.mdf.claims import approve_claim, get_claim, list_claims, refuse_claim
from partners.mdf.funds import allocate_fund, get_fund, list_funds, reconcile_fund, visible_fund
from partners.mdf.schemas import (
    ActivityApproval,
    ActivityPage,
    ActivityView,
    ClaimPage,
    ClaimView,
    FundPage,
    FundRequest,
    FundView,
    Reconciliation,
    Refusal,
)

FundIdPath = Annotated[UUID, PathParameter(description="The fund's id.")]
ActivityIdPath = Annotated[UUID, PathParameter(description="The activity's id.")]
ClaimIdPath = Annotated[UUID, PathParameter(description="The claim's id.")]

ALLOCATE_DESCRIPTION = (
    "Allocates a fund to a partner for a period, in points (paid to its issuance account)"
    " or money (paid to its payable on the program's money ledger in `currency`), funded by"
    " the program or, with `funder`, by a brand partner (whose issuance account or"
    " receivable then pays). The same reference with the same fields answers the first"
    " fund (200, `replayed`); with others: 409 idempotency-conflict. Refused, nothing"
    " written: 422 invalid-mdf-request (a partner or funder not of the program or"
    " offboarded, a funder funding itself), 422 for a malformed body."
)
APPROVE_ACTIVITY_DESCRIPTION = (
    "Commits the amount (all that was asked, or `amount`) in the fund, under the fund's row"
    " lock: the fund is never overdrawn. Again with the same amount: the same answer. 409"
    " mdf-fund-exhausted (the fund has not that much left), mdf-fund-closed (its period is"
    " over), mdf-wrong-state (decided already); 422 an amount above the request."
)
APPROVE_CLAIM_DESCRIPTION = (
    "Pays the submitted claim through the ledger in the same transaction, once (transfer id"
    " derived from the claim, code mdf_payment): points from the funder's issuance account"
    " to the partner's; money from the program's MDF expense (or the brand partner's"
    " receivable) to the partner's payable. Again: the same answer, nothing moves twice."
    " 409 mdf-wrong-state (a draft or refused claim), mdf-funder-cannot-pay (a brand"
    " partner without the points; nothing written)."
)


class MdfController(Controller):
    path = "/programs/{slug:str}/mdf"
    tags = ["market development funds"]
    guards = [require_scope("mdf:write", reading="mdf:read")]
    dependencies = {"program": Provide(path_program)}

    @post(
        "/funds",
        status_code=HTTPStatus.CREATED,
        summary="Allocate a market development fund to a partner (idempotent by reference)",
        description=ALLOCATE_DESCRIPTION,
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **replayed(FundView, "allocation (the same reference)"),
        },
    )
    async def allocate(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        data: JSONBody[FundRequest],
    ) -> Response[FundView]:
        view = await allocate_fund(
            db_session, ledger, program, data, datetime.now(UTC), principal=operator(request)
        )
        return created_or_replayed(view)

    @get(
        "/funds",
        summary="The program's market development funds, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def funds(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> FundPage:
        page = await list_funds(
            db_session, program, principal=operator(request), limit=limit, cursor=cursor
        )
        return FundPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/funds/{fund_id:uuid}",
        summary="A fund, with its allocated, committed, claimed and paid amounts",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def fund(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        fund_id: FundIdPath,
    ) -> FundView:
        return await get_fund(db_session, program, fund_id, principal=operator(request))

    @get(
        "/funds/{fund_id:uuid}/reconciliation",
        summary="A fund's reconciliation: its figures recomputed and its payments in the ledger",
        description="Allocated, committed (approved activities), claimed (submitted and paid"
        " claims), paid (paid claims) and paid in the ledger (the payments' transfers),"
        " remaining (allocated - committed), and whether they tie with the fund's own.",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def reconciliation(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        fund_id: FundIdPath,
    ) -> Reconciliation:
        return await reconcile_fund(
            db_session, ledger, program, fund_id, principal=operator(request)
        )

    @get(
        "/funds/{fund_id:uuid}/activities",
        summary="A fund's activities, newest first",
        responses=problem_responses(*LIST_READ, HTTPStatus.NOT_FOUND),
    )
    async def activities(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        fund_id: FundIdPath,
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> ActivityPage:
        fund = await visible_fund(db_session, program, fund_id, principal=operator(request))
        items, ids = await list_activities(
            db_session, program, fund, limit=limit, after=decode_cursor(cursor)
        )
        page = page_of(items, ids, limit)
        return ActivityPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/activities/{activity_id:uuid}",
        summary="An activity requested against a fund",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def activity(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        activity_id: ActivityIdPath,
    ) -> ActivityView:
        return await get_activity(db_session, program, activity_id, principal=operator(request))

    @post(
        "/activities/{activity_id:uuid}/approval",
        status_code=HTTPStatus.OK,
        summary="Approve a requested activity (as its fund's funder or the program)",
        description=APPROVE_ACTIVITY_DESCRIPTION,
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def approve_activity(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        activity_id: ActivityIdPath,
        data: JSONBody[ActivityApproval],
    ) -> ActivityView:
        return await approve_activity(
            db_session, program, activity_id, data, datetime.now(UTC), principal=operator(request)
        )

    @post(
        "/activities/{activity_id:uuid}/refusal",
        status_code=HTTPStatus.OK,
        summary="Refuse a requested activity",
        description="Commits nothing. Again: the same answer; an approved activity: 409"
        " mdf-wrong-state.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def refuse_activity(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        activity_id: ActivityIdPath,
        data: JSONBody[Refusal],
    ) -> ActivityView:
        return await refuse_activity(
            db_session, program, activity_id, data, datetime.now(UTC), principal=operator(request)
        )

    @get(
        "/activities/{activity_id:uuid}/claims",
        summary="An activity's claims, newest first",
        responses=problem_responses(*LIST_READ, HTTPStatus.NOT_FOUND),
    )
    async def claims(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        activity_id: ActivityIdPath,
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> ClaimPage:
        items, ids = await list_claims(
            db_session,
            program,
            activity_id,
            principal=operator(request),
            limit=limit,
            after=decode_cursor(cursor),
        )
        page = page_of(items, ids, limit)
        return ClaimPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/claims/{claim_id:uuid}",
        summary="A claim of what an activity spent",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def claim(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        claim_id: ClaimIdPath,
    ) -> ClaimView:
        return await get_claim(db_session, program, claim_id, principal=operator(request))

    @post(
        "/claims/{claim_id:uuid}/approval",
        status_code=HTTPStatus.OK,
        summary="Approve a submitted claim: it is paid through the ledger, once",
        description=APPROVE_CLAIM_DESCRIPTION,
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def approve_claim(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        claim_id: ClaimIdPath,
    ) -> ClaimView:
        return await approve_claim(
            db_session, ledger, program, claim_id, datetime.now(UTC), principal=operator(request)
        )

    @post(
        "/claims/{claim_id:uuid}/refusal",
        status_code=HTTPStatus.OK,
        summary="Refuse a submitted claim",
        description="Its amount no longer counts as claimed. Again: the same answer; a draft"
        " or paid claim: 409 mdf-wrong-state.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def refuse_claim(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        claim_id: ClaimIdPath,
        data: JSONBody[Refusal],
    ) -> ClaimView:
        return await refuse_claim(
            db_session, program, claim_id, data, datetime.now(UTC), principal=operator(request)
        )
