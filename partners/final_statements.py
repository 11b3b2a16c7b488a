"""A leaving partner's final statement: its last period, cut short at its
valuation instant, carrying the liability line for its share of the
outstanding points; then the firm, and its member companies acting under
its contract, are offboarded.

The statement is the partner's next one, computed, stored and posted on
the money ledger as every statement is (``partners.statements``); only
its plan differs (``final_plan``). The liability line bills the part of
the contract's price not billed yet (the deferred part of a split price)
for the partner's share of the outstanding points
(``partners.departure_figures``), never for more points than it issued and
was not yet billed for: the program takes those points over, their
holders keep them (no point moves), and the money moves by code 166
(``PARTNER_LIABILITY_TRANSFER``). A price billed wholly at issuance leaves
0 to bill: the partner has paid for its points already.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import DomainError
from core.models import Program
from core.modules import JobContext
from core.principal import Principal, system
from ledger import Ledger
from partners.contracts import contract_holder, lock_partner
from partners.departure_errors import DepartureNotDue
from partners.departure_figures import keep, measure
from partners.departure_models import PartnerDeparture
from partners.departures import get_departure, subject
from partners.firm_schemas import StatusMove
from partners.firms import change_status
from partners.hierarchy import descendants, lock_hierarchy
from partners.models import Partner, PartnerStatus
from partners.statement_models import LineKind, PartnerStatement
from partners.statement_schemas import StatementRequest, StatementView
from partners.statement_views import replayed, statement_view
from partners.statements import (
    compute,
    cutoff_of,
    final_plan,
    issue_statement,
    plan_next,
    post_issued,
    record_statement,
)

log = logging.getLogger(__name__)

#: How long after the valuation instant the final statement waits: a
#: capture or refund let through just before the instant has committed by
#: then, so the statement reads it (there is no statement after it to
#: carry a late one into).
FINAL_STATEMENT_DELAY = timedelta(minutes=10)
#: Who the job acts as, in the audit trail and the status history.
CLOSER = system("issue-final-statements")


async def issue_final_statement(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    now: datetime,
    *,
    principal: Principal,
) -> tuple[StatementView, bool]:
    """Issue the partner's final statement, once its valuation instant has
    passed (by ``FINAL_STATEMENT_DELAY``) and its regular statements up to
    the period of that instant are issued; and whether it is new. Issued
    already: answered again (``replayed``), nothing written. Offboards the
    firm and its member companies under its contract in the same
    transaction; posts the money last. ``partner`` comes from a look-up
    within the principal's tenant."""
    # The order every hierarchy change takes its locks in: the program's
    # hierarchy, then the firm's row.
    await lock_hierarchy(session, program)
    partner = await lock_partner(session, partner)
    departure = await get_departure(session, partner)
    if departure.final_statement_id is not None:
        statement = await session.get_one(PartnerStatement, departure.final_statement_id)
        return replayed(await statement_view(session, partner, statement)), False
    due = departure.valuation_at + FINAL_STATEMENT_DELAY
    if now < due:
        raise DepartureNotDue(
            f"partner {partner.slug!r} is valued at {departure.valuation_at.isoformat()}: its"
            f" final statement is issued from {due.isoformat()}"
        )
    plan = await plan_next(session, program, partner)
    if plan.period.end < departure.valuation_at:
        raise DepartureNotDue(
            f"the statement of {plan.label} comes before partner {partner.slug!r}'s final"
            " statement: issue it first (the issue-final-statements job does)"
        )
    figures = await measure(ledger, program, partner.id, departure.valuation_at, now=False)
    final = final_plan(plan, departure.valuation_at, figures.points_outstanding)
    cutoff = await cutoff_of(ledger, program, partner.id, final)
    computed = await compute(ledger, program, partner.id, final, cutoff)
    statement, view = await record_statement(
        session, ledger, program, partner, final, computed, cutoff, now, principal=principal
    )
    departure.final_statement_id = statement.id
    keep(departure, figures)
    await session.flush()
    [liability] = [line for line in computed.lines if line.kind == LineKind.LIABILITY]
    await audit.record(
        session,
        principal,
        "partner.departure.final",
        subject(program, partner),
        {
            "statement": statement.number,
            "points_outstanding": figures.points_outstanding,
            "liability_points": liability.points,
            "liability_minor": liability.amount_minor,
        },
    )
    await _offboard(session, program, partner, statement, principal=principal)
    await post_issued(session, ledger, program, statement, computed)
    return view, True


async def _offboard(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    statement: PartnerStatement,
    *,
    principal: Principal,
) -> None:
    """Offboard the member companies acting under the partner's contract,
    the deepest first, then the partner (``change_status`` refuses a firm
    whose member companies are still in the coalition: one with a contract
    of its own leaves, or moves to another group, first)."""
    move = StatusMove(
        status=PartnerStatus.OFFBOARDED,
        reason=f"left the coalition: final statement {statement.number}",
    )
    below = await descendants(session, partner.id)
    for company_id, _ in sorted(below.items(), key=lambda item: -item[1]):
        if company_id == partner.id:
            continue
        if await contract_holder(session, program, company_id) != partner.id:
            continue
        company = await session.get_one(Partner, company_id)
        await change_status(session, program, company, move, principal=principal)
    await change_status(session, program, partner, move, principal=principal)


async def issue_due_final_statements(context: JobContext) -> int:
    """The job: each departure whose valuation instant has passed gets its
    final statement, after the regular statements still due before it
    (each in a transaction of its own, as an operator would issue them).
    A departure refused (a group whose member company with a contract of
    its own is still in the coalition, say) is logged and tried again at
    the next run. Answers how many final statements it issued."""
    async with context.sessions() as session:
        due = (
            await session.execute(
                select(PartnerDeparture.program_id, PartnerDeparture.partner_id).where(
                    PartnerDeparture.final_statement_id.is_(None),
                    PartnerDeparture.valuation_at <= context.now - FINAL_STATEMENT_DELAY,
                )
            )
        ).all()
    issued = 0
    for program_id, partner_id in due:
        try:
            await _catch_up(context, program_id, partner_id)
            async with context.sessions() as session:
                program = await session.get_one(Program, program_id)
                partner = await session.get_one(Partner, partner_id)
                _, created = await issue_final_statement(
                    session, context.ledger, program, partner, context.now, principal=CLOSER
                )
                await session.commit()
            issued += created
        except DomainError as refusal:
            log.warning("no final statement for partner %s yet: %s", partner_id, refusal)
    return issued


async def _catch_up(context: JobContext, program_id: uuid.UUID, partner_id: uuid.UUID) -> None:
    """Issue the partner's regular statements of the periods that end
    before its valuation instant and are not issued yet."""
    while True:
        async with context.sessions() as session:
            program = await session.get_one(Program, program_id)
            partner = await session.get_one(Partner, partner_id)
            departure = await get_departure(session, partner)
            plan = await plan_next(session, program, partner)
            if plan.period.end >= departure.valuation_at:
                return
            _, created = await issue_statement(
                session,
                context.ledger,
                program,
                partner,
                StatementRequest(period=plan.label),
                context.now,
                principal=CLOSER,
            )
            await session.commit()
            if not created:
                return
