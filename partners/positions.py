"""Each partner's net position by period: points it issued against points
redeemed at it, and the money both ways, from its issued statements (a
late transfer counts in the period it belongs to, through its adjustment
line), beside what it owes and is owed now on the money ledger."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from core.principal import Principal, PrincipalKind
from ledger import Ledger
from partners.money_ledger import money_balances
from partners.statement_schemas import MoneyPosition, PositionView

_POSITIONS = """
SELECT p.id, p.slug,
    coalesce(sum(l.points) FILTER (WHERE l.kind = 'points_issued'), 0) AS issued,
    coalesce(sum(l.points) FILTER (WHERE l.kind = 'points_redeemed'), 0)
      - coalesce(sum(l.points) FILTER (WHERE l.kind = 'points_refunded'), 0) AS redeemed,
    coalesce(sum(l.amount_minor) FILTER (
        WHERE l.kind NOT IN ('points_redeemed', 'prepaid_credit_drawn')), 0) AS billed,
    coalesce(-sum(l.amount_minor) FILTER (WHERE l.kind = 'points_redeemed'), 0) AS reimbursed,
    array_remove(array_agg(DISTINCT s.currency), NULL) AS currencies
FROM partners p
JOIN partner_statements s ON s.partner_id = p.id AND s.program_id = p.program_id
LEFT JOIN partner_statement_lines l ON l.statement_id = s.id
    AND (CAST(:period AS text) IS NULL
         OR coalesce(l.late_period, s.period_label) = CAST(:period AS text))
WHERE p.program_id = :program
  AND (CAST(:partners AS uuid[]) IS NULL OR p.id = ANY(CAST(:partners AS uuid[])))
GROUP BY p.id, p.slug
ORDER BY p.slug
"""


async def positions(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    *,
    principal: Principal,
    period: str | None,
    partner_ids: list[uuid.UUID] | None = None,
) -> list[PositionView]:
    """The net positions of the program's partners with statements (of
    ``partner_ids`` only, if given) in ``period`` (all periods if None).
    A partner principal sees those within its reach only."""
    if principal.kind == PrincipalKind.PARTNER:
        principal.require("statements:read")
        reach = set(principal.partner_ids)
        partner_ids = [p for p in (partner_ids or reach) if p in reach]
    rows = (
        await session.execute(
            text(_POSITIONS),
            {"program": program.id, "period": period, "partners": partner_ids},
        )
    ).all()
    views = []
    for row in rows:
        money = []
        for currency in sorted(row.currencies):
            owes, owed = await money_balances(ledger, program, currency, row.id)
            money.append(
                MoneyPosition(currency=currency, partner_owes_minor=owes, program_owes_minor=owed)
            )
        views.append(
            PositionView(
                partner=row.slug,
                period=period,
                points_issued=int(row.issued),
                points_redeemed=int(row.redeemed),
                net_points=int(row.issued) - int(row.redeemed),
                billed_minor=int(row.billed),
                reimbursed_minor=int(row.reimbursed),
                net_minor=int(row.billed) - int(row.reimbursed),
                money=money,
            )
        )
    return views
