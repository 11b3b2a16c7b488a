"""Reads of the ledger for finance's journals: the money ledgers of a
program, and a period's posted transfers of one ledger, one row each,
streamed from a server-side cursor (memory stays flat whatever the
period's size).

A period's transfers are those whose business time
(``coalesce(effective_at, created_at)``) falls in [start, end): plain
transfers and the rows that post a pending transfer (their own amount);
pending and void rows move nothing. They are found through the ledger's
accounts (each transfer has one debit account, and the debit index is on
(account, timestamp)), so the read touches that ledger's rows only.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias

import asyncpg

Connection: TypeAlias = "asyncpg.Connection | asyncpg.pool.PoolConnectionProxy"

#: Rows fetched from the cursor per round trip.
PREFETCH = 10_000

_MOVES_NOTHING = 2 | 8  # pending, void_pending


@dataclass(frozen=True)
class NamedLedger:
    id: int
    name: str
    asset_scale: int


async def ledgers_named_from(connection: Connection, prefix: str) -> list[NamedLedger]:
    """The ledgers whose name starts with ``prefix`` (taken literally), by name."""
    rows = await connection.fetch(
        "SELECT id, name, asset_scale FROM ledgers"
        " WHERE left(name, length($1)) = $1 AND id <> 0 ORDER BY name",
        prefix,
    )
    return [NamedLedger(row["id"], row["name"], row["asset_scale"]) for row in rows]


_PERIOD_TRANSFERS = f"""
SELECT t.id, t.code, d.code AS debit_code, c.code AS credit_code, t.amount,
       coalesce(t.effective_at, t.created_at) AS business_at
FROM transfers t
JOIN accounts d ON d.id = t.debit_account_id
JOIN accounts c ON c.id = t.credit_account_id
WHERE t.debit_account_id = ANY (ARRAY(SELECT id FROM accounts WHERE ledger = $1))
  AND t.ledger = $1
  AND t.flags & {_MOVES_NOTHING} = 0
  AND coalesce(t.effective_at, t.created_at) >= $2
  AND coalesce(t.effective_at, t.created_at) < $3
ORDER BY t.code, business_at, t."timestamp"
"""


async def period_transfers(
    connection: Connection, *, ledger: int, start: datetime, end: datetime
) -> AsyncIterator[tuple[uuid.UUID, int, int, int, int, datetime]]:
    """(id, code, debit account code, credit account code, amount, business
    time) of every posted transfer of the period, by code, then business
    time, then ledger order. Call inside a transaction (a cursor's)."""
    async for row in connection.cursor(_PERIOD_TRANSFERS, ledger, start, end, prefetch=PREFETCH):
        yield row[0], row[1], row[2], row[3], row[4], row[5]
