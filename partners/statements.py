"""Partners' statements: computed from the ledger, issued once, immutable.

A statement belongs to a contract holder and a settlement period (the
contract's, in the program's time zone). It reads the transfers of the
holder's issuance and acceptance accounts recorded up to its **cutoff** (a
ledger timestamp, taken when it is computed), so computing it again gives
the same numbers whatever was recorded since. Of those it counts the ones
whose business time (``effective_at``, else when recorded) falls in its
period, and the **late** ones: recorded after the previous statement's
cutoff with a business time in a period already closed, which become
adjustment lines naming their period. Together the statements count every
transfer exactly once. Issuing stores the lines and posts them on the
money ledger (``partners.money_ledger``) in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.models import Program
from core.principal import Principal
from ledger import Ledger, StatementWindow
from partners import events
from partners.coalition_models import ContractStatus, PartnerContract
from partners.contracts import acceptance_account, issuance_account, lock_partner
from partners.departure_models import PartnerDeparture
from partners.models import Partner
from partners.money_ledger import money_ledger, open_money_accounts, post_statement
from partners.settlement_periods import UNITS, label_of, period_of
from partners.statement_errors import NotContractHolder, StatementPeriodRefused
from partners.statement_lines import (
    READ_CODES,
    Carried,
    Computed,
    Period,
    compute_lines,
)
from partners.statement_models import (
    Direction,
    PartnerStatement,
    PartnerStatementLine,
    PaymentStatus,
    StatementKind,
)
from partners.statement_schemas import StatementRequest, StatementView
from partners.statement_views import draft_view, replayed, statement_view

_CODES = tuple(sorted({code for code, _ in READ_CODES}))


@dataclass(frozen=True)
class Plan:
    """What a statement reads: its period, its window of ledger timestamps,
    the versions in force over it and what the previous one carried."""

    number: int
    period: Period
    label: str
    versions: list[PartnerContract]
    at_end: PartnerContract
    scan_from: int
    settled_up_to: int
    before: Carried
    kind: StatementKind = StatementKind.REGULAR
    #: A final statement's share of the outstanding points (its liability line).
    liability_points: int | None = None


async def published_versions(session: AsyncSession, holder_id: uuid.UUID) -> list[PartnerContract]:
    """The holder's published versions in the order of their starts; of two
    with the same start the later version (the one in force)."""
    rows = list(
        await session.scalars(
            select(PartnerContract)
            .where(
                PartnerContract.partner_id == holder_id,
                PartnerContract.status == ContractStatus.PUBLISHED,
            )
            .order_by(PartnerContract.effective_from, PartnerContract.version)
        )
    )
    by_start: dict[datetime, PartnerContract] = {}
    for row in rows:
        assert row.effective_from is not None
        by_start[row.effective_from] = row
    return list(by_start.values())


def _in_force(
    versions: list[PartnerContract], at: datetime, *, before: bool = False
) -> PartnerContract:
    """The version in force at ``at`` (just before it with ``before``); the
    first one for a moment before every start."""
    chosen = versions[0]
    for version in versions:
        assert version.effective_from is not None
        if version.effective_from < at or (not before and version.effective_from == at):
            chosen = version
    return chosen


async def _last(session: AsyncSession, holder_id: uuid.UUID) -> PartnerStatement | None:
    return await session.scalar(
        select(PartnerStatement)
        .where(PartnerStatement.partner_id == holder_id)
        .order_by(PartnerStatement.number.desc())
        .limit(1)
    )


async def plan_next(session: AsyncSession, program: Program, holder: Partner) -> Plan:
    """The holder's next statement: the period after its last one (or the
    one its first contract version starts in)."""
    versions = await published_versions(session, holder.id)
    if not versions:
        raise NotContractHolder(
            f"partner {holder.slug!r} has no published contract of its own: its statements"
            " are those of the firm whose contract it acts under"
        )
    zone = program.time_zone
    last = await _last(session, holder.id)
    if last is None:
        first = versions[0]
        assert first.effective_from is not None
        unit = UNITS[first.settlement_period]
        start, end = period_of(first.effective_from, unit, zone)
    else:
        start = last.period_end
        unit = UNITS[_in_force(versions, start).settlement_period]
        end = period_of(start, unit, zone)[1]
    period = Period(start=start, end=end, unit=unit, zone=zone)
    return Plan(
        number=(last.number if last else 0) + 1,
        period=period,
        label=label_of(start, unit, zone),
        versions=versions,
        at_end=_in_force(versions, end, before=True),
        scan_from=_scan_from(last),
        settled_up_to=last.cutoff if last else 0,
        before=Carried(
            deferred_open_points=last.deferred_open_points if last else 0,
            prepaid_drawn_minor=last.prepaid_drawn_minor if last else 0,
        ),
    )


def final_plan(plan: Plan, ends_at: datetime, liability_points: int) -> Plan:
    """A leaving partner's final statement: its next period cut short at
    ``ends_at`` (its valuation instant, within that period), under the
    version in force just before then, with the liability line for its
    share ``liability_points`` of the outstanding points."""
    if not plan.period.start < ends_at <= plan.period.end:
        raise StatementPeriodRefused(
            f"period: the next statement of the partner is {plan.label}; its final statement"
            f" ends at {ends_at.isoformat()}, outside it"
        )
    return replace(
        plan,
        period=replace(plan.period, end=ends_at),
        at_end=_in_force(plan.versions, ends_at, before=True),
        kind=StatementKind.FINAL,
        liability_points=liability_points,
    )


def _scan_from(last: PartnerStatement | None) -> int:
    """Where the next statement starts reading: after the last cutoff, or
    before the first transfer of a later period the last one saw (recorded
    before its cutoff, but the next one's to count)."""
    if last is None:
        return 0
    if last.carry_from is not None:
        return min(last.cutoff, last.carry_from - 1)
    return last.cutoff


def _window(program: Program, holder_id: uuid.UUID, plan: Plan, cutoff: int) -> StatementWindow:
    return StatementWindow(
        debited=(issuance_account(program, holder_id), acceptance_account(program, holder_id)),
        credited=(acceptance_account(program, holder_id),),
        codes=_CODES,
        after=plan.scan_from,
        up_to=cutoff,
        period_start=plan.period.start,
        period_end=plan.period.end,
        settled_up_to=plan.settled_up_to,
    )


async def compute(
    ledger: Ledger, program: Program, holder_id: uuid.UUID, plan: Plan, cutoff: int
) -> Computed:
    """The statement's lines from the ledger, summed in the database."""
    window = _window(program, holder_id, plan, cutoff)
    sums = await ledger.statement_sums(
        window,
        version_starts=[v.effective_from for v in plan.versions if v.effective_from],
        period_unit=plan.period.unit,
        time_zone=plan.period.zone,
    )
    return compute_lines(
        sums,
        versions=plan.versions,
        at_end=plan.at_end,
        period=plan.period,
        before=plan.before,
        regular=plan.kind == StatementKind.REGULAR,
        liability_points=plan.liability_points,
    )


async def cutoff_of(ledger: Ledger, program: Program, holder_id: uuid.UUID, plan: Plan) -> int:
    latest = await ledger.latest_timestamp(
        [issuance_account(program, holder_id), acceptance_account(program, holder_id)]
    )
    return max(latest, plan.settled_up_to)


async def draft_statement(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    *,
    principal: Principal,
) -> StatementView:
    """The partner's next statement as it stands now, stored nowhere (its
    period may still be running). ``partner`` comes from a look-up within
    the principal's tenant."""
    plan = await plan_next(session, program, partner)
    cutoff = await cutoff_of(ledger, program, partner.id, plan)
    computed = await compute(ledger, program, partner.id, plan, cutoff)
    return draft_view(partner, plan, computed, cutoff)


async def issue_statement(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    request: StatementRequest,
    now: datetime,
    *,
    principal: Principal,
) -> tuple[StatementView, bool]:
    """Issue the partner's statement of ``request.period``, which must be its
    next and have ended; and whether it is new. The same period again
    answers the statement issued (``replayed``) and writes nothing. Under
    the partner's row lock: of two at once, the second finds the first's.
    Stores the lines, writes the audit line and ``partner.statement_issued``,
    and posts the money (last: the ledger's lock is held to the commit)."""
    partner = await lock_partner(session, partner)
    existing = await session.scalar(
        select(PartnerStatement).where(
            PartnerStatement.partner_id == partner.id,
            PartnerStatement.kind == StatementKind.REGULAR,
            PartnerStatement.period_label == request.period,
        )
    )
    if existing is not None:
        view = await statement_view(session, partner, existing)
        return replayed(view), False
    plan = await plan_next(session, program, partner)
    if request.period != plan.label:
        raise StatementPeriodRefused(
            f"period: the next statement of partner {partner.slug!r} is {plan.label},"
            f" not {request.period}"
        )
    if plan.period.end > now:
        raise StatementPeriodRefused(
            f"period: {plan.label} ends at {plan.period.end.isoformat()}; a statement is"
            " issued once its period has ended (its draft can be read meanwhile)"
        )
    leaves_at = await session.scalar(
        select(PartnerDeparture.valuation_at).where(PartnerDeparture.partner_id == partner.id)
    )
    if leaves_at is not None and plan.period.end >= leaves_at:
        raise StatementPeriodRefused(
            f"period: partner {partner.slug!r} leaves at {leaves_at.isoformat()}, within"
            f" {plan.label}: that period is settled by its final statement"
            " (POST .../departure/final-statement)"
        )
    cutoff = await cutoff_of(ledger, program, partner.id, plan)
    computed = await compute(ledger, program, partner.id, plan, cutoff)
    statement, view = await record_statement(
        session, ledger, program, partner, plan, computed, cutoff, now, principal=principal
    )
    await post_issued(session, ledger, program, statement, computed)
    return view, True


async def record_statement(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    plan: Plan,
    computed: Computed,
    cutoff: int,
    now: datetime,
    *,
    principal: Principal,
) -> tuple[PartnerStatement, StatementView]:
    """Store an issued statement and its lines, with its audit line and
    ``partner.statement_issued``. The caller posts it (``post_issued``)
    last, under the partner's row lock taken before it was planned."""
    statement = await _store(session, ledger, program, partner, plan, computed, cutoff, now)
    view = await statement_view(session, partner, statement)
    subject = f"program:{program.slug}:partner:{partner.slug}:statement:{statement.number}"
    await audit.record(
        session,
        principal,
        "partner.statement.issue",
        subject,
        {
            "period": plan.label,
            "kind": plan.kind,
            "total_minor": view.total_minor,
            "cutoff": cutoff,
        },
    )
    await outbox.emit(
        session,
        events.STATEMENT_ISSUED,
        events.subject(partner.id),
        {
            "statement_id": view.id,
            "number": view.number,
            "kind": view.kind,
            "period": view.period,
            "currency": view.currency,
            "total_minor": view.total_minor,
            "direction": view.direction,
        },
    )
    return statement, view


async def post_issued(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    statement: PartnerStatement,
    computed: Computed,
) -> None:
    """Post a statement just recorded on the money ledger. Last in its use
    case: from here to the commit the transaction holds the ledger's lock."""
    await post_statement(
        session,
        ledger,
        program,
        statement_id=statement.id,
        partner_id=statement.partner_id,
        currency=statement.currency,
        ledger_id=statement.money_ledger_id,
        lines=[(number, line) for number, line in enumerate(computed.lines, 1)],
    )


async def _store(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    plan: Plan,
    computed: Computed,
    cutoff: int,
    now: datetime,
) -> PartnerStatement:
    currency = plan.at_end.currency
    money = await money_ledger(session, ledger, program, currency)
    await open_money_accounts(ledger, program, currency, money, partner.id)
    direction = computed.direction
    statement = PartnerStatement(
        program_id=program.id,
        partner_id=partner.id,
        number=plan.number,
        kind=plan.kind,
        period_label=plan.label,
        period_unit=plan.period.unit,
        period_start=plan.period.start,
        period_end=plan.period.end,
        currency=currency,
        contract_version=plan.at_end.version,
        scan_from=plan.scan_from,
        settled_up_to=plan.settled_up_to,
        cutoff=cutoff,
        carry_from=computed.carry_from,
        deferred_open_points=computed.carried.deferred_open_points,
        prepaid_drawn_minor=computed.carried.prepaid_drawn_minor,
        billed_minor=computed.billed_minor,
        reimbursed_minor=computed.reimbursed_minor,
        total_minor=computed.total_minor,
        direction=direction,
        payment_status=PaymentStatus.DUE
        if direction == Direction.PARTNER_OWES
        else PaymentStatus.NONE,
        paid_minor=0,
        money_ledger_id=money,
        issued_at=now,
    )
    session.add(statement)
    await session.flush()
    session.add_all(
        PartnerStatementLine(
            statement_id=statement.id,
            line=number,
            kind=line.kind,
            late_period=line.late_period,
            contract_version=line.contract_version,
            points=line.points,
            rate=line.rate,
            amount_minor=line.amount_minor,
            tax_code=line.tax_code,
            account_id=line.account_id,
            debit=line.debit,
            code=line.code,
            business_from=line.business_from,
            business_until=line.business_until,
            transfers=line.transfers,
        )
        for number, line in enumerate(computed.lines, 1)
    )
    await session.flush()
    return statement
