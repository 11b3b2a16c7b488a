"""The partner API of coalition points: issuing the program's points to
members, accepting them at a checkout (hold, capture, release, refund), and
what the partner may still issue. The token names the program and the
partner; another partner's issuance or hold is not found (404), exactly as
a missing one."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.idempotency import IdempotencyKeyHeader
from api.issuance_intake import IssuanceIntake
from api.partner_access import PARTNER_LIST, PARTNER_READ, PARTNER_WRITE, partner, partner_scope
from api.problems import problem_responses
from api.routes import created_or_replayed, replayed
from api.routes.pagination import Cursor, Limit
from core.pagination import PAGE_LIMIT_DEFAULT
from ledger import Ledger
from partners import acceptance
from partners.coalition_schemas import (
    CaptureRequest,
    CheckoutHold,
    IssuancePage,
    IssuanceRequest,
    IssuanceView,
    PartnerHoldPage,
    PartnerHoldView,
    RefundRequest,
    RefundView,
)
from partners.contract_schemas import PartnerBalance
from partners.funding import own_firm, partner_balance
from partners.issuance import get_issuance, list_issuances

ISSUE, REDEEM = "points:issue", "points:redeem"
READ, LIST, WRITE = PARTNER_READ, PARTNER_LIST, PARTNER_WRITE

IssuanceIdPath = Annotated[UUID, PathParameter(description="The issuance's id.")]
HoldIdPath = Annotated[UUID, PathParameter(description="The hold's id.")]


class PartnerIssuanceController(Controller):
    path = "/"
    tags = ["coalition points"]
    guards = [partner_scope(ISSUE)]
    security = [{"PartnerToken": [ISSUE]}]

    @post(
        "/issuances",
        status_code=HTTPStatus.CREATED,
        summary="Issue points to a member (idempotent by transaction_id)",
        description="From the partner's issuance account (its contract's, or its group's):"
        " `points`, or `purchase_amount_minor` priced by the program's earn rules in force."
        " Beyond its funding: 409 partner-funding-exhausted, refused by the ledger itself;"
        " no contract in force, or one that does not issue: 409; the same transaction_id"
        " with other fields: 409 idempotency-conflict.",
        responses={**problem_responses(*WRITE), **replayed(IssuanceView, "issuance")},
    )
    async def issue(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        data: JSONBody[IssuanceRequest],
    ) -> Response[IssuanceView]:
        # The hot path: the app's asyncpg pool, no ORM session; concurrent
        # issuances are written together (api.issuance_intake).
        intake: IssuanceIntake = request.app.state.issuance_intake
        view = await intake.issue(data, datetime.now(UTC), principal=partner(request))
        return created_or_replayed(view)

    @get(
        "/issuances",
        summary="The issuances of the companies within reach, newest first",
        responses=problem_responses(*LIST),
    )
    async def list_issued(
        self,
        request: Request[Any, Any, Any],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> IssuancePage:
        page = await list_issuances(
            request.app.state.pool, principal=partner(request), limit=limit, cursor=cursor
        )
        return IssuancePage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/issuances/{issuance_id:uuid}",
        summary="An issuance",
        responses=problem_responses(*READ),
    )
    async def show(
        self, request: Request[Any, Any, Any], issuance_id: IssuanceIdPath
    ) -> IssuanceView:
        return await get_issuance(request.app.state.pool, issuance_id, principal=partner(request))

    @get(
        "/balance",
        summary="What the partner may still issue (its contract holder's account)",
        responses=problem_responses(*READ),
    )
    async def balance(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
    ) -> PartnerBalance:
        principal = partner(request)
        program, firm = await own_firm(db_session, principal)
        return await partner_balance(db_session, ledger, program, firm, datetime.now(UTC))


class PartnerHoldController(Controller):
    path = "/holds"
    tags = ["coalition points"]
    guards = [partner_scope(REDEEM)]
    security = [{"PartnerToken": [REDEEM]}]

    @post(
        "/",
        status_code=HTTPStatus.CREATED,
        summary="Reserve a member's points at a checkout (idempotent by checkout_id)",
        description="A pending transfer to the partner's acceptance account, for"
        " `timeout_seconds` unless captured or released. More than the member holds: 422"
        " insufficient-points.",
        responses={**problem_responses(*WRITE), **replayed(PartnerHoldView, "hold")},
    )
    async def reserve(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        data: JSONBody[CheckoutHold],
    ) -> Response[PartnerHoldView]:
        view = await acceptance.reserve_points(
            db_session, ledger, data, datetime.now(UTC), principal=partner(request)
        )
        return created_or_replayed(view)

    @get(
        "/",
        summary="The holds at the companies within reach, newest first",
        responses=problem_responses(*LIST),
    )
    async def list_held(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> PartnerHoldPage:
        page = await acceptance.list_holds(
            db_session, datetime.now(UTC), principal=partner(request), limit=limit, cursor=cursor
        )
        return PartnerHoldPage(items=page.items, next_cursor=page.next_cursor)

    @get("/{hold_id:uuid}", summary="A hold", responses=problem_responses(*READ))
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        hold_id: HoldIdPath,
    ) -> PartnerHoldView:
        return await acceptance.get_hold(
            db_session, hold_id, datetime.now(UTC), principal=partner(request)
        )

    @post(
        "/{hold_id:uuid}/capture",
        status_code=HTTPStatus.OK,
        summary="Take the held points, all or part (the rest go back)",
        responses=problem_responses(*WRITE),
    )
    async def capture(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        hold_id: HoldIdPath,
        data: JSONBody[CaptureRequest],
    ) -> PartnerHoldView:
        return await acceptance.capture_hold(
            db_session, ledger, hold_id, data, datetime.now(UTC), principal=partner(request)
        )

    @post(
        "/{hold_id:uuid}/release",
        status_code=HTTPStatus.OK,
        summary="Give the held points back",
        responses=problem_responses(*WRITE),
    )
    async def release(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        hold_id: HoldIdPath,
    ) -> PartnerHoldView:
        return await acceptance.release_hold(
            db_session, ledger, hold_id, datetime.now(UTC), principal=partner(request)
        )

    @post(
        "/{hold_id:uuid}/refunds",
        status_code=HTTPStatus.CREATED,
        summary="Give captured points back to the member (idempotent by refund_id)",
        description="At most what the hold captured less its refunds: else 422"
        " refund-exceeds-capture.",
        responses={**problem_responses(*WRITE), **replayed(RefundView, "refund")},
    )
    async def refund(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        hold_id: HoldIdPath,
        data: JSONBody[RefundRequest],
    ) -> Response[RefundView]:
        view = await acceptance.refund_hold(
            db_session, ledger, hold_id, data, datetime.now(UTC), principal=partner(request)
        )
        return created_or_replayed(view)
