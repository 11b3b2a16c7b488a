"""Read queries on the ledger's tables."""

from __future__ import annotations

import uuid

import asyncpg

#: Namespace of ids the ledger derives itself (expiry voids).
LEDGER_NAMESPACE = uuid.UUID("6c1f1b0e-5e0a-4d53-9f3c-2a8f4d7b9e10")

ACCOUNT_COLUMNS = (
    "id, ledger, code, flags, debits_pending, debits_posted, credits_pending,"
    ' credits_posted, metadata, "timestamp", created_at'
)
TRANSFER_COLUMNS = (
    "id, debit_account_id, credit_account_id, amount, ledger, code, flags, pending_id,"
    ' timeout, metadata, effective_at, "timestamp", created_at'
)

LOOKUP_ACCOUNTS = f"""
SELECT {ACCOUNT_COLUMNS} FROM accounts a
JOIN unnest($1::uuid[]) WITH ORDINALITY AS q(id, i) USING (id)
ORDER BY q.i
"""

# Rows of ledger 0 in ``transfers`` reserve the ids of rejected transfers
# (migration 0013): they are no transfers, and every read skips them.

LOOKUP_TRANSFERS = f"""
SELECT {TRANSFER_COLUMNS} FROM transfers t
JOIN unnest($1::uuid[]) WITH ORDINALITY AS q(id, i) USING (id)
WHERE t.ledger <> 0
ORDER BY q.i
"""

# Each row is a debit leg and a credit leg. Posted amounts come from
# single-phase and post transfers; pending amounts from pending transfers,
# less the pending amount released by a later post or void.
_BALANCES_AS_OF = """
WITH ids AS (SELECT DISTINCT unnest($1::uuid[]) AS id),
legs AS (
    SELECT ids.id AS account_id, true AS debit, t.amount, t.flags, p.amount AS released
    FROM ids JOIN transfers t ON t.debit_account_id = ids.id
    LEFT JOIN transfers p ON p.id = t.pending_id
    WHERE {time_filter}
    UNION ALL
    SELECT ids.id, false, t.amount, t.flags, p.amount
    FROM ids JOIN transfers t ON t.credit_account_id = ids.id
    LEFT JOIN transfers p ON p.id = t.pending_id
    WHERE {time_filter}
)
SELECT ids.id AS account_id,
    coalesce(sum(CASE WHEN l.flags & 2 <> 0 THEN l.amount
                      WHEN l.flags & 12 <> 0 THEN -l.released ELSE 0 END)
             FILTER (WHERE l.debit), 0)::bigint AS debits_pending,
    coalesce(sum(l.amount) FILTER (WHERE l.debit AND l.flags & 10 = 0), 0)::bigint
        AS debits_posted,
    coalesce(sum(CASE WHEN l.flags & 2 <> 0 THEN l.amount
                      WHEN l.flags & 12 <> 0 THEN -l.released ELSE 0 END)
             FILTER (WHERE NOT l.debit), 0)::bigint AS credits_pending,
    coalesce(sum(l.amount) FILTER (WHERE NOT l.debit AND l.flags & 10 = 0), 0)::bigint
        AS credits_posted
FROM ids LEFT JOIN legs l ON l.account_id = ids.id
WHERE EXISTS (SELECT 1 FROM accounts a WHERE a.id = ids.id)
GROUP BY ids.id
ORDER BY ids.id
"""
BALANCES_AS_OF = _BALANCES_AS_OF.format(time_filter="t.created_at <= $2")
BALANCES_AS_OF_EFFECTIVE = _BALANCES_AS_OF.format(
    time_filter="coalesce(t.effective_at, t.created_at) <= $2"
)

HISTORY = f"""
SELECT {TRANSFER_COLUMNS} FROM (
    (SELECT * FROM transfers WHERE debit_account_id = $1 AND "timestamp" < $2
     ORDER BY "timestamp" DESC LIMIT $3)
    UNION ALL
    (SELECT * FROM transfers WHERE credit_account_id = $1 AND "timestamp" < $2
     ORDER BY "timestamp" DESC LIMIT $3)
) t
ORDER BY "timestamp" DESC
LIMIT $3
"""

TOTALS = """
SELECT l.id AS ledger, count(a.id) AS accounts,
    coalesce(sum(a.debits_pending), 0)::bigint AS debits_pending,
    coalesce(sum(a.debits_posted), 0)::bigint AS debits_posted,
    coalesce(sum(a.credits_pending), 0)::bigint AS credits_pending,
    coalesce(sum(a.credits_posted), 0)::bigint AS credits_posted
FROM ledgers l LEFT JOIN accounts a ON a.ledger = l.id
WHERE $1::integer IS NULL OR l.id = $1
GROUP BY l.id
ORDER BY l.id
"""


def expiry_transfer_id(pending_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(LEDGER_NAMESPACE, f"expire:{pending_id}")


async def due_pending(pool: asyncpg.Pool, limit: int) -> list[uuid.UUID]:
    rows = await pool.fetch(
        "SELECT transfer_id FROM pending_expiries WHERE expires_at <= now()"
        " ORDER BY expires_at LIMIT $1",
        limit,
    )
    return [row["transfer_id"] for row in rows]


# Posted credits (single-phase or post) recorded up to a time, per account.
POSTED_CREDITS_UP_TO = """
SELECT ids.id AS account_id, coalesce(sum(t.amount), 0)::bigint AS credits
FROM unnest($1::uuid[]) AS ids(id)
LEFT JOIN transfers t ON t.credit_account_id = ids.id AND t.flags & 10 = 0
                      AND t.created_at <= $2
GROUP BY ids.id
"""

# When each account last moved (any transfer, either side).
LAST_ACTIVITY = """
SELECT ids.id AS account_id,
    greatest(
        (SELECT max(created_at) FROM transfers WHERE debit_account_id = ids.id),
        (SELECT max(created_at) FROM transfers WHERE credit_account_id = ids.id)
    ) AS at
FROM unnest($1::uuid[]) AS ids(id)
"""
