"""The redemption value of a point, as it stood at each instant.

A program's point value (``programs.point_value_minor``: minor units of its
currency per point) is set when it opens and may change later
(``rewards.program_settings``). Finance values the outstanding points of a
past date at the value in force on that date, so every value is kept with
the instant it took effect from (``point_values``): one row from the
program's start, one per change from the moment of the change. The value is
NUMERIC(18, 6): a value is rounded to 6 decimal places, half up, once, when
it is stored, and read back exactly.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from ledger.ids import new_id
from rewards.models import PointValue

#: point_value_minor is stored as NUMERIC(18, 6): 12 digits before the point.
POINT_VALUE_LIMIT = Decimal(10**12)
_SCALE = Decimal("0.000001")


def at_column_scale(value: Decimal) -> Decimal:
    """``value`` rounded as NUMERIC(18, 6) rounds it (half up); ``value``
    below 10^12 (larger ones do not fit the context)."""
    return value.quantize(_SCALE, rounding=ROUND_HALF_UP)


def check_point_value(value: Decimal) -> None:
    """Refuse (ValueError) a value the column would not keep as given: 0 or
    below, or rounding to 0 (0.0000004 would be a point worth nothing), or
    10^12 and above (999999999999.9999995 would round to 10^12, which
    overflows it). msgspec bounds numbers, not Decimals: hence this."""
    if not value.is_finite() or value <= 0:
        raise ValueError("point_value_minor: must be a number above 0")
    # Bounded before rounding too: quantizing a huge value would raise.
    if value >= POINT_VALUE_LIMIT or not 0 < at_column_scale(value) < POINT_VALUE_LIMIT:
        raise ValueError(
            "point_value_minor: must be, rounded to 6 decimal places, above 0"
            f" and below {POINT_VALUE_LIMIT}"
        )


async def record_point_value(
    session: AsyncSession, program_id: uuid.UUID, effective_from: datetime, value: Decimal
) -> None:
    """Keep ``value`` as the program's point value from ``effective_from``
    on (the same instant again: the later value, as a retried open writes
    the value it is opening with)."""
    statement = insert(PointValue).values(
        id=new_id(),
        program_id=program_id,
        effective_from=effective_from,
        point_value_minor=value,
    )
    await session.execute(
        statement.on_conflict_do_update(
            constraint="uq_point_values_in_force",
            set_={"point_value_minor": statement.excluded.point_value_minor},
        )
    )


async def value_on(session: AsyncSession, program: Program, at: datetime) -> Decimal:
    """The point value in force at ``at``: the one that took effect last at
    or before it. Before the program's first value (an instant before it
    started), the value it started with: there was no other."""
    in_force = await session.scalar(
        select(PointValue.point_value_minor)
        .where(PointValue.program_id == program.id, PointValue.effective_from <= at)
        .order_by(PointValue.effective_from.desc())
        .limit(1)
    )
    if in_force is None:
        in_force = await session.scalar(
            select(PointValue.point_value_minor)
            .where(PointValue.program_id == program.id)
            .order_by(PointValue.effective_from)
            .limit(1)
        )
    # A program opened before its values were kept has its row from the
    # migration; the column is the last word if that row were ever missing.
    return Decimal(in_force) if in_force is not None else program.point_value_minor


async def value_history(session: AsyncSession, program: Program) -> list[tuple[datetime, Decimal]]:
    """Every value the program had, with the instant it took effect, oldest first."""
    rows = await session.execute(
        select(PointValue.effective_from, PointValue.point_value_minor)
        .where(PointValue.program_id == program.id)
        .order_by(PointValue.effective_from)
    )
    return [(at, Decimal(value)) for at, value in rows.all()]
