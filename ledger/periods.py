"""Closed periods: how far back a ledger is locked.

``ledgers.closed_through`` (migration 0038) is an instant: the posting
function (``ledger/sql/ledger_create_transfers.sql``) refuses, with
``business_time_in_closed_period``, every transfer whose business time
(``effective_at``, else now) is at or before it. None: nothing is closed.

The boundary moves only under the ledger's advisory lock, the one every
batch of the ledger takes first: no batch of the ledger is in flight while
it moves, and a batch that waited for the lock reads the new boundary. The
lock is a transaction's (``pg_advisory_xact_lock``): the caller's
transaction holds it until it ends, so the move commits, or rolls back,
with the caller's own records of it (the finance periods, their audit
lines), and no batch of the ledger posts between the two.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import TypeAlias

import asyncpg

Connection: TypeAlias = "asyncpg.Connection | asyncpg.pool.PoolConnectionProxy"

#: The key of the ledger's advisory lock (with the ledger's id), as the
#: posting function takes it.
LEDGER_LOCK = 1279607879

#: PostgreSQL's timestamps count microseconds: the last instant before another.
RESOLUTION = timedelta(microseconds=1)


def closes(boundary: datetime | None, end: datetime) -> bool:
    """Whether ``boundary`` (a ledger's ``closed_through``) closes the span
    that ends (exclusive) at ``end``: its last instant is at or before it."""
    return boundary is not None and boundary >= end - RESOLUTION


class UnknownLedger(LookupError):
    """No ledger has this id."""


class BoundaryInFuture(ValueError):
    """Closing through an instant that has not come would refuse every new
    transfer until then."""


@contextlib.asynccontextmanager
async def _transaction(conn: Connection) -> AsyncIterator[None]:
    """The caller's open transaction, or one of its own."""
    if conn.is_in_transaction():
        yield
        return
    async with conn.transaction():
        yield


async def _locked_boundary(conn: Connection, ledger: int) -> tuple[datetime | None, datetime]:
    await conn.execute("SELECT pg_advisory_xact_lock($1, $2)", LEDGER_LOCK, ledger)
    row = await conn.fetchrow(
        "SELECT closed_through, now() AS now FROM ledgers WHERE id = $1", ledger
    )
    if row is None:
        raise UnknownLedger(f"no ledger {ledger}")
    return row["closed_through"], row["now"]


async def closed_through(conn: Connection, ledger: int, *, hold: bool = False) -> datetime | None:
    """The ledger's boundary: transfers at or before it are refused; None
    when nothing is closed. With ``hold``, under the ledger's lock, taken
    for the rest of the caller's transaction (which must be open): the
    boundary cannot move, nor a batch of the ledger post, until it ends."""
    if hold:
        if not conn.is_in_transaction():
            raise RuntimeError("hold the ledger's boundary inside a transaction")
        boundary, _ = await _locked_boundary(conn, ledger)
        return boundary
    found: datetime | None = await conn.fetchval(
        "SELECT closed_through FROM ledgers WHERE id = $1", ledger
    )
    return found


async def close_through(conn: Connection, ledger: int, at: datetime) -> datetime:
    """Close the ledger through ``at`` (inclusive) and answer its boundary.
    The boundary never moves back here (``reopen_from`` does that): closing
    through an earlier instant than it changes nothing. ``at`` must be in
    the past (``BoundaryInFuture``)."""
    async with _transaction(conn):
        boundary, now = await _locked_boundary(conn, ledger)
        if at >= now:
            raise BoundaryInFuture(f"cannot close ledger {ledger} through {at.isoformat()}")
        if boundary is not None and boundary >= at:
            return boundary
        # The lots of the movements not settled yet are written before the close:
        # a closed period's lot aggregates do not change after it.
        await conn.execute("SELECT * FROM ledger_settle_ledger_lots($1)", ledger)
        await conn.execute("UPDATE ledgers SET closed_through = $2 WHERE id = $1", ledger, at)
        return at


async def reopen_from(conn: Connection, ledger: int, at: datetime) -> datetime | None:
    """Open the ledger from ``at`` on: its boundary becomes the last instant
    before ``at`` if it was later. Answers the boundary."""
    async with _transaction(conn):
        boundary, _ = await _locked_boundary(conn, ledger)
        if boundary is None or boundary < at:
            return boundary
        moved = at - RESOLUTION
        await conn.execute("UPDATE ledgers SET closed_through = $2 WHERE id = $1", ledger, moved)
        return moved
