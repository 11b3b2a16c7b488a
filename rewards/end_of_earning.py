"""The end of earning before a program's sunset.

A program that announces its end stops new earning first and lets its
members redeem what they hold until the sunset, when the rest expires
(``rewards.sunset``). From the sunset's ``earning_ends_at`` (by default the
moment it is announced; an operator may name a later instant, no later
than the sunset) every path that credits a member's wallet with new points
refuses with ``ProgramSunsetting`` (409 ``program-sunsetting``): purchases
and their threshold bonuses, behaviour events, bought points, partners'
issuance and campaign bonuses, points exchanged in from another program.
Redemptions, holds, gifts, returns, cancellations of spends and
reinstatements go on: they move points already earned.

What is compared is the earning's business time (a purchase's
``occurred_at``): a purchase made before the end of earning and reported
late still earns, until the sunset itself; from the sunset on nothing is
credited whatever its time. A cancelled sunset lifts the end of earning.

One look-up per call, by the unique index of the program's standing sunset:
a batch of purchases makes it once.

Inside a transaction the look-up serialises with a sunset being scheduled
(``rewards.sunset``): it first takes the program's end-of-earning lock in
share mode, held to the end of the earning's transaction, which the sunset
takes exclusively before it writes. A sunset scheduled after the check
waits for the earning to commit; a check made while a sunset is written
waits for its commit, and its read (a statement of its own, so a snapshot
taken after the wait) sees the sunset. The lock and the read cannot be one
statement: a statement that waited for a lock still reads with the
snapshot it took before waiting, and would miss the sunset it waited for.
So the look-up costs two statements inside a transaction (a batch of
purchases, one more per batch); on a pool, outside any transaction, it is
one, and nothing is held.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from rewards.connections import Connection, session_connection
from rewards.errors import ProgramSunsetting


@dataclass(frozen=True, slots=True)
class EndOfEarning:
    """A standing sunset's two instants: earning ends, then the program."""

    earning_ends_at: datetime
    sunset_at: datetime

    def refusal(self, slug: str, earned_at: datetime, now: datetime) -> ProgramSunsetting | None:
        """The refusal of points earned at ``earned_at`` and credited at
        ``now`` in the program ``slug``, or None if they may be credited."""
        if now >= self.sunset_at:
            return ProgramSunsetting(
                f"program {slug!r} ended at {self.sunset_at.isoformat()}:"
                " nothing is earned any more"
            )
        if earned_at >= self.earning_ends_at:
            return ProgramSunsetting(
                f"program {slug!r} is ending: earning ended at"
                f" {self.earning_ends_at.isoformat()}; points already earned can be"
                f" redeemed until {self.sunset_at.isoformat()}"
            )
        return None


#: Where the look-up runs: a connection (inside its transaction) or a pool.
Database: TypeAlias = "Connection | asyncpg.Pool"

#: An advisory lock's first key, the program's id hashed the second: the
#: program's end of earning ("EN"), shared by earnings, exclusive to a
#: sunset being scheduled.
END_OF_EARNING_LOCK = 0x454E


async def lock_end_of_earning(connection: Connection, program_id: uuid.UUID) -> None:
    """Wait for every earning of the program checked and not yet committed,
    and hold the ones to come until this transaction ends: a sunset's write."""
    await connection.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))", END_OF_EARNING_LOCK, str(program_id)
    )


async def end_of_earning(db: Database, program_id: uuid.UUID) -> EndOfEarning | None:
    """The program's end of earning, if a sunset stands (scheduled or done);
    on a connection, serialised with a sunset being scheduled (above)."""
    if not isinstance(db, asyncpg.Pool):
        await db.execute(
            "SELECT pg_advisory_xact_lock_shared($1, hashtext($2))",
            END_OF_EARNING_LOCK,
            str(program_id),
        )
    row = await db.fetchrow(
        "SELECT earning_ends_at, sunset_at FROM program_sunsets"
        " WHERE program_id = $1 AND status <> 'cancelled'",
        program_id,
    )
    if row is None:
        return None
    return EndOfEarning(earning_ends_at=row["earning_ends_at"], sunset_at=row["sunset_at"])


async def check_earning(
    db: Database, program_id: uuid.UUID, slug: str, earned_at: datetime, now: datetime
) -> None:
    """Refuse (``ProgramSunsetting``) points earned at ``earned_at`` in a
    program whose earning has ended; the one check every earn path makes."""
    end = await end_of_earning(db, program_id)
    refusal = end.refusal(slug, earned_at, now) if end is not None else None
    if refusal is not None:
        raise refusal


async def check_earning_in(
    session: AsyncSession, program: Program, earned_at: datetime, now: datetime
) -> None:
    """``check_earning`` inside the session's transaction."""
    await check_earning(await session_connection(session), program.id, program.slug, earned_at, now)
