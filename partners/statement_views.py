"""How statements read: issued ones from their stored lines, drafts from
their computation (the same shape, ``status`` telling them apart)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from partners.models import Partner
from partners.statement_lines import Computed, Line
from partners.statement_models import (
    PartnerStatement,
    PartnerStatementLine,
    PaymentStatus,
)
from partners.statement_schemas import StatementLineView, StatementView

if TYPE_CHECKING:
    from partners.statements import Plan


def _rate(value: object) -> str | None:
    return None if value is None else format(value.normalize(), "f")  # type: ignore[attr-defined]


def line_view(number: int, line: Line | PartnerStatementLine) -> StatementLineView:
    return StatementLineView(
        line=number,
        kind=str(line.kind),
        late_period=line.late_period,
        contract_version=line.contract_version,
        points=line.points,
        rate=_rate(line.rate),
        amount_minor=line.amount_minor,
        tax_code=line.tax_code,
        transfers=line.transfers,
    )


def draft_view(partner: Partner, plan: Plan, computed: Computed, cutoff: int) -> StatementView:
    total = computed.total_minor
    return StatementView(
        id=None,
        number=plan.number,
        status="draft",
        kind=plan.kind,
        partner=partner.slug,
        period=plan.label,
        period_start=plan.period.start,
        period_end=plan.period.end,
        currency=plan.at_end.currency,
        contract_version=plan.at_end.version,
        lines=[line_view(n, line) for n, line in enumerate(computed.lines, 1)],
        billed_minor=computed.billed_minor,
        reimbursed_minor=computed.reimbursed_minor,
        total_minor=total,
        direction=computed.direction,
        amount_due_minor=abs(total),
        payment_status=PaymentStatus.NONE,
        paid_minor=0,
        cutoff=cutoff,
        issued_at=None,
    )


def replayed(view: StatementView) -> StatementView:
    return msgspec.structs.replace(view, replayed=True)


async def _lines(session: AsyncSession, statement_id: uuid.UUID) -> list[PartnerStatementLine]:
    return list(
        await session.scalars(
            select(PartnerStatementLine)
            .where(PartnerStatementLine.statement_id == statement_id)
            .order_by(PartnerStatementLine.line)
        )
    )


async def statement_view(
    session: AsyncSession, partner: Partner | str, statement: PartnerStatement
) -> StatementView:
    lines = await _lines(session, statement.id)
    return StatementView(
        id=str(statement.id),
        number=statement.number,
        status="issued",
        kind=statement.kind,
        partner=partner if isinstance(partner, str) else partner.slug,
        period=statement.period_label,
        period_start=statement.period_start,
        period_end=statement.period_end,
        currency=statement.currency,
        contract_version=statement.contract_version,
        lines=[line_view(line.line, line) for line in lines],
        billed_minor=statement.billed_minor,
        reimbursed_minor=statement.reimbursed_minor,
        total_minor=statement.total_minor,
        direction=statement.direction,
        amount_due_minor=abs(statement.total_minor),
        payment_status=statement.payment_status,
        paid_minor=statement.paid_minor,
        cutoff=statement.cutoff,
        issued_at=statement.issued_at,
    )
