"""The operator API of collection: a partner's saved payment method and
collecting a statement it owes through Stripe (``api.stripe.collection``;
the outcome comes by the signed webhook)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from litestar import Controller, Request, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_WRITE
from api.routes.paths import path_partner, path_program
from api.settings import Settings
from api.stripe.collection import collect_statement
from core.models import Program
from partners.collection import set_payment_method
from partners.collection_schemas import CollectionView, PaymentMethodRequest, PaymentMethodView
from partners.models import Partner

NumberPath = Annotated[
    int, PathParameter(ge=1, le=2**31 - 1, description="The statement's number (1, 2...).")
]


class PartnerCollectionController(Controller):
    path = "/programs/{slug:str}/partners/{partner:str}"
    tags = ["partner settlement"]
    guards = [require_scope("partners:write", reading="partners:read")]
    dependencies = {"program": Provide(path_program), "firm": Provide(path_partner)}

    @put(
        "/payment-method",
        summary="Save the payment method the partner's statements are charged to",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def payment_method(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        data: JSONBody[PaymentMethodRequest],
    ) -> PaymentMethodView:
        return await set_payment_method(
            db_session, program, firm, data, principal=operator(request)
        )

    @post(
        "/statements/{number:int}/collection",
        status_code=HTTPStatus.ACCEPTED,
        summary="Collect what a statement owes from the partner's saved payment method",
        description="A Stripe PaymentIntent, off session, for what is left to pay; its outcome"
        " comes by webhook (the statement paid, or the next attempt scheduled after 1, 3 then"
        " 7 days). Asking again while an attempt is pending asks Stripe under the same"
        " idempotency keys: nothing is made twice. 409 nothing-to-collect, no-payment-method.",
        responses=problem_responses(*OPERATOR_WRITE, HTTPStatus.BAD_GATEWAY),
    )
    async def collect(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        number: NumberPath,
    ) -> CollectionView:
        settings: Settings = request.app.state.settings
        return await collect_statement(
            settings, db_session, program, firm, number, principal=operator(request)
        )
