"""What finance's reconciliation reads of the ledger's own tables: each
account's balances against the sums of its transfers, the transfers behind
an account or carrying a tag in their metadata, and the ledgers' other
invariants. Only ``ledger/`` names these tables (``ledger.reads.TABLES``).

Every function takes an asyncpg connection (or pool); the reconciliation
calls them on one connection in a repeatable-read transaction, so that all
its checks see the same instant.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date
from typing import TypeAlias

import asyncpg
import msgspec

from ledger.invariants import CHECKS

Connection: TypeAlias = "asyncpg.Connection | asyncpg.Pool"

#: The four stored balances of an account, in the order they are compared.
BALANCE_COLUMNS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")

#: How many transfer ids a drill-down lists; the rest by its query.
DRILL_DOWN_LIMIT = 100


class AccountBalances(msgspec.Struct, kw_only=True, frozen=True):
    """An account whose stored balances are not the sums of its transfers."""

    account_id: uuid.UUID
    ledger: int
    code: int
    #: Column -> the stored balance.
    stored: dict[str, int]
    #: Column -> the sum of the account's transfers that make it up.
    derived: dict[str, int]
    #: Transfers debiting or crediting the account.
    transfers: int


# One lateral sum per side, each on that side's index (debit_account_id or
# credit_account_id, "timestamp"): a ledger's accounts are checked at the
# cost of reading their own transfers, whatever else the table holds. The
# rule of each sum is the invariant's (ledger.invariants
# balance_equals_transfers): posted = plain and post_pending rows; pending =
# pending rows no posting or void has resolved.
_BALANCE_DIFFERENCES = """
    SELECT a.id, a.ledger, a.code,
           a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted,
           d.pending AS d_pending, d.posted AS d_posted,
           c.pending AS c_pending, c.posted AS c_posted, d.n + c.n AS transfers
    FROM accounts a
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(t.amount) FILTER (
                   WHERE t.flags & 2 <> 0
                     AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)), 0)
                   AS pending,
               coalesce(sum(t.amount) FILTER (WHERE t.flags & 10 = 0), 0) AS posted,
               count(*) AS n
        FROM transfers t WHERE t.debit_account_id = a.id AND t.ledger = a.ledger) d
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(t.amount) FILTER (
                   WHERE t.flags & 2 <> 0
                     AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)), 0)
                   AS pending,
               coalesce(sum(t.amount) FILTER (WHERE t.flags & 10 = 0), 0) AS posted,
               count(*) AS n
        FROM transfers t WHERE t.credit_account_id = a.id AND t.ledger = a.ledger) c
    WHERE a.ledger = $1
      AND (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
          IS DISTINCT FROM (d.pending, d.posted, c.pending, c.posted)
    ORDER BY a.id
"""


async def balance_differences(conn: Connection, *, ledger: int) -> list[AccountBalances]:
    """Every account of ``ledger`` whose stored balances differ from the
    sums of its transfers (none when the ledger is whole)."""
    rows = await conn.fetch(_BALANCE_DIFFERENCES, ledger)
    return [
        AccountBalances(
            account_id=row["id"],
            ledger=row["ledger"],
            code=row["code"],
            stored={column: int(row[column]) for column in BALANCE_COLUMNS},
            derived={
                "debits_pending": int(row["d_pending"]),
                "debits_posted": int(row["d_posted"]),
                "credits_pending": int(row["c_pending"]),
                "credits_posted": int(row["c_posted"]),
            },
            transfers=int(row["transfers"]),
        )
        for row in rows
    ]


#: Which transfers make up each balance column: the side of the account and
#: the rows counted (as in ``_BALANCE_DIFFERENCES``).
_COLUMN_TRANSFERS = {
    "debits_pending": ("debit_account_id", "pending"),
    "debits_posted": ("debit_account_id", "posted"),
    "credits_pending": ("credit_account_id", "pending"),
    "credits_posted": ("credit_account_id", "posted"),
}
_KIND = {
    "pending": "t.flags & 2 <> 0 AND NOT EXISTS"
    " (SELECT 1 FROM transfers r WHERE r.pending_id = t.id)",
    "posted": "t.flags & 10 = 0",
}


class ColumnTransfers(msgspec.Struct, kw_only=True, frozen=True):
    """The transfers behind one balance column of an account."""

    #: The first ``DRILL_DOWN_LIMIT`` ids, in the order they were recorded.
    ids: list[uuid.UUID]
    count: int


async def transfers_behind(
    conn: Connection, account_id: uuid.UUID, column: str, *, limit: int = DRILL_DOWN_LIMIT
) -> ColumnTransfers:
    """The transfers whose amounts make up ``column`` of the account."""
    side, kind = _COLUMN_TRANSFERS[column]
    # Both names come from the constant maps above, never from the caller.
    where = f"t.{side} = $1 AND t.ledger <> 0 AND {_KIND[kind]}"
    count = await conn.fetchval(f"SELECT count(*) FROM transfers t WHERE {where}", account_id)
    rows = await conn.fetch(
        f'SELECT t.id FROM transfers t WHERE {where} ORDER BY t."timestamp" LIMIT $2',
        account_id,
        limit,
    )
    return ColumnTransfers(ids=[row["id"] for row in rows], count=int(count or 0))


class TaggedTransfer(msgspec.Struct, kw_only=True, frozen=True):
    """A transfer of an account carrying a tag in its metadata."""

    id: uuid.UUID
    #: The tag's value (``metadata ->> tag``).
    tag: str
    code: int
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount: int
    flags: int


async def tagged_transfers(
    conn: Connection, *, accounts: Sequence[uuid.UUID], tag: str
) -> list[TaggedTransfer]:
    """The transfers debiting or crediting any of ``accounts`` whose metadata
    has ``tag`` (a statement's postings and payments carry ``statement``):
    read through the accounts' indexes, each transfer once."""
    rows = await conn.fetch(
        """
        SELECT id, metadata ->> $2 AS tag, code, debit_account_id, credit_account_id,
               amount, flags
        FROM transfers
        WHERE (debit_account_id = ANY($1::uuid[]) OR credit_account_id = ANY($1::uuid[]))
          AND ledger <> 0 AND metadata ? $2
        ORDER BY "timestamp"
        """,
        list(accounts),
        tag,
    )
    return [
        TaggedTransfer(
            id=row["id"],
            tag=row["tag"],
            code=row["code"],
            debit_account_id=row["debit_account_id"],
            credit_account_id=row["credit_account_id"],
            amount=int(row["amount"]),
            flags=row["flags"],
        )
        for row in rows
    ]


class RecordedTransfer(msgspec.Struct, kw_only=True, frozen=True):
    """A transfer as the reconciliation compares it with what names it."""

    id: uuid.UUID
    ledger: int
    code: int
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount: int
    flags: int


async def transfers_by_id(
    conn: Connection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, RecordedTransfer]:
    """The recorded transfers among ``ids`` (a reserved rejected id is none)."""
    rows = await conn.fetch(
        "SELECT id, ledger, code, debit_account_id, credit_account_id, amount, flags"
        " FROM transfers WHERE id = ANY($1::uuid[]) AND ledger <> 0",
        list(ids),
    )
    return {
        row["id"]: RecordedTransfer(
            id=row["id"],
            ledger=row["ledger"],
            code=row["code"],
            debit_account_id=row["debit_account_id"],
            credit_account_id=row["credit_account_id"],
            amount=int(row["amount"]),
            flags=row["flags"],
        )
        for row in rows
    }


class InvariantBreach(msgspec.Struct, kw_only=True, frozen=True):
    invariant: str
    detail: str


#: The invariants besides the balances, which ``balance_differences`` checks
#: account by account with the figures a drill-down needs.
OTHER_INVARIANTS = tuple(name for name in CHECKS if name != "balance_equals_transfers")


async def invariant_breaches(conn: Connection, *, ledger: int) -> list[InvariantBreach]:
    """Every breach of the ledger's other invariants in ``ledger``."""
    found: list[InvariantBreach] = []
    for name in OTHER_INVARIANTS:
        for row in await conn.fetch(CHECKS[name], ledger):
            found.append(InvariantBreach(invariant=name, detail=row[1]))
    return found


class LotAccountBalance(msgspec.Struct, kw_only=True, frozen=True):
    """A lot account's posted balance: what its lots must hold together."""

    account_id: uuid.UUID
    code: int
    posted: int
    #: Posted debits less posted credits whose lots are not written yet
    #: (``ledger.lots.settle_lots``): the lots hold ``posted + unsettled``
    #: until they are.
    unsettled: int = 0


async def lot_account_balances(conn: Connection, *, ledger: int) -> list[LotAccountBalance]:
    """Every account of ``ledger`` whose code keeps lots, with its posted
    balance (a pending debit consumes no lot)."""
    rows = await conn.fetch(
        "SELECT a.id, a.code, a.credits_posted - a.debits_posted AS posted,"
        " (a.debits_posted - a.lots_debited) - (a.credits_posted - a.lots_credited)"
        " AS unsettled FROM accounts a"
        " WHERE a.ledger = $1 AND a.code IN (SELECT code FROM ledger_lot_codes) ORDER BY a.id",
        ledger,
    )
    return [
        LotAccountBalance(
            account_id=row["id"],
            code=row["code"],
            posted=int(row["posted"]),
            unsettled=int(row["unsettled"]),
        )
        for row in rows
    ]


async def account_count(conn: Connection, *, ledger: int) -> int:
    """How many accounts ``ledger`` has (those the balances check compares)."""
    return int(await conn.fetchval("SELECT count(*) FROM accounts WHERE ledger = $1", ledger) or 0)


async def program_ledgers(conn: Connection, *, points_ledger: int, money_prefix: str) -> list[int]:
    """The points ledger and every ledger whose name starts with
    ``money_prefix`` (a program's money ledgers, one per currency)."""
    rows = await conn.fetch(
        "SELECT id FROM ledgers WHERE id = $1 OR starts_with(name, $2) ORDER BY id",
        points_ledger,
        money_prefix,
    )
    return [row["id"] for row in rows]


async def movement_transfers(
    conn: Connection,
    *,
    ledger: int,
    code: int,
    debit_account_code: int,
    credit_account_code: int,
    first_day: date,
    last_day: date,
    limit: int = DRILL_DOWN_LIMIT,
) -> ColumnTransfers:
    """The posted transfers of one line of the daily aggregates: of ``code``
    between accounts of those codes, on those accounting days (the
    ledger's zone), as ``ledger.lots.daily_totals_by_scan`` sums them."""
    where = (
        "t.ledger = $1 AND t.code = $2 AND da.code = $3 AND ca.code = $4 AND t.flags & 10 = 0"
        " AND (coalesce(t.effective_at, t.created_at) AT TIME ZONE g.time_zone)::date"
        " BETWEEN $5 AND $6"
    )
    source = (
        "FROM transfers t JOIN ledgers g ON g.id = t.ledger"
        " JOIN accounts da ON da.id = t.debit_account_id"
        " JOIN accounts ca ON ca.id = t.credit_account_id"
    )
    arguments = (ledger, code, debit_account_code, credit_account_code, first_day, last_day)
    count = await conn.fetchval(f"SELECT count(*) {source} WHERE {where}", *arguments)
    rows = await conn.fetch(
        f'SELECT t.id {source} WHERE {where} ORDER BY t."timestamp" LIMIT $7', *arguments, limit
    )
    return ColumnTransfers(ids=[row["id"] for row in rows], count=int(count or 0))
