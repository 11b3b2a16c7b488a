"""What a draft of the earn rules would have done: the recorded purchases of
the last days priced again under the draft, beside what they earned."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Member, Program
from rewards.models import Purchase
from rewards.rule_versions import get_version, parse_rules
from rewards.rules import Basket, Item, points_for_return, quote_purchase

_CURRENT = "What the purchases earned when they were recorded."
_DRAFT = "What they would earn under the version priced (members at their present tier)."


class Totals(msgspec.Struct, kw_only=True, frozen=True):
    points: Annotated[int, msgspec.Meta(description="Points earned, net of returns.")]
    liability_minor: Annotated[
        int,
        msgspec.Meta(
            description="The points' redemption value, the liability they create, in minor"
            " units of the program's currency."
        ),
    ]


class TierLine(msgspec.Struct, kw_only=True, frozen=True):
    tier: Annotated[
        str | None, msgspec.Meta(description="The tier's code; none for members without one.")
    ]
    members: Annotated[int, msgspec.Meta(description="Members of the tier who purchased.")]
    purchases: Annotated[int, msgspec.Meta(description="Their purchases in the period.")]
    current: Annotated[Totals, msgspec.Meta(description=_CURRENT)]
    draft: Annotated[Totals, msgspec.Meta(description=_DRAFT)]


class SimulationReport(msgspec.Struct, kw_only=True, frozen=True):
    version: Annotated[int, msgspec.Meta(description="The rule version priced.")]
    days: Annotated[int, msgspec.Meta(description="The period: this many days back from now.")]
    purchases: Annotated[int, msgspec.Meta(description="Purchases recorded in the period.")]
    current: Annotated[Totals, msgspec.Meta(description=_CURRENT)]
    draft: Annotated[Totals, msgspec.Meta(description=_DRAFT)]
    by_tier: Annotated[
        list[TierLine],
        msgspec.Meta(
            description="The same by the members' present tier, members without a tier last."
        ),
    ]


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
