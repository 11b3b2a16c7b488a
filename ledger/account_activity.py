"""Reads of accounts' activity for packages outside ``ledger/``, which may
not name the ledger's tables (``tests/test_ledger_boundary.py``): what
segments ask of a wallet (its first earning), and what analytics sums per
account (a member's wallet, a partner's accounts on the points and the money
ledger) over a span of business time.

*Posted* here means what moved: plain transfers and the rows that post a
pending transfer (with their own amount); not a pending transfer, not a
void. A transfer's business time is ``coalesce(effective_at, created_at)``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from ledger.schemas import TransferFlags

#: Flags of transfers that move nothing (yet, or ever).
_NOT_POSTED = int(TransferFlags.PENDING | TransferFlags.VOID_PENDING)
_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")


def first_posted_credit_sql(account_column: str) -> str:
    """A scalar subquery, in SQL, giving the business time of the first
    posted credit of the account whose id is in ``account_column`` (a
    qualified column of the caller's query, e.g. ``members.wallet_account_id``):
    a wallet's first earning, the cohort of its first lot."""
    if not _COLUMN.match(account_column):
        raise ValueError(f"not a qualified column: {account_column!r}")
    return (
        "(SELECT min(coalesce(t.effective_at, t.created_at)) FROM transfers t"
        f" WHERE t.credit_account_id = {account_column} AND t.flags & {_NOT_POSTED} = 0)"
    )


class MovementSum(msgspec.Struct, frozen=True, kw_only=True):
    """Posted transfers of one code between two accounts, summed."""

    code: int
    debit_account_id: uuid.UUID
    credit_account_id: uuid.UUID
    amount: int
    transfers: int


class _Fetches(Protocol):
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


_SUMS = f"""
SELECT code, debit_account_id, credit_account_id, sum(amount) AS amount, count(*) AS transfers
  FROM transfers
 WHERE ledger = $1
   AND (debit_account_id = ANY($2::uuid[]) OR credit_account_id = ANY($2::uuid[]))
   AND flags & {_NOT_POSTED} = 0
   AND ($3::timestamptz IS NULL OR coalesce(effective_at, created_at) >= $3)
   AND coalesce(effective_at, created_at) < $4
 GROUP BY code, debit_account_id, credit_account_id
 ORDER BY code, debit_account_id, credit_account_id
"""


async def movement_sums(
    conn: _Fetches,
    *,
    ledger: int,
    account_ids: Sequence[uuid.UUID],
    until: datetime,
    since: datetime | None = None,
) -> list[MovementSum]:
    """Posted transfers on ``ledger`` debiting or crediting one of
    ``account_ids``, with business time from ``since`` (None: the start)
    to before ``until``, summed by code and pair of accounts."""
    rows = await conn.fetch(_SUMS, ledger, list(account_ids), since, until)
    return [
        MovementSum(
            code=int(r["code"]),
            debit_account_id=r["debit_account_id"],
            credit_account_id=r["credit_account_id"],
            amount=int(r["amount"]),
            transfers=int(r["transfers"]),
        )
        for r in rows
    ]
