"""What a draft of the earn rules would have done: the recorded purchases of
the last days priced again under the draft, beside what they earned."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from rewards.models import Member, Program, Purchase
from rewards.rule_versions import get_version, parse_rules
from rewards.rules import Basket, Item, points_for_return, quote_purchase


class Totals(msgspec.Struct, kw_only=True, frozen=True):
    points: int
    #: The points' redemption value: the liability they create, minor units.
    liability_minor: int


class TierLine(msgspec.Struct, kw_only=True, frozen=True):
    tier: str | None
    members: int
    purchases: int
    current: Totals
    draft: Totals


class SimulationReport(msgspec.Struct, kw_only=True, frozen=True):
    version: int
    days: int
    purchases: int
    current: Totals
    draft: Totals
    by_tier: list[TierLine]


async def simulate(
    session: AsyncSession, program: Program, version: int, days: int, now: datetime
) -> SimulationReport:
    """Reprice the purchases of the last ``days`` under ``version`` (members at
    their present tier), beside the points they earned; nothing is written."""
    rules = parse_rules((await get_version(session, program, version)).rules)
    rows = (
        await session.execute(
            select(Purchase, Member.tier_code)
            .join(Member, Member.id == Purchase.member_id)
            .where(
                Purchase.program_id == program.id,
                Purchase.occurred_at >= now - timedelta(days=days),
                Purchase.occurred_at <= now,
            )
        )
    ).all()
    current: dict[str | None, int] = defaultdict(int)
    draft: dict[str | None, int] = defaultdict(int)
    counts: dict[str | None, int] = defaultdict(int)
    members: dict[str | None, set[object]] = defaultdict(set)
    for purchase, tier in rows:
        basket = Basket(
            amount_minor=purchase.amount_minor,
            occurred_at=purchase.occurred_at,
            items=msgspec.convert(purchase.items, tuple[Item, ...]),
            minor_per_major=program.minor_per_major,
        )
        # Both sides net returns the way the ledger did: the purchase priced
        # whole, less the returned share (``return_purchase``).
        current[tier] += purchase.points - purchase.points_reversed
        priced = quote_purchase(rules, basket, tier).points
        draft[tier] += priced - points_for_return(
            priced, purchase.amount_minor, purchase.returned_minor
        )
        counts[tier] += 1
        members[tier].add(purchase.member_id)
    value = program.point_value_minor

    def totals(points: int) -> Totals:
        return Totals(points=points, liability_minor=int(Decimal(points) * value))

    return SimulationReport(
        version=version,
        days=days,
        purchases=len(rows),
        current=totals(sum(current.values())),
        draft=totals(sum(draft.values())),
        by_tier=[
            TierLine(
                tier=tier,
                members=len(members[tier]),
                purchases=counts[tier],
                current=totals(current[tier]),
                draft=totals(draft[tier]),
            )
            for tier in sorted(counts, key=lambda t: (t is None, t or ""))
        ],
    )
