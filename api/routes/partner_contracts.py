"""The operator API of a partner's coalition terms: its contract versions
(draft, publish), the blocks of points a prepaid partner paid for, and what
it may still issue.

Each handler parses, calls one use case (``partners.contracts``,
``partners.funding``) and renders; the use case writes the audit line.
"""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import (
    OPERATOR_READ,
    OPERATOR_WRITE,
    created_or_found,
    created_or_replayed,
    replayed,
)
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_partner, path_program
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT
from ledger import Ledger
from partners.contract_schemas import (
    ContractPage,
    ContractPublication,
    ContractTerms,
    ContractView,
    FundingRequest,
    FundingView,
    PartnerBalance,
)
from partners.contracts import draft_contract, get_contract, list_contracts, publish_contract
from partners.funding import partner_balance, record_funding
from partners.models import Partner

VersionPath = Annotated[
    int, PathParameter(ge=1, le=2**31 - 1, description="The contract version's number.")
]

SAME_DRAFT = ResponseSpec(
    data_container=ContractView,
    description="The latest version is a draft of the very same terms; nothing written.",
    generate_examples=False,
)


class PartnerContractController(Controller):
    path = "/programs/{slug:str}/partners/{partner:str}"
    tags = ["partner contracts"]
    guards = [require_scope("partners:write", reading="partners:read")]
    dependencies = {"program": Provide(path_program), "firm": Provide(path_partner)}

    @post(
        "/contracts",
        status_code=HTTPStatus.CREATED,
        summary="Draft a contract version (the same terms again: 200, the same draft)",
        description="A new version numbered after the last, a draft until published. Prices"
        " per point are exact decimal strings; a prepaid contract has no credit limit, a"
        " postpaid one needs it (else 422 invalid-contract).",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            HTTPStatus.OK: SAME_DRAFT,
        },
    )
    async def draft(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        data: JSONBody[ContractTerms],
    ) -> Response[ContractView]:
        view, created = await draft_contract(
            db_session, program, firm, data, principal=operator(request)
        )
        return created_or_found(view, created)

    @get(
        "/contracts",
        summary="The partner's contract versions, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def list_versions(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> ContractPage:
        page = await list_contracts(
            db_session, firm, principal=operator(request), limit=limit, cursor=cursor
        )
        return ContractPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/contracts/{version:int}",
        summary="A contract version",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        version: VersionPath,
    ) -> ContractView:
        return ContractView.of(
            await get_contract(db_session, firm, version, principal=operator(request))
        )

    @post(
        "/contracts/{version:int}/publication",
        status_code=HTTPStatus.OK,
        summary="Publish a contract version from a stated time",
        description="In force from `effective_from` (now or later; the partner's first"
        " version may start as early as the partner's creation: else 422 publish-in-past)"
        " until a version with a later start. The same publication again answers it. The"
        " first publication opens the partner's accounts; each moves its credit line to the"
        " version's limit at once: a lower limit than the headroom left is 409"
        " credit-line-in-use, and nothing is published.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def publish(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        version: VersionPath,
        data: JSONBody[ContractPublication],
    ) -> ContractView:
        return await publish_contract(
            db_session,
            ledger,
            program,
            firm,
            version,
            data.effective_from,
            datetime.now(UTC),
            principal=operator(request),
        )

    @post(
        "/funding",
        status_code=HTTPStatus.CREATED,
        summary="Record a paid block of points of a prepaid partner (idempotent by reference)",
        description="Moves the block to the partner's issuance account: it may issue that"
        " many more points. The partner must hold a prepaid contract of its own (409"
        " partner-not-prepaid, no-contract-in-force). The same reference with other fields:"
        " 409 idempotency-conflict.",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **replayed(FundingView, "block (the same reference)"),
        },
    )
    async def fund(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
        data: JSONBody[FundingRequest],
    ) -> Response[FundingView]:
        view = await record_funding(
            db_session, ledger, program, firm, data, datetime.now(UTC), principal=operator(request)
        )
        return created_or_replayed(view)

    @get(
        "/balance",
        summary="What the partner (or the firm whose contract it acts under) may still issue",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def balance(
        self,
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        firm: NamedDependency[Partner],
    ) -> PartnerBalance:
        return await partner_balance(db_session, ledger, program, firm, datetime.now(UTC))
