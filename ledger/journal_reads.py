"""Reads of the ledger for finance's journals: the money ledgers of a
program, and a period's posted transfers of one ledger, either one row
each from a server-side cursor (``period_transfers``) or already as the
journal's CSV lines, formatted by PostgreSQL and streamed with ``COPY ...
TO STDOUT`` (``period_lines_csv``: the export's path; PostgreSQL writes CSV
many times faster than Python builds rows). Memory stays flat whatever the
period's size.

A period's transfers are those whose business time
(``coalesce(effective_at, created_at)``) falls in [start, end): plain
transfers and the rows that post a pending transfer (their own amount);
pending and void rows move nothing. They are found through the ledger's
accounts (each transfer has one debit account, and the debit index is on
(account, timestamp)), so the read touches that ledger's rows only.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
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


async def ledger_account_codes(connection: Connection, ledger: int) -> list[int]:
    """The codes of the ledger's accounts, each once."""
    rows = await connection.fetch(
        "SELECT DISTINCT code FROM accounts WHERE ledger = $1 ORDER BY code", ledger
    )
    return [row[0] for row in rows]


async def transfer_codes_around(
    connection: Connection, ledger: int, first_day: date, last_day: date
) -> list[int]:
    """The transfer codes the ledger's daily totals hold from two days before
    ``first_day`` to two days after ``last_day`` (the totals count days in
    the ledger's zone, a period in the program's: the margin covers any
    two zones)."""
    rows = await connection.fetch(
        "SELECT DISTINCT code FROM ledger_daily_totals"
        " WHERE ledger = $1 AND day BETWEEN $2 AND $3 ORDER BY code",
        ledger,
        first_day - timedelta(days=2),
        last_day + timedelta(days=2),
    )
    return [row[0] for row in rows]


@dataclass(frozen=True)
class JournalLineTemplate:
    """What a money ledger's journal lines carry besides their transfer's
    own fields, in the journal's column order (finance.journal.SCHEMA)."""

    accounting_date: date
    period: str
    source: str
    currency: str
    functional_currency: str
    #: Functional minor units per minor unit of ``currency`` (rate x 10^(scale
    #: difference)); exactly 1 for the functional currency itself.
    functional_factor: Decimal
    exchange_rate: str
    exchange_rate_date: date
    #: The zone whose calendar dates a line's memo.
    time_zone: str
    #: (transfer code, category, journal id) of every code that may occur.
    journals: Sequence[tuple[int, str, uuid.UUID]]
    #: (transfer code, account code, GL account) for every pair of them.
    gl_accounts: Sequence[tuple[int, int, str]]


# One row per line: a transfer's debit line, then its credit line, numbered
# within its code's journal in (business time, ledger order). The lines are
# doubled before the one sort, which the window and the output share. A code
# missing from the journals (cannot happen: the caller passes a superset)
# fails the COPY (the uuid cast) instead of dropping lines. The functional
# amount is amount x factor rounded half to even (amounts are >= 0), as
# finance.exchange_rates.functional_minor does.
_PERIOD_LINES = f"""
WITH journal(code, category, journal_id) AS (
    SELECT * FROM unnest($4::int[], $5::text[], $6::uuid[])
),
gl(code, account_code, gl_account) AS (
    SELECT * FROM unnest($7::int[], $8::int[], $9::text[])
),
ledger_accounts AS (SELECT id, code FROM accounts WHERE ledger = $1),
lines AS (
    SELECT t.id, t.code, t.amount, s.side_no, g.gl_account,
           coalesce(t.effective_at, t.created_at) AS business_at, t."timestamp" AS ts
    FROM transfers t
    CROSS JOIN LATERAL (VALUES (1, t.debit_account_id), (2, t.credit_account_id))
        AS s(side_no, account_id)
    JOIN ledger_accounts a ON a.id = s.account_id
    LEFT JOIN gl g ON g.code = t.code AND g.account_code = a.code
    WHERE t.debit_account_id = ANY (ARRAY(SELECT id FROM ledger_accounts))
      AND t.ledger = $1
      AND t.flags & {_MOVES_NOTHING} = 0
      AND coalesce(t.effective_at, t.created_at) >= $2
      AND coalesce(t.effective_at, t.created_at) < $3
)
SELECT coalesce(j.journal_id, ('no journal for transfer code ' || l.code)::uuid),
       $10::date, $11::text, $12::text, j.category,
       row_number() OVER (PARTITION BY l.code ORDER BY l.business_at, l.ts, l.side_no),
       coalesce(l.gl_account, 'unmapped:' || l.code),
       CASE l.side_no WHEN 1 THEN 'debit' ELSE 'credit' END,
       $13::text, l.amount, $14::text,
       CASE WHEN $15::numeric = 1 THEN l.amount
            ELSE (SELECT CASE WHEN x - floor(x) > 0.5
                                OR (x - floor(x) = 0.5 AND mod(floor(x), 2) = 1)
                              THEN floor(x) + 1 ELSE floor(x) END
                  FROM (SELECT l.amount * $15::numeric AS x) AS product)::bigint
       END,
       $16::text, $17::date,
       j.category || ' ' || (l.business_at AT TIME ZONE $18::text)::date,
       l.id, NULL
FROM lines l
LEFT JOIN journal j ON j.code = l.code
ORDER BY l.code, l.business_at, l.ts, l.side_no
"""

# The plan that serves this query whatever the statistics say (a period's
# share of a ledger's rows is estimated from a coalesce() range, often by a
# factor of 10,000 too low, and nested loops over a million rows follow):
# hash joins on the small maps, one sort in memory where it fits, no JIT
# (seconds of compiling for a one-off query), no parallel workers (their
# gather costs more than the scan here, and exports leave the CPUs to the
# posting path). Dates in ISO. All for this transaction only.
_SETTINGS = (
    "SET LOCAL enable_nestloop = off",
    "SET LOCAL enable_mergejoin = off",
    "SET LOCAL jit = off",
    "SET LOCAL max_parallel_workers_per_gather = 0",
    "SET LOCAL work_mem = '64MB'",
    "SET LOCAL DateStyle = 'ISO, YMD'",
)

#: COPY's output is handed on in pieces of about this many bytes.
PIECE_BYTES = 1 << 20
#: Pieces waiting for the consumer at most (memory bound: ~ PIECE_BYTES x this).
PIECES_AHEAD = 2


async def period_lines_csv(
    connection: Connection,
    *,
    ledger: int,
    start: datetime,
    end: datetime,
    template: JournalLineTemplate,
) -> AsyncGenerator[bytes, None]:
    """The journal lines of the ledger's posted transfers in [start, end),
    as CSV (no header, ``\\n`` line ends, NULL as an empty field, values
    quoted only when they hold a comma, a quote or a line end), in pieces
    cut at line ends. Call inside a transaction: its settings are set for
    the rest of it (``SET LOCAL``). Close it (``contextlib.aclosing``) when
    stopping early: the COPY holds the connection until it has run out."""
    for setting in _SETTINGS:
        await connection.execute(setting)
    pieces: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=PIECES_AHEAD)
    pending = bytearray()
    closing = asyncio.Event()

    async def sink(data: bytes) -> None:
        if closing.is_set():
            return
        pending.extend(data)
        if len(pending) >= PIECE_BYTES:
            cut = pending.rfind(b"\n") + 1
            await pieces.put(bytes(pending[:cut]))
            del pending[:cut]

    async def copy() -> None:
        journals = list(zip(*template.journals, strict=True)) or [(), (), ()]
        gl = list(zip(*template.gl_accounts, strict=True)) or [(), (), ()]
        await connection.copy_from_query(
            _PERIOD_LINES,
            ledger,
            start,
            end,
            list(journals[0]),
            list(journals[1]),
            list(journals[2]),
            list(gl[0]),
            list(gl[1]),
            list(gl[2]),
            template.accounting_date,
            template.period,
            template.source,
            template.currency,
            template.functional_currency,
            template.functional_factor,
            template.exchange_rate,
            template.exchange_rate_date,
            template.time_zone,
            output=sink,
            format="csv",
        )
        if not closing.is_set():
            if pending:
                await pieces.put(bytes(pending))
            await pieces.put(None)

    task = asyncio.create_task(copy())
    try:
        while True:
            if task.done():
                task.result()  # raises the COPY's error; else every piece is queued
                piece = await pieces.get()
            else:
                getter = asyncio.ensure_future(pieces.get())
                done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    continue
                piece = getter.result()
            if piece is None:
                break
            yield piece
        await task
    finally:
        # Closed early (a client gone): the COPY runs out with its output
        # dropped. Cancelling it midway would leave asyncpg's connection in
        # the COPY state, unusable for the transaction's rollback.
        closing.set()
        while not pieces.empty():
            pieces.get_nowait()  # frees a sink waiting for room
        with contextlib.suppress(Exception):  # raised above already, or nobody's
            await task
