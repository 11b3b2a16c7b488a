"""Blocks of points a prepaid partner buys through Stripe, from its saved
payment method: the operator's routes (for a firm of the path) and the
partner API's (for the token's own firm). Each handler parses, calls one
use case (``api.stripe.funding_purchases``, ``partners.funding_purchases``)
and renders; the outcome comes by the signed webhook."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
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
from api.routes import OPERATOR_READ, OPERATOR_WRITE, created_or_replayed, replayed
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_partner, path_program
from api.settings import Settings
from api.stripe.funding_purchases import buy_points_block
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT
from partners.funding import own_firm
from partners.funding_purchase_schemas import (
    PURCHASE_ID_PATTERN,
    FundingPurchasePage,
    FundingPurchaseRequest,
    FundingPurchaseView,
)
from partners.funding_purchases import get_purchase, list_purchases
from partners.models import Partner

SCOPE = "points:issue"

PurchaseIdPath = Annotated[
    str,
    PathParameter(
        pattern=PURCHASE_ID_PATTERN,
        min_length=1,
        max_length=200,
        description="The purchase's id, as the caller chose it.",
    ),
]

BUY_SUMMARY = "Buy a block of points from the saved payment method (idempotent by purchase_id)"
BUY_DESCRIPTION = (
    "Priced at the contract in force's issue price per point (exact, rounded half-even to the"
    " minor unit once, in the contract's currency) and charged off session through a Stripe"
    " PaymentIntent; answered `pending`. Its webhook funds the block once (the partner's"
    " issuance account grows by the points; `partner.funding_purchased`) or marks it"
    " `failed` (`partner.funding_purchase_failed`). The same purchase_id again answers the"
    " first purchase (while pending, Stripe is asked again under the same idempotency key:"
    " nothing is charged twice); with other points: 409 idempotency-conflict. Refused,"
    " nothing written: 409 partner-not-prepaid, no-contract-in-force, no-payment-method,"
    " partner-not-active; 422 invalid-funding-purchase (a price outside 1 to 99,999,999"
    " minor units)."
)
_STRIPE = (HTTPStatus.BAD_GATEWAY,)


class FundingPurchaseController(Controller):
    """The operator's view: a firm of the path."""

    path = "/programs/{slug:str}/partners/{partner:str}/funding/purchases"
    tags = ["partner contracts"]
    guards = [require_scope("partners:write", reading="partners:read")]
    dependencies = {"program": Provide(path_program), "firm": Provide(path_partner)}

    @post(
        "/",
        status_code=HTTPStatus.CREATED,
        summary=BUY_SUMMARY,
        description=BUY_DESCRIPTION,
        responses={
            **problem_responses(*OPERATOR_WRITE, *_STRIPE),
            **replayed(FundingPurchaseView, "purchase (the same purchase_id)"),
        },
    )
    async def buy(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        data: JSONBody[FundingPurchaseRequest],
    ) -> Response[FundingPurchaseView]:
        settings: Settings = request.app.state.settings
        view = await buy_points_block(
            settings, db_session, program, firm, data, principal=operator(request)
        )
        return created_or_replayed(view)

    @get(
        "/",
        summary="The partner's purchases of blocks, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def list_bought(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> FundingPurchasePage:
        page = await list_purchases(
            db_session, program, firm, principal=operator(request), limit=limit, cursor=cursor
        )
        return FundingPurchasePage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/{purchase_id:str}",
        summary="A purchase of a block of points",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        purchase_id: PurchaseIdPath,
    ) -> FundingPurchaseView:
        return await get_purchase(
            db_session, program, firm, purchase_id, principal=operator(request)
        )


class PartnerFundingPurchaseController(Controller):
    """The partner API: the token's own firm buys (its contract must be its own)."""

    path = "/funding/purchases"
    tags = ["coalition points"]
    guards = [partner_scope(SCOPE)]
    security = partner_security(SCOPE)

    @post(
        "/",
        status_code=HTTPStatus.CREATED,
        summary=BUY_SUMMARY,
        description=BUY_DESCRIPTION,
        responses={
            **problem_responses(*PARTNER_WRITE, *_STRIPE),
            **replayed(FundingPurchaseView, "purchase (the same purchase_id)"),
        },
    )
    async def buy(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[FundingPurchaseRequest],
    ) -> Response[FundingPurchaseView]:
        principal = partner(request)
        program, firm = await own_firm(db_session, principal)
        settings: Settings = request.app.state.settings
        view = await buy_points_block(
            settings, db_session, program, firm, data, principal=principal
        )
        return created_or_replayed(view)

    @get(
        "/",
        summary="The firm's purchases of blocks, newest first",
        responses=problem_responses(*PARTNER_LIST),
    )
    async def list_bought(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> FundingPurchasePage:
        principal = partner(request)
        program, firm = await own_firm(db_session, principal)
        page = await list_purchases(
            db_session, program, firm, principal=principal, limit=limit, cursor=cursor
        )
        return FundingPurchasePage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/{purchase_id:str}",
        summary="A purchase of a block of points",
        responses=problem_responses(*PARTNER_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        purchase_id: PurchaseIdPath,
    ) -> FundingPurchaseView:
        principal = partner(request)
        program, firm = await own_firm(db_session, principal)
        return await get_purchase(db_session, program, firm, purchase_id, principal=principal)
