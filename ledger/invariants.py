"""The ledger's invariants, checked from the tables themselves.

``coalition ledger check`` and the tests call ``check_invariants``; an empty
report means every invariant holds.
"""

from __future__ import annotations

import asyncpg
import msgspec


class Violation(msgspec.Struct, kw_only=True, frozen=True):
    invariant: str
    ledger: int | None
    detail: str


# Each query returns (ledger, detail) rows, one per violation.
CHECKS: dict[str, str] = {
    "debits_equal_credits": """
        SELECT ledger, format('posted debits %s != posted credits %s, pending debits %s'
                              ' != pending credits %s', dpo, cpo, dp, cp)
        FROM (SELECT ledger, sum(debits_posted) dpo, sum(credits_posted) cpo,
                     sum(debits_pending) dp, sum(credits_pending) cp
              FROM accounts WHERE $1::integer IS NULL OR ledger = $1 GROUP BY ledger) s
        WHERE dpo <> cpo OR dp <> cp
    """,
    "balance_equals_transfers": """
        WITH legs AS (
            SELECT t.debit_account_id AS account_id, true AS debit, t.amount, t.flags,
                   (t.flags & 2 <> 0 AND r.id IS NULL) AS open_pending
            FROM transfers t LEFT JOIN transfers r ON r.pending_id = t.id
            WHERE $1::integer IS NULL OR t.ledger = $1
            UNION ALL
            SELECT t.credit_account_id, false, t.amount, t.flags,
                   (t.flags & 2 <> 0 AND r.id IS NULL)
            FROM transfers t LEFT JOIN transfers r ON r.pending_id = t.id
            WHERE $1::integer IS NULL OR t.ledger = $1
        ),
        computed AS (
            SELECT account_id,
                coalesce(sum(amount) FILTER (WHERE debit AND open_pending), 0) dp,
                coalesce(sum(amount) FILTER (WHERE debit AND flags & 10 = 0), 0) dpo,
                coalesce(sum(amount) FILTER (WHERE NOT debit AND open_pending), 0) cp,
                coalesce(sum(amount) FILTER (WHERE NOT debit AND flags & 10 = 0), 0) cpo
            FROM legs GROUP BY account_id
        )
        SELECT a.ledger, format('account %s stores (dp %s, dpo %s, cp %s, cpo %s) but its'
                                ' transfers sum to (%s, %s, %s, %s)', a.id,
                                a.debits_pending, a.debits_posted, a.credits_pending,
                                a.credits_posted, coalesce(c.dp, 0), coalesce(c.dpo, 0),
                                coalesce(c.cp, 0), coalesce(c.cpo, 0))
        FROM accounts a LEFT JOIN computed c ON c.account_id = a.id
        WHERE ($1::integer IS NULL OR a.ledger = $1)
          AND (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
              IS DISTINCT FROM (coalesce(c.dp, 0), coalesce(c.dpo, 0),
                                coalesce(c.cp, 0), coalesce(c.cpo, 0))
    """,
    "pending_resolved_once": """
        SELECT p.ledger, format('pending transfer %s is resolved %s times', p.id, count(*))
        FROM transfers r JOIN transfers p ON p.id = r.pending_id
        WHERE $1::integer IS NULL OR p.ledger = $1
        GROUP BY p.ledger, p.id HAVING count(*) > 1
    """,
    "resolution_matches_pending": """
        SELECT r.ledger, format('transfer %s resolves %s, which %s', r.id, r.pending_id,
            CASE WHEN p.id IS NULL THEN 'does not exist'
                 WHEN p.flags & 2 = 0 THEN 'is not pending'
                 WHEN r.flags & 4 <> 0 THEN 'reserved less than was posted'
                 ELSE 'reserved another amount than was voided' END)
        FROM transfers r LEFT JOIN transfers p ON p.id = r.pending_id
        WHERE r.flags & 12 <> 0 AND ($1::integer IS NULL OR r.ledger = $1)
          AND (p.id IS NULL OR p.flags & 2 = 0
               OR (r.flags & 4 <> 0 AND r.amount > p.amount)
               OR (r.flags & 8 <> 0 AND r.amount <> p.amount)
               OR (r.debit_account_id, r.credit_account_id, r.ledger)
                  IS DISTINCT FROM (p.debit_account_id, p.credit_account_id, p.ledger))
    """,
    "bounded_accounts_hold": """
        SELECT ledger, format('account %s breaks %s', id,
            CASE WHEN flags & 1 <> 0 THEN 'debits_must_not_exceed_credits'
                 ELSE 'credits_must_not_exceed_debits' END)
        FROM accounts
        WHERE ($1::integer IS NULL OR ledger = $1)
          AND ((flags & 1 <> 0 AND debits_pending + debits_posted > credits_posted)
               OR (flags & 2 <> 0 AND credits_pending + credits_posted > debits_posted))
    """,
    "transfers_between_accounts_of_their_ledger": """
        SELECT t.ledger, format('transfer %s moves between %s and %s outside ledger %s',
                                t.id, t.debit_account_id, t.credit_account_id, t.ledger)
        FROM transfers t
        LEFT JOIN accounts d ON d.id = t.debit_account_id
        LEFT JOIN accounts c ON c.id = t.credit_account_id
        WHERE ($1::integer IS NULL OR t.ledger = $1) AND t.ledger <> 0
          AND (d.id IS NULL OR c.id IS NULL OR d.ledger <> t.ledger OR c.ledger <> t.ledger
               OR t.debit_account_id = t.credit_account_id)
    """,
}


async def check_invariants(
    connection: asyncpg.Connection | asyncpg.Pool, ledger: int | None = None
) -> list[Violation]:
    """Every violation of the ledger's invariants (in ``ledger``, or in all)."""
    violations: list[Violation] = []
    for name, query in CHECKS.items():
        for row in await connection.fetch(query, ledger):
            violations.append(Violation(invariant=name, ledger=row[0], detail=row[1]))
    return violations
