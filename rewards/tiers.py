"""Tiers and threshold rewards.

A program's ladder qualifies members on spend (minor units, net of returns) or
on points earned (net of reversals) over a window: the calendar year, the
rolling 12 months, or the year from each enrolment anniversary. A member moves
up at once when a purchase crosses a threshold (thresholds are inclusive);
moves down only when evaluated after a window closed and its grace period
passed, and then one tier at a time. Windows include their start and exclude
their end.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import Ledger, Transfer
from rewards.codes import TransferCode, derived_id
from rewards.models import Member, Program, Purchase, ThresholdReward, Tier
from rewards.programs import record_transfers

Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,49}$")]


class TierSpec(msgspec.Struct, kw_only=True, frozen=True):
    code: Code
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    rank: Annotated[int, msgspec.Meta(ge=1, le=100)]
    threshold: Annotated[int, msgspec.Meta(ge=0)]
    perks: list[str] = []


class ThresholdSpec(msgspec.Struct, kw_only=True, frozen=True):
    code: Code
    amount_minor: Annotated[int, msgspec.Meta(gt=0)]
    bonus_points: Annotated[int, msgspec.Meta(gt=0)]


class TierProgress(msgspec.Struct, kw_only=True, frozen=True):
    tier: str | None
    perks: list[Any]
    basis: str
    qualifying: int
    window_start: datetime
    window_end: datetime
    next_tier: str | None
    #: How much more spend (minor units) or points reaches the next tier.
    needed: int | None
    #: By when: the end of the current window.
    by: datetime | None


def add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February in a year without one
        return moment.replace(year=moment.year + years, day=28)


def window_at(program: Program, member: Member, at: datetime) -> tuple[datetime, datetime]:
    """The qualifying window containing ``at``: [start, end)."""
    at = at.astimezone(UTC)
    if program.tier_window == "calendar_year":
        start = datetime(at.year, 1, 1, tzinfo=UTC)
        return start, add_years(start, 1)
    if program.tier_window == "anniversary":
        enrolled = member.created_at.astimezone(UTC)
        years = max(0, at.year - enrolled.year)
        start = add_years(enrolled, years)
        if start > at:
            start = add_years(enrolled, years - 1)
        return start, add_years(start, 1)
    # rolling 12 months: the year up to and including ``at``
    return add_years(at, -1), at + timedelta(microseconds=1)


async def qualifying(
    session: AsyncSession, program: Program, member: Member, start: datetime, end: datetime
) -> int:
    return await _window_total(session, member, start, end, program.tier_basis)


async def _window_total(
    session: AsyncSession, member: Member, start: datetime, end: datetime, basis: str
) -> int:
    """Spend (net of returns) or points (net of reversals) in [start, end)."""
    measure = (
        Purchase.amount_minor - Purchase.returned_minor
        if basis == "spend"
        else Purchase.points - Purchase.points_reversed
    )
    total = await session.scalar(
        select(func.coalesce(func.sum(measure), 0)).where(
            Purchase.member_id == member.id,
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


async def define_tier(session: AsyncSession, program: Program, spec: TierSpec) -> Tier:
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
    return tier


async def define_threshold(
    session: AsyncSession, program: Program, spec: ThresholdSpec
) -> ThresholdReward:
    reward = ThresholdReward(
        program_id=program.id,
        code=spec.code,
        amount_minor=spec.amount_minor,
        bonus_points=spec.bonus_points,
    )
    session.add(reward)
    await session.flush()
    return reward


def _qualified_tier(tiers: list[Tier], amount: int) -> Tier | None:
    reached = [t for t in tiers if amount >= t.threshold]
    return reached[-1] if reached else None


async def after_purchase(
    session: AsyncSession, ledger: Ledger, program: Program, member: Member, at: datetime
) -> None:
    """Upgrade at once if the purchase crossed a tier's threshold, and grant
    the threshold rewards it crossed (each once per member and window)."""
    # One purchase of a member at a time from here: each then counts the
    # ones committed before it, so a threshold crossed by concurrent
    # purchases is seen by the last of them, never missed by all.
    await session.execute(select(Member.id).where(Member.id == member.id).with_for_update())
    start, end = window_at(program, member, at)
    amount = await qualifying(session, program, member, start, end)
    tiers = await ladder(session, program)
    reached = _qualified_tier(tiers, amount)
    current = next((t for t in tiers if t.code == member.tier_code), None)
    if reached is not None and (current is None or reached.rank > current.rank):
        member.tier_code, member.tier_since = reached.code, at
    spend = amount if program.tier_basis == "spend" else None
    await _grant_thresholds(session, ledger, program, member, start, end, spend)
    await session.flush()


async def _grant_thresholds(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    start: datetime,
    end: datetime,
    spend: int | None,
) -> None:
    thresholds = list(
        await session.scalars(
            select(ThresholdReward).where(ThresholdReward.program_id == program.id)
        )
    )
    if not thresholds:
        return
    if spend is None:  # the ladder qualifies on points: sum the spend here
        spend = await _window_total(session, member, start, end, "spend")
    for threshold in thresholds:
        if spend < threshold.amount_minor:
            continue
        transfer_id = derived_id(
            program.id, "threshold", threshold.code, member.external_id, start.isoformat()
        )
        # The unique key makes concurrent purchases agree on one grant: the
        # loser waits for the winner's commit and then inserts nothing.
        granted = await session.scalar(
            text(
                "INSERT INTO threshold_grants (id, threshold_id, member_id, window_start,"
                " transfer_id) VALUES (:id, :threshold, :member, :start, :transfer)"
                " ON CONFLICT DO NOTHING RETURNING id"
            ),
            {
                "id": transfer_id,
                "threshold": threshold.id,
                "member": member.id,
                "start": start,
                "transfer": transfer_id,
            },
        )
        if granted is None:
            continue
        await record_transfers(
            ledger,
            [
                Transfer(
                    id=transfer_id,
                    debit_account_id=program.issuance_account_id,
                    credit_account_id=member.wallet_account_id,
                    amount=threshold.bonus_points,
                    ledger=program.ledger_id,
                    code=TransferCode.ADJUSTMENT,
                    metadata={"threshold": threshold.code},
                )
            ],
        )


async def evaluate_tiers(session: AsyncSession, program: Program, now: datetime) -> int:
    """Downgrade, one tier at a time, the members whose last closed window
    (after its grace period) did not keep their tier; returns how many moved."""
    tiers = await ladder(session, program)
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
    if program.tier_window == "rolling_12_months":
        review = add_years(member.tier_reviewed_at or member.tier_since, 1)
        return (add_years(review, -1), review) if now >= review + grace else None
    current_start, _ = window_at(program, member, now)
    previous = window_at(program, member, current_start - timedelta(microseconds=1))
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
    start, end = window_at(program, member, now)
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
