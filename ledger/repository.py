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

# The accounts of one ledger other than those of some codes, over the
# (ledger, code) index: a program's own and its partners' accounts, its
# members' left out.
ACCOUNTS_OF = f"""
SELECT {ACCOUNT_COLUMNS} FROM accounts a
WHERE a.ledger = $1 AND a.code <> ALL($2::integer[])
ORDER BY a.id
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


# -- statements: sums and drill-downs over a window of recorded transfers ----
#
# A statement reads the transfers of a few accounts whose ledger timestamp
# lies in (after, up_to] (over the (account, "timestamp") indexes: never a
# scan of the table) and sorts each into the statement's own period, a
# period it already closed (a late transfer), or neither: recorded before
# the last statement's cutoff with a business time before the period (the
# last statement counted it), or with a business time after the period
# (the next statement's). Only posted movements count: single-phase
# transfers and posts of pending ones (flags & 10 = 0).
_STATEMENT_LEGS = """
    SELECT a.id AS account_id, t.code, t.amount, t."timestamp" AS ts,
        coalesce(t.effective_at, t.created_at) AS at, true AS debit
    FROM unnest($1::uuid[]) AS a(id) JOIN transfers t ON t.debit_account_id = a.id
    WHERE t.code = ANY($3::integer[])
      AND t."timestamp" > $4 AND t."timestamp" <= $5 AND t.flags & 10 = 0
    UNION ALL
    SELECT a.id, t.code, t.amount, t."timestamp", coalesce(t.effective_at, t.created_at), false
    FROM unnest($2::uuid[]) AS a(id) JOIN transfers t ON t.credit_account_id = a.id
    WHERE t.code = ANY($3::integer[])
      AND t."timestamp" > $4 AND t."timestamp" <= $5 AND t.flags & 10 = 0
"""

# $6 period start, $7 period end, $8 the previous statement's cutoff,
# $9 the starts of the contract versions (ascending), $10 the unit of a
# late transfer's period (week, month, quarter), $11 the time zone.
STATEMENT_SUMS = f"""
WITH legs AS ({_STATEMENT_LEGS}),
sorted AS (
    SELECT l.*,
        l.at < $7 AND (l.ts > $8 OR l.at >= $6) AS counted,
        width_bucket(l.at, $9::timestamptz[]) AS version_bucket
    FROM legs l
)
SELECT account_id, code, debit, counted, version_bucket,
    CASE WHEN counted AND at < $6
         THEN date_trunc($10, at, $11) END AS late_period,
    sum(amount)::bigint AS amount, count(*)::bigint AS transfers,
    min(ts) FILTER (WHERE at >= $7) AS first_after_period
FROM sorted
WHERE counted OR at >= $7
GROUP BY 1, 2, 3, 4, 5, 6
"""

# The transfers of one line (one account, side and code, business time in
# [$6, $7)), newest first, before the cursor $10; $8, $9 the statement's
# period start and previous cutoff.
STATEMENT_LINE_TRANSFERS = f"""
SELECT {TRANSFER_COLUMNS} FROM transfers t
WHERE t.{{side}}_account_id = $1 AND t.code = $2
  AND t."timestamp" > $3 AND t."timestamp" <= $4 AND t."timestamp" < $10
  AND t.flags & 10 = 0
  AND coalesce(t.effective_at, t.created_at) >= $6
  AND coalesce(t.effective_at, t.created_at) < $7
  AND (t."timestamp" > $9 OR coalesce(t.effective_at, t.created_at) >= $8)
  AND t.ledger <> 0
ORDER BY t."timestamp" DESC
LIMIT $5
"""

# The last ledger timestamp of a transfer touching any of the accounts: a
# backward step on each index. Timestamps are taken under the ledger's lock,
# so every transfer of these accounts committed later has a larger one.
LATEST_TIMESTAMP = """
SELECT greatest(
    (SELECT max(d.ts) FROM unnest($1::uuid[]) AS ids(id), LATERAL (
        SELECT "timestamp" AS ts FROM transfers WHERE debit_account_id = ids.id
        ORDER BY "timestamp" DESC LIMIT 1) d),
    (SELECT max(c.ts) FROM unnest($1::uuid[]) AS ids(id), LATERAL (
        SELECT "timestamp" AS ts FROM transfers WHERE credit_account_id = ids.id
        ORDER BY "timestamp" DESC LIMIT 1) c)
)
"""
