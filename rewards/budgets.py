"""Points budgets of rules (a bonus, a behaviour event): never overspent.

A budget's counter row is locked for the rest of the transaction, so two
concurrent grants cannot both take its last points.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rewards.models import Program


async def take_from_budget(
    session: AsyncSession, program: Program, version: int, rule: str, budget: int, wanted: int
) -> int:
    """Take up to ``wanted`` points from the rule's budget; returns how many."""
    await session.execute(
        text(
            "INSERT INTO rule_budgets (program_id, rule_version, rule) VALUES"
            " (:program, :version, :rule) ON CONFLICT DO NOTHING"
        ),
        {"program": program.id, "version": version, "rule": rule},
    )
    granted = await session.scalar(
        text(
            "SELECT granted FROM rule_budgets WHERE program_id = :program AND"
            " rule_version = :version AND rule = :rule FOR UPDATE"
        ),
        {"program": program.id, "version": version, "rule": rule},
    )
    taken = max(0, min(wanted, budget - int(granted or 0)))
    if taken:
        await session.execute(
            text(
                "UPDATE rule_budgets SET granted = granted + :taken WHERE program_id ="
                " :program AND rule_version = :version AND rule = :rule"
            ),
            {"taken": taken, "program": program.id, "version": version, "rule": rule},
        )
    return taken
