"""The operator's API of leads (``/programs/{slug}/leads/...``): versions of
lead scoring and of routing, referral terms, partners' lead profiles,
exclusivity extensions to approve or refuse, and any lead of the program
with its score and its routing decision (every candidate's scores by
criterion). Reads take ``leads:read``, the rest ``leads:write``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_READ, OPERATOR_WRITE
from api.routes.paths import path_partner, path_program
from core.models import Program
from partners.leads.outcomes import get_referral_terms, save_referral_terms
from partners.leads.registration import decide_extension, list_extensions, program_lead
from partners.leads.routing import (
    get_profile,
    routing_versions,
    save_profile,
    save_routing_version,
)
from partners.leads.routing_decisions import decision_view
from partners.leads.schemas import (
    ExtensionDecision,
    ExtensionList,
    ExtensionView,
    LeadView,
    PartnerProfile,
    ProfileView,
    ReferralTerms,
    ReferralTermsView,
    RoutingConfiguration,
    RoutingDecisionView,
    RoutingVersionView,
    ScoringCriteria,
    ScoringVersionView,
)
from partners.leads.scoring import save_scoring_version, scoring_versions
from partners.models import Partner

GUARD = require_scope("leads:write", reading="leads:read")
LeadIdPath = Annotated[uuid.UUID, PathParameter(description="The lead's id.")]
ExtensionIdPath = Annotated[uuid.UUID, PathParameter(description="The extension request's id.")]
ExtensionStatusQuery = Annotated[
    Literal["pending", "approved", "refused"] | None,
    QueryParameter(description="Only requests in this status."),
]
ListLimit = Annotated[
    int, QueryParameter(ge=1, le=100, description="The most items to answer, newest first.")
]


class LeadSettingsController(Controller):
    path = "/programs/{slug:str}/leads"
    tags = ["leads"]
    guards = [GUARD]
    dependencies = {"program": Provide(path_program)}

    @post(
        "/scoring-versions",
        status_code=HTTPStatus.CREATED,
        summary="Save a new version of lead scoring",
        description=(
            "Criteria (company_size, industry, territory, recent_activity) with weights; each"
            " value 0-1000; a lead's score is the sum of weight times value over the sum of"
            " weights. Leads registered from now on are scored by it; earlier ones keep their"
            " version. 422 invalid-lead-scoring: a criterion twice or without its parameters."
        ),
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def save_scoring(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[ScoringCriteria],
    ) -> ScoringVersionView:
        return await save_scoring_version(db_session, program, data, principal=operator(request))

    @get(
        "/scoring-versions",
        summary="The versions of lead scoring, newest first",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def list_scoring(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
    ) -> list[ScoringVersionView]:
        return await scoring_versions(db_session, program, principal=operator(request))

    @post(
        "/routing-versions",
        status_code=HTTPStatus.CREATED,
        summary="Save a new version of the routing configuration",
        description=(
            "Weights of territory, capability, tier, capacity, acceptance_rate and"
            " response_time; grades of partner tiers; the offer SLA; the exclusivity period."
            " Refused with every problem listed, nothing written (422"
            " routing-configuration-refused), when it would leave a partner unreachable by"
            " accident: a weight of 0, a grade of 0, a tier of the program's partners with no"
            " grade."
        ),
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def save_routing(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[RoutingConfiguration],
    ) -> RoutingVersionView:
        return await save_routing_version(db_session, program, data, principal=operator(request))

    @get(
        "/routing-versions",
        summary="The versions of the routing configuration, newest first",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def list_routing(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
    ) -> list[RoutingVersionView]:
        return await routing_versions(db_session, program, principal=operator(request))

    @put(
        "/referral-terms",
        summary="Set the program's referral terms",
        description=(
            "What the partner that shared a lead earns when it is won: points or money, a"
            " fixed amount or (money) a share of the won value in basis points, rounded"
            " half-even. 422 invalid-referral-terms: terms that cannot be paid."
        ),
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def set_terms(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[ReferralTerms],
    ) -> ReferralTermsView:
        return await save_referral_terms(db_session, program, data, principal=operator(request))

    @get(
        "/referral-terms",
        summary="The program's referral terms",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show_terms(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
    ) -> ReferralTermsView:
        return await get_referral_terms(db_session, program, principal=operator(request))

    @get(
        "/extensions",
        summary="Requests to extend a registration's exclusivity, newest first",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def list_extension_requests(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        status: ExtensionStatusQuery = None,
        limit: ListLimit = 50,
    ) -> ExtensionList:
        return await list_extensions(
            db_session, program, principal=operator(request), status=status, limit=limit
        )

    @post(
        "/extensions/{extension_id:uuid}/approval",
        status_code=HTTPStatus.OK,
        summary="Approve an extension request",
        description=(
            "The lead's exclusivity grows by the days asked, from its end. The same decision"
            " again answers it; 409 lead-extension-closed: decided otherwise, or the lead"
            " closed or expired."
        ),
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def approve(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        extension_id: ExtensionIdPath,
        data: JSONBody[ExtensionDecision],
    ) -> ExtensionView:
        return await decide_extension(
            db_session,
            program,
            extension_id,
            True,
            data.note,
            datetime.now(UTC),
            principal=operator(request),
        )

    @post(
        "/extensions/{extension_id:uuid}/refusal",
        status_code=HTTPStatus.OK,
        summary="Refuse an extension request",
        description="The exclusivity ends when it was to. 409 lead-extension-closed.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def refuse(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        extension_id: ExtensionIdPath,
        data: JSONBody[ExtensionDecision],
    ) -> ExtensionView:
        return await decide_extension(
            db_session,
            program,
            extension_id,
            False,
            data.note,
            datetime.now(UTC),
            principal=operator(request),
        )

    @get(
        "/{lead_id:uuid}",
        summary="A lead of the program, with its score and how it was reached",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show_lead(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        lead_id: LeadIdPath,
    ) -> LeadView:
        return await program_lead(db_session, program, lead_id, principal=operator(request))

    @get(
        "/{lead_id:uuid}/routing",
        summary="Why a shared lead went where it went",
        description=(
            "The stored decision: the weights of its routing version, every candidate's score"
            " by criterion, total and rank (ties broken by `tie_rule`), its offer's status,"
            " and the partners left out with why."
        ),
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show_routing(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        lead_id: LeadIdPath,
    ) -> RoutingDecisionView:
        return await decision_view(db_session, program, lead_id, principal=operator(request))


class PartnerLeadProfileController(Controller):
    """What routing knows of a partner firm of the path."""

    path = "/programs/{slug:str}/partners/{partner:str}/lead-profile"
    tags = ["leads"]
    guards = [GUARD]
    dependencies = {"program": Provide(path_program), "firm": Provide(path_partner)}

    @put(
        "/",
        summary="Set a partner's lead profile",
        description=(
            "Its territories, capabilities (products) and capacity (leads open at once):"
            " routing offers it only leads of products it has, while it has room. Its answers"
            " so far (acceptance rate, response time) are kept."
        ),
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def set_profile(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        data: JSONBody[PartnerProfile],
    ) -> ProfileView:
        return await save_profile(db_session, program, firm, data, principal=operator(request))

    @get(
        "/",
        summary="A partner's lead profile and its answers so far",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show_profile(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
    ) -> ProfileView:
        return await get_profile(db_session, firm, principal=operator(request))
