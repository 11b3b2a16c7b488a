"""The partner API of leads (``/partner/...``): register a lead or deal,
read the partner's own registrations, ask for a longer exclusivity, report
a kept deal's status (``leads:share``); read the leads offered to it,
accept or decline them, report the status of those it accepted
(``leads:receive``). Each handler parses, calls one use case
(``partners.leads``) and renders."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.idempotency import IdempotencyKeyHeader
from api.lead_intake import LeadIntake
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
from ledger import Ledger
from partners.funding import own_firm
from partners.leads.offers import accept_offer, decline_offer, get_offer, list_offers
from partners.leads.outcomes import report_as_assignee, report_as_registrant
from partners.leads.registration import (
    get_own_lead,
    list_own_leads,
    register_lead,
    request_extension,
)
from partners.leads.registration_batch import NeedsSession
from partners.leads.schemas import (
    Decline,
    ExtensionRequest,
    ExtensionView,
    LeadList,
    LeadRegistration,
    LeadView,
    OfferList,
    OfferView,
    StatusReport,
)

SHARE = "leads:share"
RECEIVE = "leads:receive"

LeadIdPath = Annotated[uuid.UUID, PathParameter(description="The lead's id (`id` of its view).")]
OfferIdPath = Annotated[uuid.UUID, PathParameter(description="The offer's id.")]
ListLimit = Annotated[
    int, QueryParameter(ge=1, le=100, description="The most items to answer, newest first.")
]
OfferStatusQuery = Annotated[
    Literal["offered", "accepted", "declined", "withdrawn"] | None,
    QueryParameter(description="Only offers in this status."),
]
_STATUS_DESCRIPTION = (
    "contacted, qualified, won (with `won_amount_minor`) or lost (with `lost_reason`); never"
    " back. The same report again answers the first (`replayed`). A shared lead won pays its"
    " referrer the program's referral reward once, however often the win is reported."
    " Refused, nothing written: 409 lead-status-move-refused; 422 invalid-lead."
)


class PartnerLeadController(Controller):
    """Leads and deals the token's partner registered."""

    path = "/leads"
    tags = ["leads"]
    guards = [partner_scope(SHARE)]
    security = partner_security(SHARE)

    @post(
        "/",
        status_code=HTTPStatus.CREATED,
        summary="Register a lead or deal (idempotent by reference)",
        description=(
            "Scored by the program's latest scoring version; held for the program's exclusivity"
            " period. Shared (`shared` true): routed at once and offered to the best-ranked"
            " eligible partner. A company (normalised domain, or normalised name) held by an"
            " active registration is refused with 409 lead-registration-conflict, whose"
            " answer is the same whoever holds it. Also refused, nothing written: 409"
            " partner-not-active, no-routing-configuration, idempotency-conflict (the"
            " reference with other fields); 422 invalid-lead."
        ),
        responses={
            **problem_responses(*PARTNER_WRITE),
            **replayed(LeadView, "registration (the same reference)"),
        },
    )
    async def register(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[LeadRegistration],
    ) -> Response[LeadView]:
        principal = partner(request)
        now = datetime.now(UTC)
        if not data.shared:
            # Written with other requests' in one transaction (api.lead_intake);
            # a replay, a partner not active and a shared lead take the session.
            intake: LeadIntake = request.app.state.lead_intake
            try:
                return created_or_replayed(await intake.register(data, now, principal=principal))
            except NeedsSession:
                pass
        program, firm = await own_firm(db_session, principal)
        view = await register_lead(db_session, program, firm, data, now, principal=principal)
        return created_or_replayed(view)

    @get(
        "/",
        summary="The partner's own registrations, newest first",
        responses=problem_responses(*PARTNER_LIST),
    )
    async def list_registered(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        limit: ListLimit = 50,
    ) -> LeadList:
        return await list_own_leads(db_session, principal=partner(request), limit=limit)

    @get(
        "/{lead_id:uuid}",
        summary="A registration of the partner's, with its score and how it was reached",
        responses=problem_responses(*PARTNER_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        lead_id: LeadIdPath,
    ) -> LeadView:
        return await get_own_lead(db_session, lead_id, principal=partner(request))

    @post(
        "/{lead_id:uuid}/extensions",
        status_code=HTTPStatus.CREATED,
        summary="Ask the operator for a longer exclusivity",
        description=(
            "The operator approves (the exclusivity grows by `days` from its end) or refuses."
            " Refused, nothing written: 409 lead-extension-closed (the lead is closed or"
            " expired, or a request is pending)."
        ),
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def ask_extension(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        lead_id: LeadIdPath,
        data: JSONBody[ExtensionRequest],
    ) -> ExtensionView:
        return await request_extension(
            db_session, lead_id, data, datetime.now(UTC), principal=partner(request)
        )

    @post(
        "/{lead_id:uuid}/status",
        status_code=HTTPStatus.OK,
        summary="Report where a kept deal stands",
        description="For a deal the partner keeps (not shared). " + _STATUS_DESCRIPTION,
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def report(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        lead_id: LeadIdPath,
        data: JSONBody[StatusReport],
    ) -> LeadView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await report_as_registrant(
            db_session, ledger, program, lead_id, data, datetime.now(UTC), principal=principal
        )


class PartnerLeadOfferController(Controller):
    """Shared leads offered to the token's partner: never who shared them."""

    path = "/lead-offers"
    tags = ["leads"]
    guards = [partner_scope(RECEIVE)]
    security = partner_security(RECEIVE)

    @get(
        "/",
        summary="Leads offered to the partner, newest first",
        description="The contact shows once the partner accepted the offer.",
        responses=problem_responses(*PARTNER_LIST),
    )
    async def list_offered(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        status: OfferStatusQuery = None,
        limit: ListLimit = 50,
    ) -> OfferList:
        return await list_offers(db_session, principal=partner(request), status=status, limit=limit)

    @get(
        "/{offer_id:uuid}",
        summary="A lead offered to the partner",
        responses=problem_responses(*PARTNER_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        offer_id: OfferIdPath,
    ) -> OfferView:
        return await get_offer(db_session, offer_id, principal=partner(request))

    @post(
        "/{offer_id:uuid}/acceptance",
        status_code=HTTPStatus.OK,
        summary="Accept an offered lead",
        description=(
            "Before its `due_at`: the partner works the lead and sees its contact. Again: the"
            " same answer (`replayed`). Refused, nothing written: 409 lead-offer-closed"
            " (declined, withdrawn, or its time passed)."
        ),
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def accept(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        offer_id: OfferIdPath,
    ) -> OfferView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await accept_offer(
            db_session, program, offer_id, datetime.now(UTC), principal=principal
        )

    @post(
        "/{offer_id:uuid}/decline",
        status_code=HTTPStatus.OK,
        summary="Decline an offered lead, with the reason",
        description=(
            "The reason is kept; the lead is offered to the next candidate. Refused, nothing"
            " written: 409 lead-offer-closed."
        ),
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def decline(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        offer_id: OfferIdPath,
        data: JSONBody[Decline],
    ) -> OfferView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await decline_offer(
            db_session, program, offer_id, data.reason, datetime.now(UTC), principal=principal
        )

    @post(
        "/{offer_id:uuid}/status",
        status_code=HTTPStatus.OK,
        summary="Report where an accepted lead stands",
        description="Told to the partner that shared it (API and `lead.status_changed`). "
        + _STATUS_DESCRIPTION,
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def report(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        offer_id: OfferIdPath,
        data: JSONBody[StatusReport],
    ) -> OfferView:
        principal = partner(request)
        program, _ = await own_firm(db_session, principal)
        return await report_as_assignee(
            db_session, ledger, program, offer_id, data, datetime.now(UTC), principal=principal
        )
