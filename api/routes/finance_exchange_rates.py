"""The program's exchange rates, under ``/programs/{slug}/finance``: the
operator records a rate per currency and effective date (never changed; a
later one supersedes it from its own date) and lists them
(``finance.exchange_rates``). The journal converts lines in another
currency with the rate in force on their accounting date. Reads take
``finance:read``, recording ``finance:write``."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_WRITE, created_or_found, found_again
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_program
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT
from finance.exchange_rate_schemas import (
    CURRENCY_PATTERN,
    ExchangeRateBody,
    ExchangeRatePage,
    ExchangeRateView,
)
from finance.exchange_rates import add_exchange_rate, list_exchange_rates

GUARD = require_scope("finance:write", reading="finance:read")

CurrencyQuery = Annotated[
    str | None,
    QueryParameter(
        pattern=CURRENCY_PATTERN, description="Only this currency's rates (ISO 4217 code)."
    ),
]

ADD_DESCRIPTION = (
    "Record the rate of one unit of `currency` in the program's own (functional) currency,"
    " in force from `effective_on` until a later rate's day. Rates are never changed: a"
    " correction is a rate from a later day. The journal converts each line in `currency`"
    " with the rate in force on its accounting date (functional amount = amount x rate,"
    " rounded half to even to the functional currency's minor unit). Audited. The same rate"
    " for the same currency and day again answers the stored one (200) and writes nothing;"
    " another rate for that day is 409 already-exists; a rate from a closed day when the"
    " currency has one in force then is 409 exchange-rate-in-closed-period (a closed"
    " month's journal does not change); an unknown currency code, the program's own"
    " currency or a rate not above 0 is 422."
)


class FinanceExchangeRatesController(Controller):
    path = "/programs/{slug:str}/finance"
    tags = ["finance"]
    guards = [GUARD]
    dependencies = {"program": Provide(path_program)}

    @post(
        "/exchange-rates",
        summary="Record an exchange rate to the program's currency",
        description=ADD_DESCRIPTION,
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **found_again(ExchangeRateView, "The rate recorded before for that currency and day"),
        },
    )
    async def add(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[ExchangeRateBody],
    ) -> Response[ExchangeRateView]:
        added = await add_exchange_rate(db_session, program, data, principal=operator(request))
        return created_or_found(added.view, added.created)

    @get(
        "/exchange-rates",
        summary="The program's exchange rates, latest recorded first",
        description="Every rate recorded (or one currency's), each with the day it took effect;"
        " the one in force on a day is the currency's latest whose `effective_on` is on or"
        " before it.",
        responses=problem_responses(*LIST_READ),
    )
    async def rates(
        self,
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
        currency: CurrencyQuery = None,
    ) -> ExchangeRatePage:
        return await list_exchange_rates(
            db_session, program, limit=limit, cursor=cursor, currency=currency
        )
