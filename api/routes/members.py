"""The member app API: a member's own balance and history, nothing else.

The token's identity carries the member ``Principal``, bound to the
token's program: the program is looked up with it, as every operator
look-up is, and the member's use cases audit under it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_304_NOT_MODIFIED
from sqlalchemy.ext.asyncio import AsyncSession

from api.member_auth import MemberIdentity, require_member
from api.modules import MEMBER_DATA
from api.problems import problem_responses
from api.program_cache import ProgramCache
from api.routes import MEMBER_READ, MEMBER_WRITE, HoldIdPath, created_or_replayed, replayed
from api.routes.ledger import HistoryCursor
from api.schemas import MEMBER_STATUS
from api.settings import Settings
from api.stripe.gateway import PointsPayment, start_points_payment
from core.codes import MOVEMENT_NAMES, movement_name
from core.members import get_member
from core.models import Member, Program
from core.principal import Principal
from core.programs import get_program
from ledger import Ledger
from ledger.bounds import NO_NUL
from partners.member_links import LinkRequest, LinkView, link_member, list_links, unlink_member
from rewards.end_of_earning import check_earning_in
from rewards.expiry import Expiring, expiring_soon
from rewards.holds import HoldRequest, HoldView, hold_points, release_hold
from rewards.privacy import MemberExport, export_member
from rewards.programs import MemberBalance, member_balance, read_balance
from rewards.redeeming import (
    GiftOutcome,
    GiftRequest,
    RedemptionOutcome,
    RedemptionRequest,
    RewardView,
    give_gift,
    list_rewards,
    redeem,
)
from rewards.tiers import TierProgress, tier_progress

IdempotencyKey = Annotated[
    str,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=NO_NUL,
        description="Repeating a request with the same key repeats its first answer.",
    ),
]


class PointsOrder(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    points: Annotated[
        int,
        msgspec.Meta(
            gt=0,
            le=10_000_000,
            description="Points to buy. Their price is their redemption value in the"
            " program's currency, rounded up to a minor unit.",
        ),
    ]


class MemberProfile(msgspec.Struct, kw_only=True):
    program: Annotated[str, msgspec.Meta(description="The program's slug.")]
    external_id: Annotated[str, msgspec.Meta(description="The member's id in the program.")]
    status: Annotated[str, msgspec.Meta(description=MEMBER_STATUS)]
    balance: Annotated[MemberBalance, msgspec.Meta(description="The member's points now.")]


class Movement(msgspec.Struct, kw_only=True):
    id: Annotated[str, msgspec.Meta(description="The ledger transfer's id (a UUID).")]
    points: Annotated[
        int,
        msgspec.Meta(description="Points into the wallet (positive) or out of it (negative)."),
    ]
    kind: Annotated[
        str,
        msgspec.Meta(
            description="What moved the points: "
            + ", ".join(MOVEMENT_NAMES.values())
            + " (or a number, for a code the platform does not name)."
        ),
    ]
    state: Annotated[
        str,
        msgspec.Meta(
            description="`pending` until the points are posted (e.g. inside a purchase's"
            " return window, or held for an order), then `posted`."
        ),
    ]
    at: Annotated[datetime, msgspec.Meta(description="When the movement was recorded.")]
    order_id: Annotated[
        str | None,
        msgspec.Meta(description="The order a purchase's points came from, if any."),
    ] = None
    partner: Annotated[
        str | None,
        msgspec.Meta(
            description="The partner that issued the points or took them as payment (its"
            " name), for a partner's movement."
        ),
    ] = None


PartnerSlugPath = Annotated[
    str,
    PathParameter(
        pattern=r"^[a-z0-9][a-z0-9-]{0,63}$", description="The partner's slug (or a store's)."
    ),
]


class MovementPage(msgspec.Struct, kw_only=True):
    movements: Annotated[list[Movement], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(
            description="Send it back as `cursor` to read the next (older) page; none on the"
            " last page."
        ),
    ]


async def _me(request: Request[Any, Any, Any], session: AsyncSession) -> tuple[Program, Member]:
    identity: MemberIdentity = request.state.member_identity
    program = await get_program(session, identity.principal, identity.program)
    return program, await get_member(session, program, identity.member)


def _principal(request: Request[Any, Any, Any]) -> Principal:
    identity: MemberIdentity = request.state.member_identity
    return identity.principal


class MemberController(Controller):
    path = "/me"
    tags = ["members"]
    guards = [require_member]

    @get("/", summary="The member's profile and balance", responses=problem_responses(*MEMBER_READ))
    async def profile(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
    ) -> MemberProfile:
        program, member = await _me(request, db_session)
        return MemberProfile(
            program=program.slug,
            external_id=member.external_id,
            status=member.status,
            balance=await member_balance(ledger, program, member),
        )

    @get(
        "/balance",
        summary="Balance, with an ETag: If-None-Match answers 304",
        responses={
            **problem_responses(*MEMBER_READ),
            HTTP_304_NOT_MODIFIED: ResponseSpec(
                data_container=None,
                description="The balance is unchanged since the ETag sent in If-None-Match.",
            ),
        },
    )
    async def balance(self, request: Request[Any, Any, Any]) -> Response[MemberBalance | None]:
        # The hot read: programs from a short-lived cache, then one key
        # look-up on the app's pool; no ORM session, no transaction.
        identity: MemberIdentity = request.state.member_identity
        programs: ProgramCache = request.app.state.programs
        program = await programs.get(identity.program, principal=identity.principal)
        balance = await read_balance(request.app.state.pool, program, identity.member)
        etag = '"' + hashlib.sha256(msgspec.json.encode(balance)).hexdigest()[:32] + '"'
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(None, status_code=HTTP_304_NOT_MODIFIED, headers=headers)
        return Response(balance, headers=headers)

    @get(
        "/transactions",
        summary="Points in and out, newest first",
        responses=problem_responses(400, *MEMBER_READ),
    )
    async def transactions(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        limit: Annotated[
            int, QueryParameter(ge=1, le=200, description="The most movements to answer.")
        ] = 50,
        cursor: HistoryCursor = None,
    ) -> MovementPage:
        _, member = await _me(request, db_session)
        page = await ledger.history(member.wallet_account_id, limit=limit, cursor=cursor)
        # A pending transfer, once resolved, is shown by its post; a void
        # undoes its pending: neither of those two is a movement.
        resolved = await ledger.resolved([t.id for t in page.transfers if t.flags & 2])
        movements = []
        for t in page.transfers:
            if t.flags & 8 or (t.flags & 2 and t.id in resolved):
                continue
            sign = 1 if t.credit_account_id == member.wallet_account_id else -1
            movements.append(
                Movement(
                    id=str(t.id),
                    points=sign * t.amount,
                    kind=movement_name(t.code),
                    state="pending" if t.flags & 2 else "posted",
                    at=t.created_at,
                    order_id=(t.metadata or {}).get("order_id"),
                    partner=(t.metadata or {}).get("partner_name"),
                )
            )
        return MovementPage(movements=movements, next_cursor=page.next_cursor)

    @get(
        "/rewards",
        summary="Rewards the member can redeem now",
        responses=problem_responses(*MEMBER_READ),
    )
    async def rewards(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
    ) -> list[RewardView]:
        program, _ = await _me(request, db_session)
        return await list_rewards(db_session, program, datetime.now(UTC))

    @post(
        "/redemptions",
        summary="Redeem a catalog reward (needs an Idempotency-Key)",
        responses={
            **problem_responses(*MEMBER_WRITE),
            **replayed(RedemptionOutcome, "redemption (the same Idempotency-Key)"),
        },
    )
    async def redeem_reward(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        idempotency_key: IdempotencyKey,
        data: JSONBody[RedemptionRequest],
    ) -> Response[RedemptionOutcome]:
        program, member = await _me(request, db_session)
        outcome = await redeem(
            db_session, ledger, program, member, idempotency_key, data, datetime.now(UTC)
        )
        return created_or_replayed(outcome)

    @post(
        "/gifts",
        summary="Give points to another member (needs an Idempotency-Key)",
        responses={
            **problem_responses(*MEMBER_WRITE),
            **replayed(GiftOutcome, "gift (the same Idempotency-Key)"),
        },
    )
    async def gift(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        idempotency_key: IdempotencyKey,
        data: JSONBody[GiftRequest],
    ) -> Response[GiftOutcome]:
        program, member = await _me(request, db_session)
        outcome = await give_gift(
            db_session, ledger, program, member, idempotency_key, data, datetime.now(UTC)
        )
        return created_or_replayed(outcome)

    @post(
        "/holds",
        summary="Hold points to pay (part of) an order (needs an Idempotency-Key)",
        responses={
            **problem_responses(*MEMBER_WRITE),
            **replayed(HoldView, "hold (the same Idempotency-Key)"),
        },
    )
    async def hold(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        idempotency_key: IdempotencyKey,
        data: JSONBody[HoldRequest],
    ) -> Response[HoldView]:
        program, member = await _me(request, db_session)
        view = await hold_points(
            db_session, ledger, program, member, idempotency_key, data, datetime.now(UTC)
        )
        return created_or_replayed(view)

    @post(
        "/holds/{hold_id:uuid}/release",
        status_code=HTTP_200_OK,
        summary="Cancel a hold: the points come back",
        responses=problem_responses(*MEMBER_WRITE),
    )
    async def release(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        hold_id: HoldIdPath,
    ) -> HoldView:
        program, member = await _me(request, db_session)
        return await release_hold(
            db_session,
            ledger,
            program,
            hold_id,
            datetime.now(UTC),
            member=member,
            principal=_principal(request),
        )

    @get(
        "/tier",
        summary="Tier, perks, and what reaches the next tier by when",
        responses=problem_responses(*MEMBER_READ),
    )
    async def tier(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
    ) -> TierProgress:
        program, member = await _me(request, db_session)
        return await tier_progress(db_session, program, member, datetime.now(UTC))

    @get(
        "/expiring",
        summary="Points that expire within 30 days unless spent",
        responses=problem_responses(*MEMBER_READ),
    )
    async def expiring(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
    ) -> Expiring:
        program, member = await _me(request, db_session)
        return await expiring_soon(ledger, program, member, datetime.now(UTC))

    @post(
        "/points-purchases",
        summary="Buy points: a Stripe PaymentIntent to confirm",
        responses=problem_responses(*MEMBER_WRITE, 502),
    )
    async def buy_points(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        idempotency_key: IdempotencyKey,
        data: JSONBody[PointsOrder],
    ) -> Response[PointsPayment]:
        program, member = await _me(request, db_session)
        # Refused before the member is asked for money (409 program-sunsetting).
        now = datetime.now(UTC)
        await check_earning_in(db_session, program, now, now)
        settings: Settings = request.app.state.settings
        payment = await start_points_payment(
            settings, program, member, data.points, idempotency_key
        )
        return Response(payment, status_code=HTTP_201_CREATED)

    @get(
        "/export",
        summary="All of the member's data, ledger history included",
        responses=problem_responses(*MEMBER_READ),
    )
    async def export(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
    ) -> MemberExport:
        program, member = await _me(request, db_session)
        return await export_member(
            db_session,
            ledger,
            program,
            member,
            datetime.now(UTC),
            principal=_principal(request),
            others=MEMBER_DATA,
        )

    @get(
        "/partner-links",
        summary="The member's identifiers at partners",
        responses=problem_responses(*MEMBER_READ),
    )
    async def partner_links(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
    ) -> list[LinkView]:
        _, member = await _me(request, db_session)
        return await list_links(db_session, member, principal=_principal(request))

    @put(
        "/partner-links/{partner:str}",
        summary="Link the member's identifier at a partner (its card number)",
        description="The partner may then issue points to it and take points as payment by"
        " it. A link is the partner's whose contract the firm named acts under (a group's"
        " card is one at all its stores); a new identifier replaces the old. An identifier"
        " another member linked: 409 already-exists.",
        responses=problem_responses(*MEMBER_WRITE),
    )
    async def link_partner(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        partner: PartnerSlugPath,
        data: JSONBody[LinkRequest],
    ) -> LinkView:
        program, member = await _me(request, db_session)
        view, _ = await link_member(
            db_session, program, member, partner, data, principal=_principal(request)
        )
        return view

    @delete(
        "/partner-links/{partner:str}",
        summary="Remove the member's link at a partner",
        responses=problem_responses(*MEMBER_WRITE),
    )
    async def unlink_partner(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        partner: PartnerSlugPath,
    ) -> None:
        program, member = await _me(request, db_session)
        await unlink_member(db_session, program, member, partner, principal=_principal(request))
