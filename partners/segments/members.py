"""Who is in a segment as of a moment: counted in one query, exported row
by row from a server-side cursor (memory stays flat whatever the size), or
asked of one member (a joint campaign's bonus at a purchase's time)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import pyarrow as pa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from core.models import Program
from ledger.bounds import check_moment
from partners.segments.compiler import (
    EXPORT_COLUMNS,
    ResolvedSegment,
    count_query,
    export_query,
    segment_query,
)
from partners.segments.errors import InvalidSegment

#: The columns of an export (``EXPORT_COLUMNS``), typed for Parquet.
EXPORT_SCHEMA = pa.schema(
    [
        pa.field("member", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("tier", pa.string()),
        pa.field("enrolled_on", pa.date32(), nullable=False),
        pa.field("days_since_last_purchase", pa.int32()),
        pa.field("purchases", pa.int64(), nullable=False),
        pa.field("spend_minor", pa.int64(), nullable=False),
    ]
)
assert tuple(EXPORT_SCHEMA.names) == EXPORT_COLUMNS

#: Rows a server-side cursor fetches at a time.
FETCH_ROWS = 2_000


async def count_members(
    session: AsyncSession, program: Program, resolved: ResolvedSegment, as_of: datetime
) -> int:
    return int(await session.scalar(count_query(program, resolved, as_of)) or 0)


async def export_rows(
    connection: AsyncConnection, program: Program, resolved: ResolvedSegment, as_of: datetime
) -> AsyncIterator[Sequence[object]]:
    """The export's rows in member id order, read through a server-side
    cursor ``FETCH_ROWS`` at a time on ``connection`` (in a transaction of
    its own: a cursor lives in one)."""
    query = export_query(program, resolved, as_of).execution_options(yield_per=FETCH_ROWS)
    result = await connection.stream(query)
    try:
        async for row in result:
            yield tuple(row)
    finally:
        await result.close()


async def is_member(
    session: AsyncSession,
    program: Program,
    resolved: ResolvedSegment,
    member_id: uuid.UUID,
    at: datetime,
) -> bool:
    """Whether the member is in the segment at ``at``."""
    query = segment_query(program, resolved, at, member_id=member_id)
    return (await session.execute(query.limit(1))).first() is not None


def moment_of(text: str | None, now: datetime) -> datetime:
    """The moment a count or an export is taken at: ``text`` (ISO 8601 with
    its offset, in the years 1900 to 9998), or ``now``. ``InvalidSegment``
    for anything else."""
    if text is None:
        return now
    try:
        moment = datetime.fromisoformat(text)
        check_moment("as_of", moment)
    except ValueError as error:
        raise InvalidSegment(f"as_of: {error}") from None
    if moment.tzinfo is None:
        raise InvalidSegment("as_of: give the time's offset (e.g. 2026-01-31T23:59:59Z)")
    return moment
