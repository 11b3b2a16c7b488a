"""Points budgets of rules (a bonus, a behaviour event): never overspent.

A budget's counter row is locked for the rest of the transaction, so two
concurrent grants cannot both take its last points.
"""

from __future__ import annotations

import uuid

from rewards.connections import Connection


async def take_from_budget(
    connection: Connection,
    program_id: uuid.UUID,
    version: int,
    rule: str,
    budget: int,
    wanted: int,
) -> int:
    """Take up to ``wanted`` points from the rule's budget; returns how many."""
    await connection.execute(
        "INSERT INTO rule_budgets (program_id, rule_version, rule) VALUES ($1, $2, $3)"
        " ON CONFLICT DO NOTHING",
        program_id,
        version,
        rule,
    )
    granted = await connection.fetchval(
        "SELECT granted FROM rule_budgets WHERE program_id = $1 AND rule_version = $2"
        " AND rule = $3 FOR UPDATE",
        program_id,
        version,
        rule,
    )
    taken = max(0, min(wanted, budget - int(granted or 0)))
    if taken:
        await connection.execute(
            "UPDATE rule_budgets SET granted = granted + $4 WHERE program_id = $1"
            " AND rule_version = $2 AND rule = $3",
            program_id,
            version,
            rule,
            taken,
        )
    return taken


async def lock_budgets(
    connection: Connection, program_id: uuid.UUID, budgets: list[tuple[int, str]]
) -> None:
    """Lock the (rule version, rule) budgets in the order given, creating the
    missing ones: callers that take several budgets lock them in one order."""
    keys = (program_id, [version for version, _ in budgets], [rule for _, rule in budgets])
    await connection.execute(
        "INSERT INTO rule_budgets (program_id, rule_version, rule)"
        " SELECT $1, b.version, b.rule FROM unnest($2::integer[], $3::text[])"
        " WITH ORDINALITY AS b(version, rule, n) ORDER BY b.n ON CONFLICT DO NOTHING",
        *keys,
    )
    await connection.execute(
        "SELECT 1 FROM unnest($2::integer[], $3::text[]) WITH ORDINALITY AS b(version, rule, n)"
        " CROSS JOIN LATERAL (SELECT 1 FROM rule_budgets r WHERE r.program_id = $1"
        " AND r.rule_version = b.version AND r.rule = b.rule FOR UPDATE) AS locked"
        " ORDER BY b.n",
        *keys,
    )
