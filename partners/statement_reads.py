"""Reading statements within the principal's tenant: one by number or id,
lists, an issued one recomputed from the ledger, a line's transfers."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.models import Program
from core.pagination import Page, decode_cursor, encode_cursor, page_of
from core.principal import Principal, PrincipalKind
from ledger import Ledger, StatementWindow
from partners.departure_figures import stored_share
from partners.models import Partner
from partners.statement_lines import Carried, Period
from partners.statement_models import PartnerStatement, PartnerStatementLine, StatementKind
from partners.statement_schemas import (
    LineTransfer,
    LineTransferPage,
    Recomputation,
    StatementLineView,
    StatementView,
)
from partners.statement_views import draft_view, statement_view
from partners.statements import Plan, compute, published_versions


def _readable(principal: Principal, program_id: uuid.UUID) -> Select[Any, Any]:
    """Statements the principal may read: of its program, and for a
    partner principal of the firms within its reach only."""
    query: Select[Any, Any] = (
        select(PartnerStatement, Partner.slug)
        .join(Partner, Partner.id == PartnerStatement.partner_id)
        .where(PartnerStatement.program_id == program_id)
    )
    if principal.kind == PrincipalKind.PARTNER:
        principal.require("statements:read")
        query = query.where(PartnerStatement.partner_id.in_(list(principal.partner_ids)))
    return query


async def get_statement(
    session: AsyncSession,
    program_id: uuid.UUID,
    *,
    principal: Principal,
    number: int | None = None,
    statement_id: uuid.UUID | None = None,
    partner: Partner | None = None,
) -> tuple[PartnerStatement, str]:
    """A statement by its number (of ``partner``) or its id, within the
    principal's tenant: any other is not found, as a missing one."""
    query = _readable(principal, program_id)
    if partner is not None:
        query = query.where(PartnerStatement.partner_id == partner.id)
    if number is not None:
        query = query.where(PartnerStatement.number == number)
    if statement_id is not None:
        query = query.where(PartnerStatement.id == statement_id)
    row = (await session.execute(query)).first()
    if row is None:
        raise NotFound(f"no statement {number if number is not None else statement_id}")
    return row[0], row[1]


async def read_statement(
    session: AsyncSession,
    program_id: uuid.UUID,
    *,
    principal: Principal,
    number: int | None = None,
    statement_id: uuid.UUID | None = None,
    partner: Partner | None = None,
) -> StatementView:
    statement, slug = await get_statement(
        session,
        program_id,
        principal=principal,
        number=number,
        statement_id=statement_id,
        partner=partner,
    )
    return await statement_view(session, slug, statement)


async def list_statements(
    session: AsyncSession,
    program_id: uuid.UUID,
    *,
    principal: Principal,
    partner: Partner | None = None,
    limit: int,
    cursor: str | None,
) -> Page[StatementView]:
    """Statements newest first: the partner's (operator), or those of the
    firms within the partner principal's reach."""
    query = _readable(principal, program_id)
    if partner is not None:
        query = query.where(PartnerStatement.partner_id == partner.id)
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(PartnerStatement.id < after)
    rows = (
        await session.execute(query.order_by(PartnerStatement.id.desc()).limit(limit + 1))
    ).all()
    views = [await statement_view(session, slug, statement) for statement, slug in rows[:limit]]
    ids = [statement.id for statement, _ in rows]
    if len(rows) > limit:
        return Page(items=views, next_cursor=encode_cursor(ids[limit - 1]))
    return page_of(views, ids, limit)


async def _plan_of(session: AsyncSession, program: Program, statement: PartnerStatement) -> Plan:
    """An issued statement's plan, from what it stored."""
    versions = await published_versions(session, statement.partner_id)
    previous = await session.scalar(
        select(PartnerStatement).where(
            PartnerStatement.partner_id == statement.partner_id,
            PartnerStatement.number == statement.number - 1,
        )
    )
    at_end = next(v for v in versions if v.version == statement.contract_version)
    liability = None
    if statement.kind == StatementKind.FINAL:
        liability = await stored_share(session, statement)
    return Plan(
        number=statement.number,
        period=Period(
            start=statement.period_start,
            end=statement.period_end,
            unit=statement.period_unit,
            zone=program.time_zone,
        ),
        label=statement.period_label,
        versions=[v for v in versions if v.published_at and v.published_at <= statement.issued_at],
        at_end=at_end,
        scan_from=statement.scan_from,
        settled_up_to=statement.settled_up_to,
        before=Carried(
            deferred_open_points=previous.deferred_open_points if previous else 0,
            prepaid_drawn_minor=previous.prepaid_drawn_minor if previous else 0,
        ),
        kind=StatementKind(statement.kind),
        liability_points=liability,
    )


async def recompute_statement(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    number: int,
    *,
    principal: Principal,
) -> Recomputation:
    """An issued statement computed again from the ledger, up to its own
    cutoff, beside the stored one: the same numbers, whatever was recorded
    since (late transfers go to the next statement)."""
    statement, slug = await get_statement(
        session, program.id, principal=principal, number=number, partner=partner
    )
    stored = await statement_view(session, slug, statement)
    plan = await _plan_of(session, program, statement)
    computed = await compute(ledger, program, statement.partner_id, plan, statement.cutoff)
    recomputed = draft_view(partner, plan, computed, statement.cutoff)
    same = [_compared(line) for line in stored.lines] == [
        _compared(line) for line in recomputed.lines
    ] and stored.total_minor == recomputed.total_minor
    return Recomputation(matches=same, stored=stored, recomputed=recomputed)


def _compared(line: StatementLineView) -> tuple[object, ...]:
    return (
        line.kind,
        line.late_period,
        line.contract_version,
        line.points,
        line.rate,
        line.amount_minor,
        line.tax_code,
        line.transfers,
    )


async def line_transfers(
    session: AsyncSession,
    ledger: Ledger,
    program_id: uuid.UUID,
    line: int,
    *,
    principal: Principal,
    number: int | None = None,
    statement_id: uuid.UUID | None = None,
    partner: Partner | None = None,
    limit: int,
    cursor: str | None,
) -> LineTransferPage:
    """The ledger transfers a line counts, newest first (a line derived
    from others, as a shortfall, has none)."""
    statement, _ = await get_statement(
        session,
        program_id,
        principal=principal,
        number=number,
        statement_id=statement_id,
        partner=partner,
    )
    stored = await session.scalar(
        select(PartnerStatementLine).where(
            PartnerStatementLine.statement_id == statement.id, PartnerStatementLine.line == line
        )
    )
    if stored is None:
        raise NotFound(f"no line {line} in statement {statement.number}")
    if stored.code is None or stored.account_id is None or stored.debit is None:
        return LineTransferPage(items=[])
    assert stored.business_from is not None
    assert stored.business_until is not None
    after = decode_cursor(cursor)
    window = StatementWindow(
        debited=(stored.account_id,),
        credited=(stored.account_id,),
        codes=(stored.code,),
        after=statement.scan_from,
        up_to=statement.cutoff,
        period_start=statement.period_start,
        period_end=statement.period_end,
        settled_up_to=statement.settled_up_to,
    )
    found = await ledger.statement_line_transfers(
        window,
        account_id=stored.account_id,
        debit=stored.debit,
        code=stored.code,
        business_from=stored.business_from,
        business_until=stored.business_until,
        before=after.int if after is not None else None,
        limit=limit + 1,
    )
    items = [
        LineTransfer(
            id=str(t.id),
            amount=t.amount,
            code=t.code,
            at=t.effective_at or t.created_at,
            recorded_at=t.created_at,
            timestamp=t.timestamp,
        )
        for t in found[:limit]
    ]
    more = len(found) > limit
    # The cursor carries the last ledger timestamp (as a UUID's 128 bits).
    return LineTransferPage(
        items=items,
        next_cursor=encode_cursor(uuid.UUID(int=found[limit - 1].timestamp)) if more else None,
    )
