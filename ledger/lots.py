"""Lots and the daily aggregates: the reads finance and rewards call.

A lot is the credit of a lot account (a code in ``ledger_lot_codes``: the
member wallet) and what is left of it; every change of a lot is a lot
movement of the transfer that made it. The posting path records both, and
the daily sums (``ledger_daily_totals``, ``lot_daily_movements``), in the
transfers' own transaction (``ledger/sql/ledger_create_transfers.sql``
step 4 and ``ledger_record_lots.sql``; docs/ledger.md "Lots and daily
aggregates").

A plain movement of a wallet (a credit making its own lot, a FIFO debit
naming no lot) is settled later: what it makes or consumes is fixed when it
posts, and ``ledger_settle_lots`` writes it (``settle_lots``: the
``settle-lots`` job, a period's close, and every read here before it
reads). Reads therefore answer as if every movement had been recorded at
posting.

Every read takes an asyncpg connection or pool. Days are accounting days
(dates in the ledger's time zone), inclusive; ``as_of`` is the end of that
day. The ``*_by_scan`` reads give the same answers from the lots, their
movements and the transfers alone (the check of the aggregates, and the
benchmark's full scan).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

#: A connection, a pool's connection or a pool: all have ``fetch``.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | asyncpg.Pool


def _ints(row: asyncpg.Record) -> dict[str, Any]:
    """A row's fields, sums (numeric: they may pass 2^63) as ints."""
    return {k: int(v) if isinstance(v, Decimal) else v for k, v in row.items()}


#: Codes of the transfers that expire points (EXPIRY and PROGRAM_SUNSET of
#: ``core.codes``; the ledger cannot import core).
EXPIRING_CODES = (6, 17)


@dataclass(frozen=True, slots=True)
class OutstandingPoints:
    """Points still in lot accounts at the end of a day, by who issued them
    (``source_account_id``), the kind of credit that made them
    (``origin_code``) and the month they were earned in (``cohort``)."""

    source_account_id: UUID
    origin_code: int
    cohort: date
    points: int


@dataclass(frozen=True, slots=True)
class LotMovementTotal:
    """The net change of lots over a period by the moving transfer's code
    (earned, redeemed, expired ...), origin, issuer and cohort: one line of
    a roll-forward. ``points`` is signed (+ made or restored, - consumed)."""

    code: int
    origin_code: int
    source_account_id: UUID
    cohort: date
    points: int


@dataclass(frozen=True, slots=True)
class DailyTotal:
    """Posted movements over a period by code and by the codes of the debited
    and the credited account: their sum and their count."""

    code: int
    debit_account_code: int
    credit_account_code: int
    amount: int
    transfers: int


@dataclass(frozen=True, slots=True)
class CodeBalance:
    """Posted debits and credits of every account of one code, through a day:
    one line of a trial balance."""

    account_code: int
    debits: int
    credits: int


@dataclass(frozen=True, slots=True)
class CohortMonth:
    """Lot movements of one cohort (month earned) in one calendar month, by
    the moving transfer's code: a point of a redemption curve."""

    cohort: date
    month: date
    code: int
    points: int


@dataclass(frozen=True, slots=True)
class Lot:
    """A lot: made by the credit ``id`` (or, for a gift, ``md5(gift ||
    lot)``), ``remaining`` of its ``amount`` left. ``expires_at`` None means
    "by the program's policy from ``earned_at``"."""

    id: UUID
    ledger: int
    account_id: UUID
    origin_code: int
    source_account_id: UUID
    amount: int
    remaining: int
    earned_at: datetime
    cohort: date
    expires_at: datetime | None
    timestamp: int


@dataclass(frozen=True, slots=True)
class LotMovement:
    """One change of a lot's remaining by a transfer (signed)."""

    transfer_id: UUID
    lot_id: UUID
    account_id: UUID
    points: int
    business_at: datetime
    day: date
    timestamp: int


@dataclass(frozen=True, slots=True)
class LotConsumption:
    """A lot a debit consumed: how much, how much restorations of that debit
    gave back so far, and what is still to restore (``consumed - restored``)."""

    lot_id: UUID
    account_id: UUID
    consumed: int
    restored: int
    expires_at: datetime | None
    earned_at: datetime

    @property
    def restorable(self) -> int:
        return self.consumed - self.restored


@dataclass(frozen=True, slots=True)
class ExpiredPoints:
    """Points an expiring transfer (EXPIRY, PROGRAM_SUNSET) took from an
    account's lots and that no restoration has given back yet."""

    account_id: UUID
    transfer_id: UUID
    business_at: datetime
    points: int


@dataclass(frozen=True, slots=True)
class AccountLotTotal:
    """What a lot account's lots hold: equal to its posted balance."""

    account_id: UUID
    remaining: int
    lots: int


@dataclass(frozen=True, slots=True)
class SettledLots:
    """What a settlement wrote: accounts settled, lots made, lot movements
    written."""

    accounts: int
    lots: int
    movements: int


@contextlib.asynccontextmanager
async def _writing(
    conn: Connection,
) -> AsyncIterator[asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | None]:
    """A connection in a transaction (a savepoint in the caller's own), or
    None inside a read-only or a repeatable-read transaction: a snapshot
    reads the lots as last settled (the accounts' marks say what waits; its
    writes would fail against a settlement committed after it began)."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as held, held.transaction():
            yield held
        return
    if conn.is_in_transaction() and await conn.fetchval(
        "SELECT current_setting('transaction_read_only') = 'on'"
        " OR current_setting('transaction_isolation') <> 'read committed'"
    ):
        yield None
        return
    async with conn.transaction():
        yield conn


_NOTHING = SettledLots(accounts=0, lots=0, movements=0)


async def settle_lots(conn: Connection, *, ledger: int) -> SettledLots:
    """Write what the plain movements of the ledger's lot accounts not yet
    settled made and consumed (``ledger_settle_ledger_lots``, under the
    ledger's lock until the transaction ends). In a caller's transaction
    the lock is taken only when something waits (it is then held until
    that transaction ends: settle on a connection of its own first, as the
    finance reads do, to keep it short)."""
    nested = not isinstance(conn, asyncpg.Pool) and conn.is_in_transaction()
    async with _writing(conn) as held:
        if held is None:
            return _NOTHING
        row = await held.fetchrow(
            "SELECT accounts, lots, movements FROM ledger_settle_ledger_lots($1, $2)",
            ledger,
            nested,
        )
    assert row is not None
    return SettledLots(**_ints(row))


#: Whether any of the accounts has a movement not yet settled (no lock
#: needed to know there is nothing to do).
_UNSETTLED = (
    "SELECT EXISTS (SELECT 1 FROM accounts WHERE id = ANY ($1::uuid[])"
    " AND (debits_posted > lots_debited OR credits_posted > lots_credited)"
    " AND code IN (SELECT code FROM ledger_lot_codes))"
)


async def settle_account_lots(conn: Connection, accounts: Sequence[UUID]) -> SettledLots:
    """``settle_lots`` for some lot accounts only (their ledgers' locks are
    taken only when one has something to settle)."""
    if not accounts or not await conn.fetchval(_UNSETTLED, list(accounts)):
        return _NOTHING
    async with _writing(conn) as held:
        if held is None:
            return _NOTHING
        row = await held.fetchrow(
            "SELECT accounts, lots, movements FROM ledger_settle_account_lots($1::uuid[])",
            list(accounts),
        )
    assert row is not None
    return SettledLots(**_ints(row))


async def _settle_transfer_accounts(conn: Connection, transfer_id: UUID) -> None:
    """Settle the accounts a transfer moved (what it made or consumed is written)."""
    row = await conn.fetchrow(
        "SELECT debit_account_id, credit_account_id FROM transfers WHERE id = $1 AND ledger <> 0",
        transfer_id,
    )
    if row is not None:
        await settle_account_lots(conn, [row["debit_account_id"], row["credit_account_id"]])


@dataclass(frozen=True, slots=True)
class DerivedLots:
    """What ``derive_lots`` did: accounts derived, lots made, movements written."""

    accounts: int
    lots: int
    movements: int


async def outstanding(conn: Connection, *, ledger: int, as_of: date) -> list[OutstandingPoints]:
    """Outstanding points at the end of ``as_of``, from ``lot_daily_movements``
    (rows with points left only)."""
    await settle_lots(conn, ledger=ledger)
    rows = await conn.fetch(
        "SELECT source_account_id, origin_code, cohort, sum(points) AS points"
        " FROM lot_daily_movements WHERE ledger = $1 AND day <= $2"
        " GROUP BY 1, 2, 3 HAVING sum(points) > 0 ORDER BY 1, 2, 3",
        ledger,
        as_of,
    )
    return [OutstandingPoints(**_ints(r)) for r in rows]


async def outstanding_by_scan(
    conn: Connection, *, ledger: int, as_of: date
) -> list[OutstandingPoints]:
    """``outstanding`` from the lots and every movement of theirs."""
    await settle_lots(conn, ledger=ledger)
    rows = await conn.fetch(
        "SELECT l.source_account_id, l.origin_code, l.cohort, sum(m.points) AS points"
        " FROM lots l JOIN lot_movements m ON m.lot_id = l.id"
        " WHERE l.ledger = $1 AND m.day <= $2"
        " GROUP BY 1, 2, 3 HAVING sum(m.points) > 0 ORDER BY 1, 2, 3",
        ledger,
        as_of,
    )
    return [OutstandingPoints(**_ints(r)) for r in rows]


async def lot_movement_totals(
    conn: Connection, *, ledger: int, first_day: date, last_day: date
) -> list[LotMovementTotal]:
    """Lot movements of the days ``first_day`` to ``last_day``, summed by code,
    origin, issuer and cohort (groups that net to zero included)."""
    await settle_lots(conn, ledger=ledger)
    rows = await conn.fetch(
        "SELECT code, origin_code, source_account_id, cohort, sum(points) AS points"
        " FROM lot_daily_movements WHERE ledger = $1 AND day BETWEEN $2 AND $3"
        " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        ledger,
        first_day,
        last_day,
    )
    return [LotMovementTotal(**_ints(r)) for r in rows]


async def lot_movement_totals_by_scan(
    conn: Connection, *, ledger: int, first_day: date, last_day: date
) -> list[LotMovementTotal]:
    """``lot_movement_totals`` from the lots, their movements and the transfers."""
    await settle_lots(conn, ledger=ledger)
    rows = await conn.fetch(
        "SELECT t.code, l.origin_code, l.source_account_id, l.cohort,"
        " sum(m.points) AS points"
        " FROM lot_movements m JOIN lots l ON l.id = m.lot_id"
        " JOIN transfers t ON t.id = m.transfer_id"
        " WHERE l.ledger = $1 AND m.day BETWEEN $2 AND $3"
        " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
        ledger,
        first_day,
        last_day,
    )
    return [LotMovementTotal(**_ints(r)) for r in rows]


async def daily_totals(
    conn: Connection, *, ledger: int, first_day: date, last_day: date
) -> list[DailyTotal]:
    """Posted movements of the days ``first_day`` to ``last_day``, from
    ``ledger_daily_totals``."""
    rows = await conn.fetch(
        "SELECT code, debit_account_code, credit_account_code,"
        " sum(amount) AS amount, sum(transfers) AS transfers"
        " FROM ledger_daily_totals WHERE ledger = $1 AND day BETWEEN $2 AND $3"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        ledger,
        first_day,
        last_day,
    )
    return [DailyTotal(**_ints(r)) for r in rows]


#: A posted movement's accounting day, in SQL over ``transfers t`` and ``ledgers g``.
_DAY = "(coalesce(t.effective_at, t.created_at) AT TIME ZONE g.time_zone)::date"


async def daily_totals_by_scan(
    conn: Connection, *, ledger: int, first_day: date, last_day: date
) -> list[DailyTotal]:
    """``daily_totals`` from the transfers (plain and post_pending rows, not
    pending, not void)."""
    rows = await conn.fetch(
        "SELECT t.code, da.code AS debit_account_code, ca.code AS credit_account_code,"
        " sum(t.amount) AS amount, count(*) AS transfers"
        " FROM transfers t JOIN ledgers g ON g.id = t.ledger"
        " JOIN accounts da ON da.id = t.debit_account_id"
        " JOIN accounts ca ON ca.id = t.credit_account_id"
        f" WHERE t.ledger = $1 AND t.flags & 10 = 0 AND {_DAY} BETWEEN $2 AND $3"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        ledger,
        first_day,
        last_day,
    )
    return [DailyTotal(**_ints(r)) for r in rows]


async def account_code_balances(conn: Connection, *, ledger: int, as_of: date) -> list[CodeBalance]:
    """Posted debits and credits by account code through ``as_of`` (a trial
    balance: debits and credits total the same)."""
    rows = await conn.fetch(
        "SELECT account_code, sum(debits) AS debits, sum(credits) AS credits"
        " FROM (SELECT debit_account_code AS account_code, amount AS debits, 0 AS credits"
        "       FROM ledger_daily_totals WHERE ledger = $1 AND day <= $2"
        "       UNION ALL"
        "       SELECT credit_account_code, 0, amount"
        "       FROM ledger_daily_totals WHERE ledger = $1 AND day <= $2) x"
        " GROUP BY 1 ORDER BY 1",
        ledger,
        as_of,
    )
    return [CodeBalance(**_ints(r)) for r in rows]


async def cohort_development(conn: Connection, *, ledger: int, through: date) -> list[CohortMonth]:
    """Lot movements through ``through`` by cohort, calendar month of the
    movement (its first day) and code."""
    await settle_lots(conn, ledger=ledger)
    rows = await conn.fetch(
        "SELECT cohort, date_trunc('month', day)::date AS month, code,"
        " sum(points) AS points"
        " FROM lot_daily_movements WHERE ledger = $1 AND day <= $2"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        ledger,
        through,
    )
    return [CohortMonth(**_ints(r)) for r in rows]


_LOT = (
    "l.id, l.ledger, l.account_id, l.origin_code, l.source_account_id, l.amount,"
    ' l.remaining, l.earned_at, l.cohort, l.expires_at, l."timestamp"'
)


async def lots_of(conn: Connection, account_id: UUID, *, open_only: bool = False) -> list[Lot]:
    """An account's lots in the order debits consume them (earned_at,
    timestamp, id); ``open_only``: those with points left."""
    await settle_account_lots(conn, [account_id])
    if open_only:
        rows = await conn.fetch(
            f"SELECT {_LOT} FROM lots l WHERE l.account_id = $1 AND l.is_open"
            ' ORDER BY l.earned_at, l."timestamp", l.id',
            account_id,
        )
    else:
        # Every lot of an account was made by one of its credits: found through
        # them, so that lots need no second index by account on the hot path.
        rows = await conn.fetch(
            f"SELECT DISTINCT {_LOT} FROM transfers t"
            " JOIN lot_movements m ON m.transfer_id = t.id AND m.points > 0"
            " JOIN lots l ON l.id = m.lot_id AND l.account_id = $1"
            " WHERE t.credit_account_id = $1"
            ' ORDER BY l.earned_at, l."timestamp", l.id',
            account_id,
        )
    return [Lot(**_ints(r)) for r in rows]


async def open_lots_of(conn: Connection, account_ids: Sequence[UUID]) -> dict[UUID, list[Lot]]:
    """Each account's lots with points left, in the order debits consume
    them, for many accounts in one statement (a page of wallets)."""
    await settle_account_lots(conn, list(account_ids))
    found: dict[UUID, list[Lot]] = {account: [] for account in account_ids}
    rows = await conn.fetch(
        f"SELECT {_LOT} FROM lots l WHERE l.account_id = ANY($1::uuid[]) AND l.is_open"
        ' ORDER BY l.account_id, l.earned_at, l."timestamp", l.id',
        list(account_ids),
    )
    for row in rows:
        found[row["account_id"]].append(Lot(**_ints(row)))
    return found


async def lot(conn: Connection, lot_id: UUID) -> Lot | None:
    """One lot by its id."""
    # A plain credit's lot (its id is the credit's) may wait to be settled.
    account = await conn.fetchval(
        "SELECT coalesce((SELECT account_id FROM lots WHERE id = $1),"
        " (SELECT credit_account_id FROM transfers WHERE id = $1 AND ledger <> 0))",
        lot_id,
    )
    if account is not None:
        await settle_account_lots(conn, [account])
    row = await conn.fetchrow(f"SELECT {_LOT} FROM lots l WHERE l.id = $1", lot_id)
    return Lot(**_ints(row)) if row is not None else None


async def movements_of_transfer(conn: Connection, transfer_id: UUID) -> list[LotMovement]:
    """The lots a transfer made, consumed or restored (signed points)."""
    await _settle_transfer_accounts(conn, transfer_id)
    rows = await conn.fetch(
        "SELECT m.transfer_id, m.lot_id, l.account_id, m.points, m.business_at, m.day,"
        ' m."timestamp" FROM lot_movements m JOIN lots l ON l.id = m.lot_id'
        ' WHERE m.transfer_id = $1 ORDER BY l.earned_at, l."timestamp", l.id',
        transfer_id,
    )
    return [LotMovement(**_ints(r)) for r in rows]


async def lots_consumed_by(conn: Connection, transfer_id: UUID) -> list[LotConsumption]:
    """What a debit consumed, lot by lot in the order it consumed them, with
    what restorations of it (credits with ``{"restores": "<its id>"}``) gave
    back so far."""
    await _settle_transfer_accounts(conn, transfer_id)
    rows = await conn.fetch(
        "WITH d AS (SELECT CASE WHEN jsonb_typeof(t.metadata -> 'lots') = 'array'"
        "   THEN ARRAY(SELECT e.v FROM jsonb_array_elements_text(t.metadata -> 'lots')"
        "              WITH ORDINALITY AS e(v, k) ORDER BY e.k) ELSE '{}' END AS directed"
        "   FROM transfers t WHERE t.id = $1 AND t.ledger <> 0),"
        " given AS (SELECT m.lot_id, sum(m.points) AS points"
        "   FROM transfers r JOIN lot_movements m ON m.transfer_id = r.id"
        "   WHERE r.metadata ? 'restores' AND lower(r.metadata ->> 'restores') = $1::text"
        "     AND r.ledger <> 0 AND m.points > 0 GROUP BY m.lot_id)"
        " SELECT m.lot_id, l.account_id, -m.points AS consumed,"
        " coalesce(g.points, 0) AS restored, l.expires_at, l.earned_at"
        " FROM lot_movements m JOIN lots l ON l.id = m.lot_id CROSS JOIN d"
        " LEFT JOIN given g ON g.lot_id = m.lot_id"
        " WHERE m.transfer_id = $1 AND m.points < 0"
        " ORDER BY coalesce(array_position(d.directed, m.lot_id::text), 2147483647),"
        ' l.earned_at, l."timestamp", l.id',
        transfer_id,
    )
    return [LotConsumption(**_ints(r)) for r in rows]


async def expired_lots_since(
    conn: Connection, *, ledger: int, since: datetime
) -> list[ExpiredPoints]:
    """Points expiring transfers (codes 6 and 17) with a business time at or
    after ``since`` consumed and no restoration has given back, by account
    then transfer."""
    await settle_lots(conn, ledger=ledger)
    rows = await conn.fetch(
        "WITH e AS (SELECT m.transfer_id, l.account_id, m.business_at, -sum(m.points) AS points"
        "   FROM transfers t JOIN lot_movements m ON m.transfer_id = t.id"
        "   JOIN lots l ON l.id = m.lot_id"
        "   WHERE t.ledger = $1 AND t.code = ANY ($3::integer[]) AND t.flags & 10 = 0"
        "     AND coalesce(t.effective_at, t.created_at) >= $2 AND m.points < 0"
        "   GROUP BY 1, 2, 3)"
        " SELECT e.account_id, e.transfer_id, e.business_at,"
        " (e.points - coalesce((SELECT sum(m.points) FROM transfers r"
        "   JOIN lot_movements m ON m.transfer_id = r.id JOIN lots l ON l.id = m.lot_id"
        "   WHERE r.metadata ? 'restores' AND lower(r.metadata ->> 'restores') ="
        "         e.transfer_id::text AND r.ledger <> 0 AND m.points > 0"
        "     AND l.account_id = e.account_id AND m.lot_id <> r.id), 0)) AS points"
        " FROM e ORDER BY e.account_id, e.business_at, e.transfer_id",
        ledger,
        since,
        list(EXPIRING_CODES),
    )
    return [ExpiredPoints(**_ints(r)) for r in rows if r["points"] > 0]


async def lot_totals_by_account(conn: Connection, *, ledger: int) -> list[AccountLotTotal]:
    """Per lot account of the ledger (those with lots): the sum of its lots'
    remaining, and how many lots it has."""
    await settle_lots(conn, ledger=ledger)
    rows = await conn.fetch(
        "SELECT account_id, sum(remaining) AS remaining, count(*) AS lots"
        " FROM lots WHERE ledger = $1 GROUP BY 1 ORDER BY 1",
        ledger,
    )
    return [AccountLotTotal(**_ints(r)) for r in rows]


async def derive_lots(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
) -> DerivedLots:
    """Derive the lots of every lot account that has posted credits and no
    lot yet from its history (``ledger_derive_lots``), in one transaction;
    a second run finds nothing to do."""
    async with conn.transaction():
        row = await conn.fetchrow("SELECT accounts, lots, movements FROM ledger_derive_lots()")
    assert row is not None
    return DerivedLots(accounts=row["accounts"], lots=row["lots"], movements=row["movements"])
