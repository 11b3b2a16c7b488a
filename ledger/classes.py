"""Account classes: the ledger's aggregates by a grouping of accounts that
their owner assigns (a member's tier, say), as of any day.

An account's class (``accounts.account_class``; 0: none) changes only by
``set_account_classes``, from an instant on, which moves what the account
holds from the old class to the new one in ``ledger_class_moves``; every
posting counts its movements in their accounts' classes
(``ledger_daily_totals``' ``debit_class`` and ``credit_class``), and one
dated before its account's last change is put back in the class in force
then. A class's points at the end of a day are therefore one sum over the
days before it, never a scan of accounts or movements (migration 0052,
``ledger/sql/ledger_set_account_classes.sql``).

``ledgers.classes_since`` (NULL: always) is the instant from which the
aggregates answer: a ledger whose owner began assigning classes after
history was posted counts every account in class 0 before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from uuid import UUID

from ledger.lots import Connection

#: Each class's posted points in the lot accounts (the wallets) at the end
#: of a day: what was posted into each class, minus what was posted out,
#: plus what changes of class moved in and out.
_POINTS_BY_CLASS = """
    WITH codes AS (SELECT code FROM ledger_lot_codes)
    SELECT cls, sum(points)::numeric AS points FROM (
        SELECT credit_class AS cls, amount AS points FROM ledger_daily_totals
        WHERE ledger = $1 AND day <= $2 AND credit_account_code IN (SELECT code FROM codes)
        UNION ALL
        SELECT debit_class, -amount FROM ledger_daily_totals
        WHERE ledger = $1 AND day <= $2 AND debit_account_code IN (SELECT code FROM codes)
        UNION ALL
        SELECT to_class, points FROM ledger_class_moves
        WHERE ledger = $1 AND day <= $2 AND account_code IN (SELECT code FROM codes)
        UNION ALL
        SELECT from_class, -points FROM ledger_class_moves
        WHERE ledger = $1 AND day <= $2 AND account_code IN (SELECT code FROM codes)
    ) x
    GROUP BY cls HAVING sum(points) <> 0 ORDER BY cls"""


async def set_account_classes(
    conn: Connection,
    accounts: Sequence[UUID],
    classes: Sequence[int],
    at: Sequence[datetime | None],
) -> int:
    """Put each account in its class from its instant on (None: now, under
    the ledger's lock), in order; returns how many changed. An instant
    before the account's previous change, or inside a closed period, is
    taken as that change's, or just after the period."""
    changed = await conn.fetchval(
        "SELECT ledger_set_account_classes($1::uuid[], $2::integer[], $3::timestamptz[])",
        list(accounts),
        list(classes),
        list(at),
    )
    return int(changed)


async def points_by_class(conn: Connection, *, ledger: int, as_of: date) -> dict[int, int]:
    """The points the ledger's lot accounts held at the end of accounting
    day ``as_of``, by their class then (classes holding none left out)."""
    rows = await conn.fetch(_POINTS_BY_CLASS, ledger, as_of)
    return {int(r["cls"]): int(r["points"]) for r in rows}


async def classes_since(conn: Connection, *, ledger: int) -> datetime | None:
    """From when the ledger's class aggregates answer (None: for every day)."""
    value = await conn.fetchval("SELECT classes_since FROM ledgers WHERE id = $1", ledger)
    return value if isinstance(value, datetime) else None
