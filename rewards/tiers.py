"""Tiers and threshold rewards.

A program's ladder qualifies members on spend (minor units, net of returns) or
on points earned (net of reversals) over a window: the calendar year, the
rolling 12 months, or the year from each enrolment anniversary. A member moves
up at once when a purchase crosses a threshold (thresholds are inclusive);
moves down only when evaluated after a window closed and its grace period
passed, and then one tier at a time. Windows include their start and exclude
their end.

Every move is recorded in the history of tiers (``rewards.tier_history``) by
the database, in the transaction of the move: a move sets ``tier_since`` with
``tier_code`` (the purchase's business time on the way up, the evaluation's
``now`` on the way down), and that instant is the one the history keeps, and
from which the member's wallet is in the new tier's class of the ledger.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Protocol, TypeVar

import msgspec
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, calendar
from core.errors import AlreadyExists
from core.models import Member, Program
from core.principal import Principal
from core.programs import lock_program
from ledger.bounds import NonEmpty, NonNegativeBigInt, PositiveBigInt, Text100, Text200
from rewards.models import Purchase, ThresholdReward, Tier

Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,49}$")]


_BASIS = (
    "spend in minor units of the program's currency (net of returns) or points earned (net"
    " of reversals), as the program's tier basis says"
)


class TierSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    code: Annotated[
        Code,
        msgspec.Meta(
            description="The tier's code (e.g. gold): lowercase letters, digits, _ and -,"
            " at most 50 characters."
        ),
    ]
    name: Annotated[Text100, NonEmpty, msgspec.Meta(description="A name for people to read.")]
    rank: Annotated[
        int,
        msgspec.Meta(
            ge=1, le=100, description="The tier's place in the ladder: a higher rank is above."
        ),
    ]
    threshold: Annotated[
        NonNegativeBigInt,
        msgspec.Meta(
            description=f"What qualifies for the tier within a window (inclusive): {_BASIS}."
        ),
    ]
    perks: Annotated[
        list[Text200],
        msgspec.Meta(max_length=50, description="What the tier gives, as shown to members."),
    ] = []


class ThresholdSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    code: Annotated[
        Code,
        msgspec.Meta(
            description="The threshold reward's code: lowercase letters, digits, _ and -,"
            " at most 50 characters."
        ),
    ]
    amount_minor: Annotated[
        PositiveBigInt,
        msgspec.Meta(
            description="The spend within a qualifying window, in minor units, that earns"
            " the bonus (inclusive)."
        ),
    ]
    bonus_points: Annotated[
        PositiveBigInt,
        msgspec.Meta(
            description="Points granted, once per member and window, when the spend is reached."
        ),
    ]


class TierProgress(msgspec.Struct, kw_only=True, frozen=True):
    tier: Annotated[
        str | None, msgspec.Meta(description="The member's tier code; none below every tier.")
    ]
    perks: Annotated[list[Any], msgspec.Meta(description="The perks of the member's tier.")]
    basis: Annotated[
        str,
        msgspec.Meta(
            description="What qualifies: `spend` (minor units, net of returns) or `points`"
            " (earned, net of reversals)."
        ),
    ]
    qualifying: Annotated[
        int,
        msgspec.Meta(description="What the member has in the current window, by `basis`."),
    ]
    window_start: Annotated[
        datetime, msgspec.Meta(description="When the current qualifying window began.")
    ]
    window_end: Annotated[
        datetime, msgspec.Meta(description="When it ends (the window excludes this time).")
    ]
    next_tier: Annotated[
        str | None, msgspec.Meta(description="The tier above the member's; none at the top.")
    ]
    needed: Annotated[
        int | None,
        msgspec.Meta(
            description="How much more (by `basis`) reaches the next tier; none at the top."
        ),
    ]
    by: Annotated[
        datetime | None,
        msgspec.Meta(
            description="By when `needed` must be reached: the end of the current window."
        ),
    ]


def window_at(program: Program, enrolled_at: datetime, at: datetime) -> tuple[datetime, datetime]:
    """The qualifying window containing ``at`` for a member enrolled at
    ``enrolled_at``: [start, end), counted in the program's time zone (the
    year from local 1 January, anniversaries at the local time of enrolment)."""
    zone = program.time_zone
    if program.tier_window == "calendar_year":
        return calendar.local_year(at, zone)
    if program.tier_window == "anniversary":
        years = max(0, _local_year(at, zone) - _local_year(enrolled_at, zone))
        start = calendar.add_years(enrolled_at, years, zone)
        if start > at:
            start = calendar.add_years(enrolled_at, years - 1, zone)
        return start, calendar.add_years(start, 1, zone)
    # rolling 12 months: the year up to and including ``at``
    return calendar.add_years(at, -1, zone), at + timedelta(microseconds=1)


def _local_year(at: datetime, zone: str) -> int:
    return at.astimezone(calendar.time_zone(zone)).year


async def qualifying(
    session: AsyncSession, program: Program, member: Member, start: datetime, end: datetime
) -> int:
    return await window_total(session, member.id, start, end, program.tier_basis)


async def window_total(
    session: AsyncSession, member_id: uuid.UUID, start: datetime, end: datetime, basis: str
) -> int:
    """Spend (net of returns) or points (net of reversals) in [start, end)."""
    measure = (
        Purchase.amount_minor - Purchase.returned_minor
        if basis == "spend"
        else Purchase.points - Purchase.points_reversed
    )
    total = await session.scalar(
        select(func.coalesce(func.sum(measure), 0)).where(
            Purchase.member_id == member_id,
            Purchase.occurred_at >= start,
            Purchase.occurred_at < end,
        )
    )
    return int(total or 0)


async def ladder(session: AsyncSession, program: Program) -> list[Tier]:
    tiers = await session.scalars(
        select(Tier).where(Tier.program_id == program.id).order_by(Tier.rank)
    )
    return list(tiers)


async def define_tier(
    session: AsyncSession, program: Program, spec: TierSpec, *, principal: Principal
) -> tuple[Tier, bool]:
    """Add a tier to the ladder, audited; and whether it is new. Idempotent
    by code: the same spec again answers the tier and writes nothing;
    another spec under the code is refused naming ``code``, and a rank
    another tier holds naming ``rank`` (by its constraint)."""
    await lock_program(session, program)
    existing = await session.scalar(
        select(Tier).where(Tier.program_id == program.id, Tier.code == spec.code)
    )
    if existing is not None:
        _refuse_other_fields(existing, spec, "a tier with this code is in the program's ladder")
        return existing, False
    tier = Tier(
        program_id=program.id,
        code=spec.code,
        name=spec.name,
        rank=spec.rank,
        threshold=spec.threshold,
        perks=list(spec.perks),
    )
    session.add(tier)
    await session.flush()
    await audit.record(
        session, principal, "tier.define", f"program:{program.slug}:tier:{spec.code}", spec
    )
    return tier, True


async def define_threshold(
    session: AsyncSession, program: Program, spec: ThresholdSpec, *, principal: Principal
) -> tuple[ThresholdReward, bool]:
    """Add a threshold reward, audited; and whether it is new. Idempotent by
    code: the same spec again answers it and writes nothing; another spec
    under the code is refused naming ``code``."""
    await lock_program(session, program)
    existing = await session.scalar(
        select(ThresholdReward).where(
            ThresholdReward.program_id == program.id, ThresholdReward.code == spec.code
        )
    )
    if existing is not None:
        _refuse_other_fields(existing, spec, "a threshold with this code is in the program")
        return existing, False
    reward = ThresholdReward(
        program_id=program.id,
        code=spec.code,
        amount_minor=spec.amount_minor,
        bonus_points=spec.bonus_points,
    )
    session.add(reward)
    await session.flush()
    await audit.record(
        session,
        principal,
        "threshold.define",
        f"program:{program.slug}:threshold:{spec.code}",
        spec,
    )
    return reward, True


def _refuse_other_fields(
    existing: Tier | ThresholdReward, spec: TierSpec | ThresholdSpec, taken: str
) -> None:
    """``AlreadyExists`` naming ``code`` if the stored record differs from
    the spec in any field (a repeat of the same spec is no conflict)."""
    fields = msgspec.structs.asdict(spec)
    if different := [name for name, value in fields.items() if getattr(existing, name) != value]:
        raise AlreadyExists(f"{taken}, with other {', '.join(different)}", field="code")


class Rung(Protocol):
    """A tier as qualifying sees it (a ``Tier`` row, or a cached copy)."""

    @property
    def code(self) -> str: ...
    @property
    def rank(self) -> int: ...
    @property
    def threshold(self) -> int: ...


RungT = TypeVar("RungT", bound=Rung)


def qualified_tier(tiers: Sequence[RungT], amount: int) -> RungT | None:
    """The highest tier whose threshold ``amount`` reaches (tiers by rank)."""
    reached = [t for t in tiers if amount >= t.threshold]
    return reached[-1] if reached else None


async def evaluate_tiers(session: AsyncSession, program: Program, now: datetime) -> int:
    """Downgrade, one tier at a time, the members whose last closed window
    (after its grace period) did not keep their tier; returns how many moved."""
    tiers = await ladder(session, program)
    # The members' rows first; the commit then takes the ledger's posting
    # lock to move the wallets of those that moved to their new tier's class
    # (migration 0053): the order a purchase takes them in, so no deadlock.
    members = await session.scalars(
        select(Member)
        .where(Member.program_id == program.id, Member.tier_code.is_not(None))
        .with_for_update(skip_locked=True)
    )
    moved = 0
    grace = timedelta(days=program.tier_grace_days)
    for member in members:
        window = _closed_window(program, member, now, grace)
        if window is None:
            continue
        start, end = window
        current = next((t for t in tiers if t.code == member.tier_code), None)
        member.tier_reviewed_at = now
        if current is None:
            continue
        if await qualifying(session, program, member, start, end) >= current.threshold:
            continue
        lower = [t for t in tiers if t.rank < current.rank]
        member.tier_code = lower[-1].code if lower else None
        member.tier_since = now
        moved += 1
    await session.flush()
    return moved


def _closed_window(
    program: Program, member: Member, now: datetime, grace: timedelta
) -> tuple[datetime, datetime] | None:
    """The window to judge the member's tier on now, if one is due."""
    assert member.tier_since is not None
    zone = program.time_zone
    if program.tier_window == "rolling_12_months":
        review = calendar.add_years(member.tier_reviewed_at or member.tier_since, 1, zone)
        return (calendar.add_years(review, -1, zone), review) if now >= review + grace else None
    current_start, _ = window_at(program, member.created_at, now)
    previous = window_at(program, member.created_at, current_start - timedelta(microseconds=1))
    if now < previous[1] + grace:
        return None
    if member.tier_since >= previous[1]:
        return None  # earned in the current window: kept until it closes
    if member.tier_reviewed_at is not None and member.tier_reviewed_at >= previous[1]:
        return None
    return previous


async def tier_progress(
    session: AsyncSession, program: Program, member: Member, now: datetime
) -> TierProgress:
    start, end = window_at(program, member.created_at, now)
    amount = await qualifying(session, program, member, start, end)
    tiers = await ladder(session, program)
    current = next((t for t in tiers if t.code == member.tier_code), None)
    above = [t for t in tiers if current is None or t.rank > current.rank]
    following = above[0] if above else None
    return TierProgress(
        tier=current.code if current else None,
        perks=list(current.perks) if current else [],
        basis=program.tier_basis,
        qualifying=amount,
        window_start=start,
        window_end=end,
        next_tier=following.code if following else None,
        needed=max(0, following.threshold - amount) if following else None,
        by=end if following else None,
    )
