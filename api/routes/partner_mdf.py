"""Market development funds in the partner API (``/partner/mdf``): the
funds the token's firm receives (request activities, draft and submit
claims) and, for a brand partner, the funds it allocates (approve and
refuse their activities and claims). A fund, an activity or a claim of
neither is not found, exactly as one that does not exist."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, patch, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.idempotency import IdempotencyKeyHeader
from api.partner_access import (
    PARTNER_LIST,
    PARTNER_READ,
    PARTNER_WRITE,
    partner,
    partner_scope,
    partner_security,
)
from api.problems import problem_responses
from api.routes import created_or_replayed, replayed
from api.routes.mdf import APPROVE_ACTIVITY_DESCRIPTION, APPROVE_CLAIM_DESCRIPTION
from api.routes.pagination import Cursor, Limit
from core.pagination import PAGE_LIMIT_DEFAULT, decode_cursor, page_of
from core.statement_batch import StatementBatch
from ledger import Ledger
from partners.funding import own_firm
from partners.mdf.activities import (
    approve_activity,
    get_activity,
    list_activities,
    refuse_activity,
    request_activity,
)
from partners.mdf.claims import (
    approve_claim,
    change_claim,
    draft_claim,
    get_claim,
    list_claims,
    refuse_claim,
    submit_claim,
)
from partners.mdf.funds import allocate_fund, get_fund, list_funds, reconcile_fund, visible_fund
from partners.mdf.schemas import (
    ActivityApproval,
    ActivityPage,
    ActivityRequest,
    ActivityView,
    ClaimChange,
    ClaimDraft,
    ClaimPage,
    ClaimView,
    FundPage,
    FundRequest,
    FundView,
    Reconciliation,
    Refusal,
)

READ, REQUEST, FUND = "mdf:read", "mdf:request", "mdf:fund"

FundIdPath = Annotated[UUID, PathParameter(description="The fund's id.")]
ActivityIdPath = Annotated[UUID, PathParameter(description="The activity's id.")]
ClaimIdPath = Annotated[UUID, PathParameter(description="The claim's id.")]


def _scoped(scope: str) -> dict[str, Any]:
    return {"guards": [partner_scope(scope)], "security": partner_security(scope)}


class PartnerMdfController(Controller):
    path = "/mdf"
    tags = ["market development funds"]

    @post(
        "/funds",
        status_code=HTTPStatus.CREATED,
        summary="Allocate a fund to another partner, as a brand partner (idempotent by reference)",
        description="The token's firm funds it (as a brand partner), for another partner of"
        " its program: its payments come from the firm's issuance account (points) or are"
        " billed to its receivable (money). The same reference with the same fields answers"
        " the first fund (200, `replayed`); with others: 409 idempotency-conflict. Refused,"
        " nothing written: 422 invalid-mdf-request (a partner not of the program or"
        " offboarded, the firm itself, a `funder` given).",
        responses={
            **problem_responses(*PARTNER_WRITE),
            **replayed(FundView, "allocation (the same reference)"),
        },
        **_scoped(FUND),
    )
    async def allocate(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        data: JSONBody[FundRequest],
    ) -> Response[FundView]:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        view = await allocate_fund(
            db_session, ledger, program, data, datetime.now(UTC), principal=principal
        )
        return created_or_replayed(view)

    @get(
        "/funds",
        summary="The funds the firm receives or funds, newest first",
        responses=problem_responses(*PARTNER_LIST),
        **_scoped(READ),
    )
    async def funds(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> FundPage:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        page = await list_funds(
            db_session, program, principal=principal, limit=limit, cursor=cursor
        )
        return FundPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/funds/{fund_id:uuid}",
        summary="A fund the firm receives or funds",
        responses=problem_responses(*PARTNER_READ),
        **_scoped(READ),
    )
    async def fund(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        fund_id: FundIdPath,
    ) -> FundView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await get_fund(db_session, program, fund_id, principal=principal)

    @get(
        "/funds/{fund_id:uuid}/reconciliation",
        summary="A fund's reconciliation: its figures recomputed and its payments in the ledger",
        responses=problem_responses(*PARTNER_READ),
        **_scoped(READ),
    )
    async def reconciliation(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        fund_id: FundIdPath,
    ) -> Reconciliation:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await reconcile_fund(db_session, ledger, program, fund_id, principal=principal)

    @post(
        "/funds/{fund_id:uuid}/activities",
        status_code=HTTPStatus.CREATED,
        summary="Request an activity against one of the firm's funds",
        description="A plan and an amount, within the fund's period, while it lasts; the"
        " funder approves or refuses it. Refused, nothing written: 409 mdf-fund-closed (the"
        " period is over), 422 invalid-mdf-request (dates outside the period, more than the"
        " fund has left to commit).",
        responses=problem_responses(*PARTNER_WRITE),
        **_scoped(REQUEST),
    )
    async def request_activity(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        fund_id: FundIdPath,
        data: JSONBody[ActivityRequest],
    ) -> ActivityView:
        # Written with other requests' in one transaction (core.statement_batch).
        writes: StatementBatch = request.app.state.partner_writes
        return await request_activity(
            writes, fund_id, data, datetime.now(UTC), principal=partner(request)
        )

    @get(
        "/funds/{fund_id:uuid}/activities",
        summary="A fund's activities, newest first",
        responses=problem_responses(*PARTNER_LIST, HTTPStatus.NOT_FOUND),
        **_scoped(READ),
    )
    async def activities(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        fund_id: FundIdPath,
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> ActivityPage:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        fund = await visible_fund(db_session, program, fund_id, principal=principal)
        items, ids = await list_activities(
            db_session, program, fund, limit=limit, after=decode_cursor(cursor)
        )
        page = page_of(items, ids, limit)
        return ActivityPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/activities/{activity_id:uuid}",
        summary="An activity of a fund the firm receives or funds",
        responses=problem_responses(*PARTNER_READ),
        **_scoped(READ),
    )
    async def activity(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        activity_id: ActivityIdPath,
    ) -> ActivityView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await get_activity(db_session, program, activity_id, principal=principal)

    @post(
        "/activities/{activity_id:uuid}/approval",
        status_code=HTTPStatus.OK,
        summary="Approve a requested activity, as the fund's brand partner funder",
        description=APPROVE_ACTIVITY_DESCRIPTION + " The fund's own partner: 403.",
        responses=problem_responses(*PARTNER_WRITE),
        **_scoped(FUND),
    )
    async def approve_activity(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        activity_id: ActivityIdPath,
        data: JSONBody[ActivityApproval],
    ) -> ActivityView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await approve_activity(
            db_session, program, activity_id, data, datetime.now(UTC), principal=principal
        )

    @post(
        "/activities/{activity_id:uuid}/refusal",
        status_code=HTTPStatus.OK,
        summary="Refuse a requested activity, as the fund's brand partner funder",
        description="Commits nothing. Again: the same answer; an approved activity: 409"
        " mdf-wrong-state; the fund's own partner: 403.",
        responses=problem_responses(*PARTNER_WRITE),
        **_scoped(FUND),
    )
    async def refuse_activity(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        activity_id: ActivityIdPath,
        data: JSONBody[Refusal],
    ) -> ActivityView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await refuse_activity(
            db_session, program, activity_id, data, datetime.now(UTC), principal=principal
        )

    @post(
        "/activities/{activity_id:uuid}/claims",
        status_code=HTTPStatus.CREATED,
        summary="Draft (or submit at once) a claim of what an approved activity spent",
        description="A draft is editable (PATCH) until it is submitted; an activity takes"
        " several partial claims, whose submitted and paid amounts never exceed its approved"
        " amount. `submit` true submits it at once (with at least one piece of proof)."
        " Refused, nothing written: 409 mdf-wrong-state (the activity is not approved),"
        " mdf-fund-closed (the claims window is over), mdf-activity-overclaimed; 422 a"
        " submission without proof.",
        responses=problem_responses(*PARTNER_WRITE),
        **_scoped(REQUEST),
    )
    async def draft_claim(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        activity_id: ActivityIdPath,
        data: JSONBody[ClaimDraft],
    ) -> ClaimView:
        principal = partner(request)
        now = datetime.now(UTC)
        if data.submit:
            program = (await own_firm(db_session, principal))[0]
            return await draft_claim(
                db_session, activity_id, data, now, principal=principal, program=program
            )
        # A draft alone is one statement, written with other requests'
        # (core.statement_batch).
        writes: StatementBatch = request.app.state.partner_writes
        return await draft_claim(writes, activity_id, data, now, principal=principal)

    @get(
        "/activities/{activity_id:uuid}/claims",
        summary="An activity's claims, newest first (drafts only to the fund's partner)",
        responses=problem_responses(*PARTNER_LIST, HTTPStatus.NOT_FOUND),
        **_scoped(READ),
    )
    async def claims(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        activity_id: ActivityIdPath,
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> ClaimPage:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        items, ids = await list_claims(
            db_session,
            program,
            activity_id,
            principal=principal,
            limit=limit,
            after=decode_cursor(cursor),
        )
        page = page_of(items, ids, limit)
        return ClaimPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/claims/{claim_id:uuid}",
        summary="A claim (a draft only to the fund's partner)",
        responses=problem_responses(*PARTNER_READ),
        **_scoped(READ),
    )
    async def claim(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        claim_id: ClaimIdPath,
    ) -> ClaimView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await get_claim(db_session, program, claim_id, principal=principal)

    @patch(
        "/claims/{claim_id:uuid}",
        summary="Change a draft claim's amount, description or proof",
        description="Only a draft (409 mdf-wrong-state otherwise); only the fund's partner"
        " (the funder: 403).",
        responses=problem_responses(*PARTNER_WRITE),
        **_scoped(REQUEST),
    )
    async def change_claim(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        claim_id: ClaimIdPath,
        data: JSONBody[ClaimChange],
    ) -> ClaimView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await change_claim(db_session, program, claim_id, data, principal=principal)

    @post(
        "/claims/{claim_id:uuid}/submission",
        status_code=HTTPStatus.OK,
        summary="Submit a draft claim to the funder",
        description="It counts as claimed from now on. Again: the same answer. 422 without"
        " proof; 409 mdf-fund-closed, mdf-activity-overclaimed, mdf-wrong-state (decided).",
        responses=problem_responses(*PARTNER_WRITE),
        **_scoped(REQUEST),
    )
    async def submit_claim(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        claim_id: ClaimIdPath,
    ) -> ClaimView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await submit_claim(
            db_session, program, claim_id, datetime.now(UTC), principal=principal
        )

    @post(
        "/claims/{claim_id:uuid}/approval",
        status_code=HTTPStatus.OK,
        summary="Approve a submitted claim, as the fund's brand partner funder: it is paid",
        description=APPROVE_CLAIM_DESCRIPTION + " The fund's own partner: 403.",
        responses=problem_responses(*PARTNER_WRITE),
        **_scoped(FUND),
    )
    async def approve_claim(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        claim_id: ClaimIdPath,
    ) -> ClaimView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await approve_claim(
            db_session, ledger, program, claim_id, datetime.now(UTC), principal=principal
        )

    @post(
        "/claims/{claim_id:uuid}/refusal",
        status_code=HTTPStatus.OK,
        summary="Refuse a submitted claim, as the fund's brand partner funder",
        description="Its amount no longer counts as claimed. Again: the same answer; a draft"
        " or paid claim: 409 mdf-wrong-state; the fund's own partner: 403.",
        responses=problem_responses(*PARTNER_WRITE),
        **_scoped(FUND),
    )
    async def refuse_claim(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        claim_id: ClaimIdPath,
        data: JSONBody[Refusal],
    ) -> ClaimView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await refuse_claim(
            db_session, program, claim_id, data, datetime.now(UTC), principal=principal
        )
