"""Reads of lots that the liability report needs beside ``ledger.lots``:
a ledger's time zone (its accounting days) and the points each lot account
held at the end of a day (for breakdowns by something of the account's
owner, such as a member's tier, which the daily aggregates do not carry).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol

from ledger.lots import Connection, settle_lots


class Fetches(Protocol):
    """An asyncpg connection, a pool's proxy of one, or a pool."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...


@dataclass(frozen=True)
class AccountPoints:
    account_id: uuid.UUID
    points: int


async def ledger_time_zone(db: Fetches, ledger: int) -> str:
    """The zone the ledger's accounting days are dates of (UTC if it has none)."""
    zone = await db.fetchval("SELECT time_zone FROM ledgers WHERE id = $1", ledger)
    return str(zone) if zone is not None else "UTC"


# When no lot moved after the day, the lots' remaining points are the
# answer, read from the partial index of lots with points left; otherwise
# the movements up to the day are summed (a scan of the ledger's movements).
_CURRENT = """
    SELECT account_id, sum(remaining)::bigint AS points
    FROM lots WHERE ledger = $1 AND is_open
    GROUP BY account_id ORDER BY account_id"""
_AS_OF = """
    SELECT l.account_id, sum(m.points)::bigint AS points
    FROM lot_movements m JOIN lots l ON l.id = m.lot_id
    WHERE l.ledger = $1 AND m.day <= $2
    GROUP BY l.account_id HAVING sum(m.points) > 0 ORDER BY l.account_id"""
_LAST_DAY = "SELECT max(day) FROM lot_daily_movements WHERE ledger = $1"


async def outstanding_by_account(
    db: Connection, *, ledger: int, as_of: date
) -> list[AccountPoints]:
    """Each lot account's points at the end of ``as_of`` (accounts with none left out)."""
    await settle_lots(db, ledger=ledger)
    last_day = await db.fetchval(_LAST_DAY, ledger)
    if last_day is None:
        return []
    if as_of >= last_day:
        rows = await db.fetch(_CURRENT, ledger)
    else:
        rows = await db.fetch(_AS_OF, ledger, as_of)
    return [AccountPoints(r["account_id"], int(r["points"])) for r in rows]
