"""The operator's analytics under ``/programs/{slug}/analytics``: a
member's value, the redemption curves per cohort, the program's and a
campaign's ROI, partner profitability (``finance.analytics``). Reads only,
with the scope ``analytics:read``. A malformed month or moment answers 422
invalid-report-date."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.params import PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_READ
from api.routes.partner_campaigns import CampaignIdPath
from api.routes.paths import path_program
from core.models import Program
from finance.analytics.curves import redemption_curves
from finance.analytics.member_value import as_of_moment, member_value
from finance.analytics.partner_profitability import partner_profitability
from finance.analytics.roi import campaign_roi, program_roi
from finance.analytics.schemas import (
    CampaignRoi,
    MemberValue,
    PartnerProfitability,
    ProgramRoi,
    RedemptionCurves,
)
from finance.report_dates import parse_month
from ledger import Ledger

#: A read that parses a month or a moment (422) besides a read's problems.
ANALYTICS_READ = (*OPERATOR_READ, 422)

MonthQuery = Annotated[
    str,
    QueryParameter(
        max_length=16,
        description="A calendar month (YYYY-MM) of the program's time zone. Anything else:"
        " 422 invalid-report-date.",
    ),
]
AsOfQuery = Annotated[
    str | None,
    QueryParameter(
        max_length=64,
        description="Up to this moment (ISO 8601 with its offset, years 1900 to 9998); left"
        " out: now. Anything else: 422 invalid-report-date.",
    ),
]
MemberPath = Annotated[
    str,
    PathParameter(
        min_length=1, max_length=200, pattern=r"^[^\x00]*$", description="The member's id."
    ),
]


class FinanceAnalyticsController(Controller):
    path = "/programs/{slug:str}/analytics"
    tags = ["analytics"]
    guards = [require_scope("analytics:read")]
    dependencies = {"program": Provide(path_program)}

    @get(
        "/members/{external_id:str}/value",
        summary="A member's revenue, points cost and relationship value",
        description="Revenue (the member's purchases, the program's own less returns and"
        " those partners reported) less the cost of their points (redeemed plus outstanding,"
        " at the point value in force at `as_of`): the relationship value.",
        responses=problem_responses(*ANALYTICS_READ),
    )
    async def member_value(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        external_id: MemberPath,
        as_of: AsOfQuery = None,
    ) -> MemberValue:
        moment = as_of_moment(as_of, datetime.now(UTC))
        return await member_value(
            db_session, program, external_id, moment, principal=operator(request)
        )

    @get(
        "/redemption-curves",
        summary="Redemption curves per cohort, as breakage estimates from them",
        responses=problem_responses(*ANALYTICS_READ),
    )
    async def curves(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        period: MonthQuery,
    ) -> RedemptionCurves:
        month = parse_month("period", period)
        return await redemption_curves(db_session, program, month, principal=operator(request))

    @get(
        "/program-roi",
        summary="The program's return for a month: revenue against points and partner costs",
        responses=problem_responses(*ANALYTICS_READ),
    )
    async def program_roi(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        period: MonthQuery,
    ) -> ProgramRoi:
        month = parse_month("period", period)
        return await program_roi(db_session, ledger, program, month, principal=operator(request))

    @get(
        "/campaigns/{campaign_id:uuid}/roi",
        summary="A joint campaign's return: its attributed uplift against its bonus cost",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def campaign_roi(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        campaign_id: CampaignIdPath,
    ) -> CampaignRoi:
        return await campaign_roi(
            db_session, program, campaign_id, datetime.now(UTC), principal=operator(request)
        )

    @get(
        "/partner-profitability",
        summary="Each partner's month: points issued and redeemed, money in and out, position",
        responses=problem_responses(*ANALYTICS_READ),
    )
    async def partner_profitability(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        period: MonthQuery,
    ) -> PartnerProfitability:
        month = parse_month("period", period)
        return await partner_profitability(
            db_session, ledger, program, month, principal=operator(request)
        )
