"""The operator API of loyalty programs: programs, earn rule versions,
members, purchases and returns.

Each handler parses, calls one use case and maps its answer; the use case
writes the audit line. The program of the path and the member of the path
come from dependencies that look them up for the caller: a program outside
the caller's tenant is not found, exactly as a missing one."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from http import HTTPStatus
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody, Parameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.modules import MEMBER_DATA
from api.problems import problem_responses
from api.routes import (
    OPERATOR_READ,
    OPERATOR_WRITE,
    HoldIdPath,
    created_or_found,
    created_or_replayed,
    found_again,
    replayed,
)
from api.routes.paths import ExternalIdPath, SlugPath, path_member, path_program
from api.schemas import MEMBER_STATUS
from core.models import Member, Program
from ledger import Ledger
from ledger.bounds import (
    INTEGER_MAX,
    JSON_RULE,
    MOMENT_RULE,
    NO_NUL,
    Text100,
    Text500,
    check_json,
    check_moment,
)
from rewards.adjustments import Adjustment, AdjustmentOutcome, adjust_points
from rewards.events import BehaviourEvent, EventOutcome, record_event
from rewards.holds import Capture, HoldView, capture_hold, release_hold
from rewards.models import EarnRuleVersion
from rewards.privacy import MemberExport, erase_by_external_id, export_member
from rewards.programs import (
    Enrolment,
    MemberBalance,
    ProgramSpec,
    enrol_member,
    member_balance,
    open_program,
)
from rewards.purchases import PurchaseEvent, PurchaseOutcome, ReturnEvent, ReturnOutcome
from rewards.redeeming import RewardSpec, RewardView, add_reward
from rewards.returns import return_purchase
from rewards.rule_versions import draft_rules_once, list_rules, parse_rules, publish_rules
from rewards.rules import Moment
from rewards.simulator import SimulationReport, simulate
from rewards.tiers import ThresholdSpec, TierSpec, define_threshold, define_tier


class ProgramView(msgspec.Struct, kw_only=True):
    slug: Annotated[str, msgspec.Meta(description="The program's slug, its id in paths.")]
    name: Annotated[str, msgspec.Meta(description="A name for people to read.")]
    currency: Annotated[
        str, msgspec.Meta(description="The currency purchases are in, ISO 4217 (e.g. ZAR).")
    ]
    ledger_id: Annotated[
        int, msgspec.Meta(description="The ledger that holds the program's points.")
    ]
    point_value_minor: Annotated[
        Decimal,
        msgspec.Meta(
            description="What one point is worth when redeemed, in minor units of the"
            " currency (1: 100 points pay 1.00), as a decimal string."
        ),
    ]
    return_window_days: Annotated[
        int,
        msgspec.Meta(
            description="Days a purchase may be returned in: its points stay pending until then."
        ),
    ]
    time_zone: Annotated[
        str,
        msgspec.Meta(
            description="The IANA time zone the program's days, months and years count in"
            " (e.g. Africa/Johannesburg)."
        ),
    ]
    started_at: Annotated[
        datetime,
        msgspec.Meta(
            description="When the program began: its first rule version may take effect"
            " from then on."
        ),
    ]


class RuleDraft(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    rules: Annotated[
        dict[Text100, Any],
        msgspec.Meta(
            description="The earn rules document: points_per_unit (points per major unit"
            " spent, a decimal), rounding (down, half_up, up), min_spend_minor,"
            " category_multipliers, sku_multipliers, excluded_categories, excluded_skus,"
            f" tier_multipliers, bonuses and events. {JSON_RULE}"
        ),
    ]
    note: (
        Annotated[Text500, msgspec.Meta(description="The operator's note on this version.")] | None
    ) = None

    def __post_init__(self) -> None:
        check_json("rules", self.rules)


class Publication(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    effective_from: Annotated[
        Moment,
        msgspec.Meta(
            description="When the version starts to price purchases: now or later, not in"
            " the past; except the program's first published version, which may start as"
            f" early as the program's `started_at` (a history import). {MOMENT_RULE}"
        ),
    ]

    def __post_init__(self) -> None:
        check_moment("effective_from", self.effective_from)


# Path parameters, bounded like the columns they are looked up in (the
# slug's in api.routes.paths).
VersionPath = Annotated[
    int, Parameter(ge=1, le=INTEGER_MAX, description="The rule version's number.")
]
OrderIdPath = Annotated[
    str,
    Parameter(min_length=1, max_length=200, pattern=NO_NUL, description="The order's id."),
]


class RuleVersionView(msgspec.Struct, kw_only=True):
    version: Annotated[
        int, msgspec.Meta(description="The version's number in the program: 1, 2, ...")
    ]
    status: Annotated[
        str,
        msgspec.Meta(description="`draft` until published, then `published` (unchangeable)."),
    ]
    effective_from: Annotated[
        datetime | None,
        msgspec.Meta(description="When a published version starts to price purchases."),
    ]
    rules: Annotated[dict[str, Any], msgspec.Meta(description="The earn rules document.")]
    note: Annotated[str | None, msgspec.Meta(description="The operator's note, if any.")]


class MemberView(msgspec.Struct, kw_only=True):
    external_id: Annotated[
        str,
        msgspec.Meta(
            description="The operator's id of the member (`erased-...` after an erasure)."
        ),
    ]
    status: Annotated[str, msgspec.Meta(description=MEMBER_STATUS)]
    email: Annotated[str | None, msgspec.Meta(description="The member's e-mail, if given.")]
    phone: Annotated[str | None, msgspec.Meta(description="The member's phone number, if given.")]
    balance: Annotated[MemberBalance, msgspec.Meta(description="The member's points now.")]


T = TypeVar("T")


def _program_view(program: Program) -> ProgramView:
    return ProgramView(
        slug=program.slug,
        name=program.name,
        currency=program.currency,
        ledger_id=program.ledger_id,
        point_value_minor=program.point_value_minor,
        return_window_days=program.return_window_days,
        time_zone=program.time_zone,
        started_at=program.started_at,
    )


def _version_view(version: EarnRuleVersion) -> RuleVersionView:
    return RuleVersionView(
        version=version.version,
        status=version.status,
        effective_from=version.effective_from,
        rules=version.rules,
        note=version.note,
    )


async def _member_view(
    ledger: NamedDependency[Ledger], program: Program, member: Member
) -> MemberView:
    return MemberView(
        external_id=member.external_id,
        status=member.status,
        email=member.email,
        phone=member.phone,
        balance=await member_balance(ledger, program, member),
    )


class ProgramController(Controller):
    path = "/programs"
    tags = ["programs"]
    dependencies = {"program": Provide(path_program), "member": Provide(path_member)}

    @post(
        "/",
        guards=[require_scope("programs:write")],
        status_code=HTTP_201_CREATED,
        summary="Open a program (idempotent by slug: 200 when it is open with these fields)",
        responses={
            # No path to name a missing record: no 404.
            **problem_responses(*(s for s in OPERATOR_WRITE if s != HTTPStatus.NOT_FOUND)),
            **replayed(ProgramView, "open of the same program"),
        },
    )
    async def open_program(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        data: JSONBody[ProgramSpec],
    ) -> Response[ProgramView]:
        program, created = await open_program(db_session, ledger, data, principal=operator(request))
        view = _program_view(program)
        return Response(view, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @get(
        "/{slug:str}",
        guards=[require_scope("programs:read")],
        summary="A program",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show_program(self, program: NamedDependency[Program]) -> ProgramView:
        return _program_view(program)

    @post(
        "/{slug:str}/rules",
        guards=[require_scope("rules:write")],
        status_code=HTTP_201_CREATED,
        summary="Draft an earn rule version (200: the latest version, a draft of these rules"
        " and note)",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **found_again(
                RuleVersionView, "The same draft: the latest version is a draft of these rules"
            ),
        },
    )
    async def draft(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[RuleDraft],
    ) -> Response[RuleVersionView]:
        rules = parse_rules(data.rules)
        version, created = await draft_rules_once(
            db_session, program, rules, data.note, principal=operator(request)
        )
        return created_or_found(_version_view(version), created)

    @get(
        "/{slug:str}/rules",
        guards=[require_scope("rules:read")],
        summary="Earn rule versions",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def list_rules(
        self, db_session: NamedDependency[AsyncSession], program: NamedDependency[Program]
    ) -> list[RuleVersionView]:
        return [_version_view(v) for v in await list_rules(db_session, program)]

    @post(
        "/{slug:str}/rules/{version:int}/publish",
        guards=[require_scope("rules:write")],
        status_code=HTTP_200_OK,
        summary="Publish a version from a stated time",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def publish(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        version: VersionPath,
        data: JSONBody[Publication],
    ) -> RuleVersionView:
        published = await publish_rules(
            db_session,
            program,
            version,
            data.effective_from,
            now=datetime.now(UTC),
            principal=operator(request),
        )
        return _version_view(published)

    @post(
        "/{slug:str}/members",
        guards=[require_scope("members:write")],
        summary="Enrol a member (idempotent by external id)",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **replayed(MemberView, "enrolment"),
        },
    )
    async def enrol(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        data: JSONBody[Enrolment],
    ) -> Response[MemberView]:
        member, created = await enrol_member(
            db_session, ledger, program, data, principal=operator(request)
        )
        view = await _member_view(ledger, program, member)
        return Response(view, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @get(
        "/{slug:str}/members/{external_id:str}",
        guards=[require_scope("members:read")],
        summary="A member and their balance",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show_member(
        self,
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        member: NamedDependency[Member],
    ) -> MemberView:
        return await _member_view(ledger, program, member)

    @post(
        "/{slug:str}/purchases",
        guards=[require_scope("purchases:write")],
        summary="Record a purchase (idempotent by order id)",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **replayed(PurchaseOutcome, "purchase (the same order id)"),
        },
    )
    async def purchase(
        self,
        request: Request[Any, Any, Any],
        slug: SlugPath,
        data: JSONBody[PurchaseEvent],
    ) -> Response[PurchaseOutcome]:
        # The hot write: no ORM session; the intake records concurrent
        # requests' purchases (and their audit lines) in one transaction.
        state = request.app.state
        program = await state.programs.get(slug, principal=operator(request))
        outcome = await state.intake.record(program, data, operator(request))
        return created_or_replayed(outcome)

    @post(
        "/{slug:str}/purchases/{order_id:str}/returns",
        guards=[require_scope("purchases:write")],
        summary="Return (part of) a purchase (idempotent by return id)",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **replayed(ReturnOutcome, "return (the same return id)"),
        },
    )
    async def return_(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        order_id: OrderIdPath,
        data: JSONBody[ReturnEvent],
    ) -> Response[ReturnOutcome]:
        outcome = await return_purchase(
            db_session, ledger, program, order_id, data, principal=operator(request)
        )
        return created_or_replayed(outcome)

    @post(
        "/{slug:str}/rewards",
        guards=[require_scope("programs:write")],
        status_code=HTTP_201_CREATED,
        summary="Add a reward to the catalog (idempotent by SKU: 200 when it is there as asked)",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **found_again(
                RewardView, "The same reward: the catalog holds the SKU with these fields"
            ),
        },
    )
    async def add_catalog_reward(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[RewardSpec],
    ) -> Response[RewardView]:
        reward, created = await add_reward(db_session, program, data, principal=operator(request))
        return created_or_found(RewardView.of(reward), created)

    @post(
        "/{slug:str}/holds/{hold_id:uuid}/capture",
        guards=[require_scope("purchases:write")],
        status_code=HTTP_200_OK,
        summary="Capture held points (all, or part: the rest is released)",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def capture(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        hold_id: HoldIdPath,
        data: JSONBody[Capture],
    ) -> HoldView:
        return await capture_hold(
            db_session,
            ledger,
            program,
            hold_id,
            data,
            datetime.now(UTC),
            principal=operator(request),
        )

    @post(
        "/{slug:str}/holds/{hold_id:uuid}/release",
        guards=[require_scope("purchases:write")],
        status_code=HTTP_200_OK,
        summary="Release held points",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def release(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        hold_id: HoldIdPath,
    ) -> HoldView:
        return await release_hold(
            db_session, ledger, program, hold_id, datetime.now(UTC), principal=operator(request)
        )

    @post(
        "/{slug:str}/tiers",
        guards=[require_scope("programs:write")],
        status_code=HTTP_201_CREATED,
        summary="Add a tier to the ladder (idempotent by code: 200 when it is there as asked)",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **found_again(TierSpec, "The same tier: the ladder holds the code with these fields"),
        },
    )
    async def add_tier(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[TierSpec],
    ) -> Response[TierSpec]:
        _, created = await define_tier(db_session, program, data, principal=operator(request))
        return created_or_found(data, created)

    @post(
        "/{slug:str}/thresholds",
        guards=[require_scope("programs:write")],
        status_code=HTTP_201_CREATED,
        summary="Add a spend threshold that grants bonus points once per window (idempotent"
        " by code: 200 when it is there as asked)",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **found_again(
                ThresholdSpec, "The same threshold: the program holds the code with these fields"
            ),
        },
    )
    async def add_threshold(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[ThresholdSpec],
    ) -> Response[ThresholdSpec]:
        _, created = await define_threshold(db_session, program, data, principal=operator(request))
        return created_or_found(data, created)

    @post(
        "/{slug:str}/events",
        guards=[require_scope("events:write")],
        summary="Record a behaviour event (idempotent by event id): points within caps and budget",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **replayed(EventOutcome, "event (the same event id)"),
        },
    )
    async def behaviour_event(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        data: JSONBody[BehaviourEvent],
    ) -> Response[EventOutcome]:
        outcome = await record_event(
            db_session, ledger, program, data, datetime.now(UTC), principal=operator(request)
        )
        return created_or_replayed(outcome)

    @post(
        "/{slug:str}/members/{external_id:str}/adjustments",
        guards=[require_scope("members:write")],
        summary="Add or take points by hand, with a reason (idempotent by adjustment id)",
        description="With `corrects` (a transfer of the program's ledger), a finance"
        " correction: it posts now, in the open period, with code 300 and metadata"
        " `corrects`; a transfer that is not the program's: 422 corrected-transfer-not-found,"
        " nothing written.",
        responses={
            **problem_responses(*OPERATOR_WRITE),
            **replayed(AdjustmentOutcome, "adjustment (the same adjustment id)"),
        },
    )
    async def adjust(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        member: NamedDependency[Member],
        data: JSONBody[Adjustment],
    ) -> Response[AdjustmentOutcome]:
        outcome = await adjust_points(
            db_session, ledger, program, member, data, principal=operator(request)
        )
        return created_or_replayed(outcome)

    @post(
        "/{slug:str}/rules/{version:int}/simulate",
        guards=[require_scope("rules:read")],
        status_code=HTTP_200_OK,
        summary="Reprice the last days' purchases under a version, beside what they earned",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def simulate_rules(
        self,
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        version: VersionPath,
        days: Annotated[
            int,
            QueryParameter(
                ge=1, le=730, description="How many days back to reprice the purchases of."
            ),
        ] = 30,
    ) -> SimulationReport:
        return await simulate(db_session, program, version, days, datetime.now(UTC))

    @get(
        "/{slug:str}/members/{external_id:str}/export",
        guards=[require_scope("members:read")],
        summary="All of a member's data, ledger history included",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def export(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        member: NamedDependency[Member],
    ) -> MemberExport:
        return await export_member(
            db_session,
            ledger,
            program,
            member,
            datetime.now(UTC),
            principal=operator(request),
            others=MEMBER_DATA,
        )

    @post(
        "/{slug:str}/members/{external_id:str}/erase",
        guards=[require_scope("members:write")],
        status_code=HTTP_200_OK,
        summary="Erase a member's personal data (the ledger keeps a pseudonymous record)",
        description="Answers the pseudonym now in the member's place. Idempotent: once the"
        " member is erased, no member goes by the external id, and the same request again"
        " answers the pseudonym of the id's last erased member, writing nothing. An id never"
        " enrolled: 404.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def erase(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        external_id: ExternalIdPath,
    ) -> dict[str, str]:
        alias = await erase_by_external_id(
            db_session, program, external_id, principal=operator(request), others=MEMBER_DATA
        )
        return {"pseudonym": alias}
