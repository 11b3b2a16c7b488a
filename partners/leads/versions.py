"""The program's versions of lead scoring criteria and of the routing
configuration: numbered 1, 2, ... per program, the latest in force, read
newest first. One place for both tables, which differ only in their
document."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from partners.leads.models import LeadRoutingVersion, LeadScoringVersion

V = TypeVar("V", LeadRoutingVersion, LeadScoringVersion)
Table = type[LeadRoutingVersion] | type[LeadScoringVersion]
#: The most versions a list shows.
LISTED = 100


async def next_version(session: AsyncSession, table: Table, program: Program) -> int:
    latest = await session.scalar(
        select(func.max(table.version)).where(table.program_id == program.id)
    )
    return (latest or 0) + 1


def latest_column(table: Table, column: Any, program: Program) -> Any:
    """The program's latest version's ``column`` (a scalar subquery)."""
    return (
        select(column)
        .where(table.program_id == program.id)
        .order_by(table.version.desc())
        .limit(1)
        .scalar_subquery()
    )


async def recent_versions(session: AsyncSession, table: type[V], program: Program) -> Sequence[V]:
    """The program's versions, newest first, at most ``LISTED``."""
    found = await session.scalars(
        select(table)
        .where(table.program_id == program.id)
        .order_by(table.version.desc())
        .limit(LISTED)
    )
    return found.all()
