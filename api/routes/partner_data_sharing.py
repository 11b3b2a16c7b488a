"""The partner API of data sharing: propose an agreement to another partner,
opt in, revoke; read, export or push the members' data shared under one
(only the agreement's fields that each member consented to); read its
disclosure log. An agreement the partner is no party to is not found
(404), exactly as one that does not exist. Every read, export and push of
members' data writes its disclosure lines in its own transaction. Each
handler parses, calls one use case (``partners.data_sharing``) and
renders."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter, QueryParameter
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
from api.routes.pagination import Cursor, Limit
from core.pagination import PAGE_LIMIT_DEFAULT
from partners.acting import partner_of
from partners.data_sharing import agreements, disclosures
from partners.data_sharing.consent import SHAREABLE_FIELDS
from partners.data_sharing.models import AgreementStatus
from partners.data_sharing.schemas import (
    DisclosurePage,
    PushRequest,
    PushResult,
    SharedMemberPage,
    SharingAgreementPage,
    SharingAgreementView,
    SharingProposal,
)
from partners.webhook_schemas import message_id

SCOPE = "data:share"

AgreementIdPath = Annotated[UUID, PathParameter(description="The agreement's id.")]
StatusQuery = Annotated[
    AgreementStatus | None,
    QueryParameter(description="Only the agreements of this status."),
]

#: What a read of members' data may refuse besides the usual: the
#: agreement not in force (409), the partner not a recipient (403).
SHARED_READ = (400, 401, 403, 404, 409, 429, 503)

PROPOSE_DESCRIPTION = (
    "Proposed to another partner of the program (by slug): the member fields shared"
    f" ({', '.join(SHAREABLE_FIELDS)}), the purpose, the direction (whose members' data goes"
    " to whom) and the expiry (within 3 years). Nothing is shared until both partners opted"
    " in (`POST .../opt-in`, the proposer too). Refused, nothing written: 422"
    " invalid-data-sharing-agreement (a field twice, an expiry past or too far, the partner"
    " itself), 404 (no such partner)."
)


class PartnerDataSharingController(Controller):
    path = "/data-sharing/agreements"
    tags = ["data sharing"]
    guards = [partner_scope(SCOPE)]
    security = partner_security(SCOPE)

    @post(
        "/",
        status_code=HTTPStatus.CREATED,
        summary="Propose a data-sharing agreement to another partner",
        description=PROPOSE_DESCRIPTION,
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def propose(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[SharingProposal],
    ) -> SharingAgreementView:
        principal = partner(request)
        agreement = await agreements.propose(
            db_session, data, datetime.now(UTC), principal=principal
        )
        return await agreements.view(db_session, agreement)

    @get(
        "/",
        summary="The partner's data-sharing agreements (either side), oldest first",
        responses=problem_responses(*PARTNER_LIST),
    )
    async def list_all(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        status: StatusQuery = None,
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> SharingAgreementPage:
        page = await agreements.list_agreements(
            db_session, principal=partner(request), status=status, cursor=cursor, limit=limit
        )
        return SharingAgreementPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/{agreement_id:uuid}",
        summary="A data-sharing agreement the partner is a party to",
        responses=problem_responses(*PARTNER_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        agreement_id: AgreementIdPath,
    ) -> SharingAgreementView:
        found = await agreements.get(db_session, agreement_id, principal=partner(request))
        return await agreements.view(db_session, found)

    @post(
        "/{agreement_id:uuid}/opt-in",
        status_code=HTTPStatus.OK,
        summary="Opt in to a proposed data-sharing agreement",
        description="Once both partners opted in, the agreement is `active`: data is shared"
        " under it until it expires or either revokes it. Opting in again changes nothing."
        " Revoked or expired: 409 data-sharing-agreement-closed.",
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def opt_in(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        agreement_id: AgreementIdPath,
    ) -> SharingAgreementView:
        found = await agreements.opt_in(
            db_session, agreement_id, datetime.now(UTC), principal=partner(request)
        )
        return await agreements.view(db_session, found)

    @post(
        "/{agreement_id:uuid}/revoke",
        status_code=HTTPStatus.OK,
        summary="Revoke a data-sharing agreement",
        description="Either partner may: nothing more is shared under it, at once; its"
        " webhook deliveries still waiting are cancelled (dead, with an attempt saying why)"
        " and never replayed. Revoking again changes nothing. Expired: 409"
        " data-sharing-agreement-closed.",
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        agreement_id: AgreementIdPath,
    ) -> SharingAgreementView:
        found = await agreements.revoke(
            db_session, agreement_id, datetime.now(UTC), principal=partner(request)
        )
        return await agreements.view(db_session, found)

    @get(
        "/{agreement_id:uuid}/members",
        summary="Read the other partner's members' data shared under the agreement",
        description="A page of the other partner's members (those linked at it) with the"
        " agreement's fields each consented to; a member who consented to none is not"
        " listed, a field not consented is absent. The read is logged (one line per member"
        " in the disclosure log) with it. Not in force (proposed, revoked, expired): 409"
        " data-sharing-agreement-not-in-force; a direction that does not share with this"
        " partner: 403 data-sharing-not-a-recipient.",
        responses=problem_responses(*SHARED_READ),
    )
    async def members(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        agreement_id: AgreementIdPath,
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> SharedMemberPage:
        _, own = partner_of(partner(request))
        now = datetime.now(UTC)
        found = await agreements.agreement_in_force(db_session, agreement_id, own, now)
        page = await disclosures.read_shared(
            db_session,
            found,
            own,
            now,
            cursor=cursor,
            limit=limit,
            reference=request.headers.get("x-request-id"),
        )
        return SharedMemberPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/{agreement_id:uuid}/export",
        summary="Export every member's data shared under the agreement, as CSV",
        description="Every shared member (up to 100,000), one row each, the agreement's"
        " fields as columns (empty where the member did not consent); the export is logged"
        " (its id in the `Export-Id` header and the log's `reference`). Refusals as for"
        " the read.",
        media_type="text/csv",
        responses={
            **problem_responses(*SHARED_READ),
            HTTPStatus.OK: ResponseSpec(
                data_container=str, description="The CSV file.", media_type="text/csv"
            ),
        },
    )
    async def export(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        agreement_id: AgreementIdPath,
    ) -> Response[str]:
        _, own = partner_of(partner(request))
        now = datetime.now(UTC)
        found = await agreements.agreement_in_force(db_session, agreement_id, own, now)
        export_id, members = await disclosures.export_shared(db_session, found, own, now)
        out = io.StringIO()
        writer = csv.writer(out)
        columns = list(found.fields)
        writer.writerow(["member", *columns])
        for each in members:
            values = [getattr(each, c) for c in columns]
            writer.writerow(
                [
                    str(each.member),
                    *(
                        "" if v is None else v.isoformat() if isinstance(v, datetime) else v
                        for v in values
                    ),
                ]
            )
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={
                "Export-Id": export_id,
                "Content-Disposition": f'attachment; filename="{export_id}.csv"',
            },
        )

    @post(
        "/{agreement_id:uuid}/pushes",
        status_code=HTTPStatus.ACCEPTED,
        summary="Send members' shared data to the other partner's webhooks",
        description="The partner whose members they are sends the agreement's consented"
        " fields of the members named to the other partner's endpoints that take"
        " `data_sharing.members_shared` (one delivery per endpoint, carrying the"
        " agreement's id, logged per delivery). A revocation before it is sent cancels it."
        " Refusals as for the read (403 when the direction sends nothing to the other).",
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def push(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        agreement_id: AgreementIdPath,
        data: JSONBody[PushRequest],
    ) -> PushResult:
        _, own = partner_of(partner(request))
        now = datetime.now(UTC)
        found = await agreements.agreement_in_force(db_session, agreement_id, own, now)
        made, members = await disclosures.push_members(db_session, found, own, data.members, now)
        return PushResult(deliveries=[message_id(d) for d in made], members=members)

    @get(
        "/{agreement_id:uuid}/disclosures",
        summary="The agreement's disclosure log, both ways, oldest first",
        description="Every member's (or record's) fields that went to either partner under"
        " the agreement: when, by which channel (api, webhook, export, overlap) and what"
        " carried it. Both partners see the same log, revoked or expired agreements too.",
        responses=problem_responses(*PARTNER_READ),
    )
    async def disclosure_log(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        agreement_id: AgreementIdPath,
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> DisclosurePage:
        found = await agreements.get(db_session, agreement_id, principal=partner(request))
        page = await disclosures.agreement_log(db_session, found, cursor=cursor, limit=limit)
        return DisclosurePage(items=page.items, next_cursor=page.next_cursor)
