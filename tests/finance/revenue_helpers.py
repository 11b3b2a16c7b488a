"""Synthetic sales and cohorts for the revenue tests: purchases whose points
were posted at a given time, and lot movements handed to a run instead of
the ledger's (``recognise_period(development=...)``)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from core.models import Member, Program
from finance.revenue.breakage import CohortMovement
from ledger.lots import CohortMonth
from rewards.connections import Connection
from rewards.models import Purchase

_orders = itertools.count(1)


def month(n: int) -> date:
    """Month n counted from January 2025 (1 = January 2025)."""
    return date(2025 + (n - 1) // 12, (n - 1) % 12 + 1, 1)


def at(n: int, day: int = 15) -> datetime:
    first = month(n)
    return datetime(first.year, first.month, day, 12, tzinfo=UTC)


async def add_member(session: AsyncSession, program: Program) -> Member:
    member = Member(
        program_id=program.id,
        external_id=f"m-{uuid.uuid4().hex[:8]}",
        wallet_account_id=uuid.uuid4(),
    )
    session.add(member)
    await session.flush()
    return member


async def add_sale(
    session: AsyncSession,
    program: Program,
    member: Member,
    *,
    price: int,
    points: int,
    posted_at: datetime | None,
    returned: int = 0,
    reversed_points: int = 0,
) -> Purchase:
    purchase = Purchase(
        program_id=program.id,
        member_id=member.id,
        order_id=f"O-{next(_orders)}",
        occurred_at=(posted_at or datetime.now(UTC)) - timedelta(days=30),
        amount_minor=price,
        currency=program.currency,
        items=[],
        points=points,
        matures_at=posted_at or datetime.now(UTC),
        posted_at=posted_at,
        returned_minor=returned,
        points_reversed=reversed_points,
    )
    session.add(purchase)
    await session.flush()
    return purchase


class Cohorts:
    """Lot movements of synthetic cohorts: what the ledger's aggregates
    would give a run."""

    def __init__(self) -> None:
        self.moves: list[CohortMonth] = []

    def earn(self, cohort: int, points: int) -> Cohorts:
        self.moves.append(
            CohortMonth(month(cohort), month(cohort), TransferCode.PURCHASE_EARN, points)
        )
        return self

    def redeem(self, cohort: int, in_month: int, points: int) -> Cohorts:
        self.moves.append(
            CohortMonth(month(cohort), month(in_month), TransferCode.CATALOG_REDEMPTION, -points)
        )
        return self

    async def read(
        self, connection: Connection, ledger: int, through: date
    ) -> Sequence[CohortMovement]:
        return [m for m in self.moves if m.month <= through]
