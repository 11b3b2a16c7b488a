"""The operator's routes of the operations on lots: cancelling a completed
spend (a catalog redemption, a captured points payment), reinstating
expired points, and a program's sunset. Each handler parses, calls one use
case (``rewards.cancellations``, ``rewards.reinstatement``,
``rewards.sunset``) and renders."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import (
    OPERATOR_DELETE,
    OPERATOR_READ,
    OPERATOR_WRITE,
    HoldIdPath,
    created_or_found,
    created_or_replayed,
    found_again,
    replayed,
)
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_member, path_program
from core.models import Member, Program
from core.pagination import PAGE_LIMIT_DEFAULT
from ledger import Ledger
from rewards.cancellations import (
    SpendCancellationOutcome,
    SpendCancellationRequest,
    cancel_points_payment,
    cancel_redemption,
)
from rewards.reinstatement import (
    ReinstatementPage,
    ReinstatementRequest,
    ReinstatementView,
    get_reinstatement,
    list_reinstatements,
    reinstate_expired,
)
from rewards.sunset import (
    SunsetRequest,
    SunsetView,
    cancel_sunset,
    schedule_sunset,
    show_sunset,
)

RedemptionTransferPath = Annotated[
    UUID,
    PathParameter(
        description="The redemption's ledger transfer: the `id` of its movement in the"
        " member's history (`/me/transactions`)."
    ),
]
ReinstatementIdPath = Annotated[UUID, PathParameter(description="The reinstatement's id.")]

CANCEL_DESCRIPTION = (
    "Restores exactly the points the spend consumed, to the lots they came from, with"
    " their original expiry (a credit naming the spend's transfer), once: the same"
    " `cancellation_id` again answers the first outcome (200, `replayed`). Audited. 409"
    " already-cancelled (cancelled before under another id), idempotency-conflict (the id"
    " was used for another spend)"
)
REINSTATE_DESCRIPTION = (
    "Restores every point of the program that expired (by its expiry policy, not by a"
    " sunset) at or after `since`, to the lots it expired from, with the new expiry"
    " `lot_expires_at` (none: never). Each expiry is restored once, whatever runs:"
    " running it again under another reference restores nothing more. The same"
    " reference again answers the first (200, `replayed`), or finishes it if it was"
    " interrupted. Audited; emits `rewards.points_reinstated` (breakage is re-estimated)."
    " 422 invalid-reinstatement (`since` in the future, `lot_expires_at` not in the future);"
    " 409 idempotency-conflict (the reference was used with other fields)."
)
SUNSET_DESCRIPTION = (
    "Announces the program's end at `sunset_at`, at least `notice_days` ahead (422"
    " sunset-notice-too-short), and emits `rewards.sunset_scheduled` so members can be told."
    " From then on the `sunset-programs` job expires every point left in every wallet"
    " (code program_sunset), audited with its totals. The same request again answers the"
    " sunset (200); another while one is scheduled: 409 idempotency-conflict (cancel it"
    " first); after the program ended: 409 sunset-locked. Earning stops first, at"
    " `earning_ends_at` (by default at once): from then on new earnings (purchases and"
    " their bonuses, bought points) are refused with 409 program-sunsetting, while"
    " members redeem until `sunset_at` (422 invalid-end-of-earning: in the past or after"
    " `sunset_at`)."
)


class LotOperationsController(Controller):
    path = "/programs"
    tags = ["programs"]
    dependencies = {"program": Provide(path_program), "member": Provide(path_member)}

    @post(
        "/{slug:str}/members/{external_id:str}/redemptions/{transfer_id:uuid}/cancellation",
        guards=[require_scope("members:write")],
        summary="Cancel a completed catalog redemption: its points back to their lots",
        description=CANCEL_DESCRIPTION + "; 404 a redemption not of this member. The reward's"
        " units go back in stock.",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **replayed(SpendCancellationOutcome, "cancellation (the same cancellation id)"),
        },
    )
    async def cancel_redemption(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        member: NamedDependency[Member],
        transfer_id: RedemptionTransferPath,
        data: JSONBody[SpendCancellationRequest],
    ) -> Response[SpendCancellationOutcome]:
        outcome = await cancel_redemption(
            db_session, ledger, program, member, transfer_id, data, principal=operator(request)
        )
        return created_or_replayed(outcome)

    @post(
        "/{slug:str}/holds/{hold_id:uuid}/cancellation",
        guards=[require_scope("purchases:write")],
        summary="Cancel a captured points payment: its points back to their lots",
        description=CANCEL_DESCRIPTION + ", spend-not-completed (the hold was not captured:"
        " release it instead).",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **replayed(SpendCancellationOutcome, "cancellation (the same cancellation id)"),
        },
    )
    async def cancel_points_payment(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        hold_id: HoldIdPath,
        data: JSONBody[SpendCancellationRequest],
    ) -> Response[SpendCancellationOutcome]:
        outcome = await cancel_points_payment(
            db_session, ledger, program, hold_id, data, principal=operator(request)
        )
        return created_or_replayed(outcome)

    @post(
        "/{slug:str}/reinstatements",
        guards=[require_scope("programs:write")],
        summary="Reinstate every point expired since a time (idempotent by reference)",
        description=REINSTATE_DESCRIPTION,
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **replayed(ReinstatementView, "reinstatement (the same reference)"),
        },
    )
    async def reinstate(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        data: JSONBody[ReinstatementRequest],
    ) -> Response[ReinstatementView]:
        view = await reinstate_expired(
            db_session, ledger, program, data, datetime.now(UTC), principal=operator(request)
        )
        return created_or_replayed(view)

    @get(
        "/{slug:str}/reinstatements",
        guards=[require_scope("programs:read")],
        summary="The program's reinstatements, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def reinstatements(
        self,
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> ReinstatementPage:
        page = await list_reinstatements(db_session, program, limit=limit, cursor=cursor)
        return ReinstatementPage(items=page.items, next_cursor=page.next_cursor)

    @get(
        "/{slug:str}/reinstatements/{reinstatement_id:uuid}",
        guards=[require_scope("programs:read")],
        summary="A reinstatement, with what it restored",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def reinstatement(
        self,
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        reinstatement_id: ReinstatementIdPath,
    ) -> ReinstatementView:
        return await get_reinstatement(db_session, program, reinstatement_id)

    @post(
        "/{slug:str}/sunset",
        guards=[require_scope("programs:write")],
        status_code=HTTP_201_CREATED,
        summary="Schedule the program's sunset, after a notice period",
        description=SUNSET_DESCRIPTION,
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **found_again(SunsetView, "The same sunset: it is scheduled as asked"),
        },
    )
    async def schedule_sunset(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[SunsetRequest],
    ) -> Response[SunsetView]:
        view, created = await schedule_sunset(
            db_session, program, data, datetime.now(UTC), principal=operator(request)
        )
        return created_or_found(view, created)

    @get(
        "/{slug:str}/sunset",
        guards=[require_scope("programs:read")],
        summary="The program's sunset (scheduled, completed, or the one cancelled last)",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def sunset(
        self, db_session: NamedDependency[AsyncSession], program: NamedDependency[Program]
    ) -> SunsetView:
        return await show_sunset(db_session, program)

    @delete(
        "/{slug:str}/sunset",
        guards=[require_scope("programs:write")],
        status_code=HTTP_200_OK,
        summary="Cancel the scheduled sunset before its date",
        description="Audited; emits `rewards.sunset_cancelled`. Again: the sunset cancelled"
        " last. 409 sunset-locked: its date has come (the mass expiry runs or ran); 404: no"
        " sunset was ever scheduled.",
        responses=problem_responses(*OPERATOR_DELETE, 409),
    )
    async def cancel_sunset(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
    ) -> SunsetView:
        return await cancel_sunset(
            db_session, program, datetime.now(UTC), principal=operator(request)
        )
