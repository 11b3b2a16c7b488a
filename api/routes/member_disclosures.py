"""The member API of data sharing: the member's consent per field (to share
it with partners under their data-sharing agreements; none is given until
the member gives it) and the log of what was disclosed about them, to
whom, why and when. Each handler parses, calls one use case
(``partners.data_sharing``) and renders."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.member_auth import MemberIdentity, require_member
from api.problems import problem_responses
from api.routes import MEMBER_READ, MEMBER_WRITE
from api.routes.pagination import Cursor, Limit
from core.members import get_member
from core.models import Member, Program
from core.pagination import PAGE_LIMIT_DEFAULT
from core.programs import get_program
from partners.data_sharing import consent, disclosures
from partners.data_sharing.schemas import ConsentChange, ConsentView, MemberDisclosurePage

FieldPath = Annotated[
    str,
    PathParameter(
        min_length=1,
        max_length=32,
        description=f"The member field: one of {', '.join(consent.SHAREABLE_FIELDS)}.",
    ),
]


async def _me(request: Request[Any, Any, Any], session: AsyncSession) -> tuple[Program, Member]:
    identity: MemberIdentity = request.state.member_identity
    program = await get_program(session, identity.principal, identity.program)
    return program, await get_member(session, program, identity.member)


class MemberDisclosureController(Controller):
    path = "/me/data-sharing"
    tags = ["members"]
    guards = [require_member]

    @get(
        "/consents",
        summary="The member's consent to share each field with partners",
        description="Every shareable field, with whether the member consents to partners"
        " receiving it under their data-sharing agreements. A field without consent is"
        " never disclosed, whatever an agreement names.",
        responses=problem_responses(*MEMBER_READ),
    )
    async def consents(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
    ) -> list[ConsentView]:
        _, member = await _me(request, db_session)
        return await consent.consents(db_session, member)

    @put(
        "/consents/{field:str}",
        summary="Give or withdraw the member's consent to share a field",
        description="`granted: false` withdraws it: from then on no read, export or webhook"
        " carries the field (a webhook already sent stays sent). The same answer again"
        " changes nothing. An unknown field: 422 unknown-data-sharing-field.",
        responses=problem_responses(*MEMBER_WRITE),
    )
    async def set_consent(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        field: FieldPath,
        data: JSONBody[ConsentChange],
    ) -> ConsentView:
        program, member = await _me(request, db_session)
        identity: MemberIdentity = request.state.member_identity
        return await consent.set_consent(
            db_session,
            program,
            member,
            field,
            data.granted,
            datetime.now(UTC),
            principal=identity.principal,
        )

    @get(
        "/disclosures",
        summary="What was disclosed about the member, to whom, newest first",
        description="Each time partners' data sharing carried the member's fields: the"
        " partner that shared them, the one that received them, the agreement's purpose,"
        " the fields, how (api, webhook, export, overlap) and when.",
        responses=problem_responses(*MEMBER_READ),
    )
    async def disclosures(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> MemberDisclosurePage:
        _, member = await _me(request, db_session)
        page = await disclosures.member_log(db_session, member, cursor=cursor, limit=limit)
        return MemberDisclosurePage(items=page.items, next_cursor=page.next_cursor)
