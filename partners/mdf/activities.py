"""Activities requested against a fund, and the funder's decision.

The fund's partner requests an activity (a plan and an amount) while the
fund's period lasts; the funder (the operator, or the brand partner that
funds it) approves it, for all or part of the amount, or refuses it. An
approval commits its amount under the fund's row lock: of two approvals at
once the second sees the first's commitment, and the schema's CHECK
(``committed <= amount``) holds whatever the race, so a fund is never
overdrawn.

The request is the partner API's hot path: one statement reads the fund
(the caller's own, in its program), writes the activity, its audit line
and the funder's event, or writes nothing and answers why.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.errors import Forbidden, NotFound
from core.models import Program
from core.principal import Principal, PrincipalKind
from core.statement_batch import StatementBatch, fetch_one
from ledger import new_id
from partners import events
from partners.acting import partner_of
from partners.mdf.errors import FundClosed, FundExhausted, InvalidMdfRequest, WrongMdfState
from partners.mdf.models import ActivityStatus, MdfActivity, MdfFund
from partners.mdf.schemas import ActivityApproval, ActivityRequest, ActivityView, Refusal

_REQUEST = text("""
WITH f AS (
    SELECT f.id, f.program_id, f.funder_partner_id, f.reference, f.period_start, f.period_end,
        f.amount - f.committed AS remaining, g.slug AS program_slug
    FROM mdf_funds f JOIN programs g ON g.id = f.program_id
    WHERE f.id = :fund AND f.program_id = :program AND f.partner_id = :partner
), ok AS (
    SELECT * FROM f
    WHERE :today <= f.period_end AND :starts_on >= f.period_start
      AND :ends_on <= f.period_end AND :amount <= f.remaining
), made AS (
    INSERT INTO mdf_activities (id, program_id, fund_id, partner_id, title, plan, starts_on,
        ends_on, amount, status, claimed, paid, requested_by, created_at, updated_at)
    SELECT :id, ok.program_id, ok.id, :partner, :title, :plan, :starts_on, :ends_on, :amount,
        'requested', 0, 0, :actor, :now, :now
    FROM ok
    RETURNING id
), audited AS (
    INSERT INTO audit_events (id, actor, action, subject, details)
    SELECT :audit_id, :actor, 'mdf.activity_requested',
        concat_ws(':', 'program', ok.program_slug, 'mdf-fund', ok.reference, 'activity',
            CAST(:id_text AS text)),
        CAST(CAST(:details AS text) AS jsonb)
    FROM ok
), told AS (
    INSERT INTO outbox_events (id, topic, subject, payload)
    SELECT :event_id, :topic, 'partner:' || ok.funder_partner_id,
        CAST(CAST(:details AS text) AS jsonb)
    FROM ok WHERE ok.funder_partner_id IS NOT NULL
)
SELECT f.period_start, f.period_end, f.remaining, (SELECT count(*) FROM made) AS made FROM f
""")


async def request_activity(
    writer: AsyncSession | StatementBatch,
    fund_id: uuid.UUID,
    request: ActivityRequest,
    now: datetime,
    *,
    principal: Principal,
) -> ActivityView:
    """The fund's partner (the token's firm) requests an activity, audited
    (and told to a brand partner funder). Refused, writing nothing: a fund
    that is not the caller's (404), a period over (409 mdf-fund-closed),
    dates outside the period or more than the fund has left (422)."""
    program_id, partner_id = partner_of(principal)
    activity_id = new_id()
    details = {
        "activity_id": str(activity_id),
        "fund_id": str(fund_id),
        "title": request.title,
        "amount": request.amount,
        "starts_on": request.starts_on.isoformat(),
        "ends_on": request.ends_on.isoformat(),
    }
    row = await fetch_one(
        writer,
        _REQUEST,
        {
            "fund": fund_id,
            "program": program_id,
            "partner": partner_id,
            "today": now.date(),
            "starts_on": request.starts_on,
            "ends_on": request.ends_on,
            "amount": request.amount,
            "id": activity_id,
            "id_text": str(activity_id),
            "title": request.title,
            "plan": request.plan,
            "actor": principal.actor,
            "now": now,
            "audit_id": new_id(),
            "event_id": new_id(),
            "topic": events.MDF_ACTIVITY_REQUESTED,
            "details": msgspec.json.encode(details).decode(),
        },
    )
    if row is None:
        raise NotFound(f"no fund {fund_id}")
    if not row["made"]:
        if now.date() > row["period_end"]:
            raise FundClosed(f"the fund's period ended on {row['period_end']}")
        if request.starts_on < row["period_start"] or request.ends_on > row["period_end"]:
            raise InvalidMdfRequest(
                f"starts_on: the activity must lie within the fund's period"
                f" ({row['period_start']} to {row['period_end']})"
            )
        raise InvalidMdfRequest(f"amount: the fund has {row['remaining']} left to commit")
    return ActivityView(
        id=str(activity_id),
        fund_id=str(fund_id),
        title=request.title,
        plan=request.plan,
        starts_on=request.starts_on,
        ends_on=request.ends_on,
        amount=request.amount,
        status=ActivityStatus.REQUESTED,
        approved_amount=None,
        claimed=0,
        paid=0,
        decided_at=None,
        decision_note=None,
        created_at=now,
    )


def require_funder(principal: Principal, fund: MdfFund) -> None:
    """Only the funder decides: the operator (whose route's scope was
    checked), or the brand partner funding the fund. The fund's own
    partner is refused (403); anyone else does not see it (404)."""
    if principal.kind is not PrincipalKind.PARTNER:
        return
    if fund.funder_partner_id is not None and fund.funder_partner_id == principal.partner_id:
        return
    if fund.partner_id == principal.partner_id:
        raise Forbidden("only the fund's funder decides on its activities and claims")
    raise NotFound("not found")


def sees(principal: Principal, fund: MdfFund) -> bool:
    if principal.kind is not PrincipalKind.PARTNER:
        return True
    return principal.partner_id in (fund.partner_id, fund.funder_partner_id)


async def lock_fund(session: AsyncSession, fund_id: uuid.UUID) -> MdfFund:
    """The fund's row, locked to the end of the transaction: every change
    of its figures happens under it (a fund first, then its activity, then
    its claim: one order, no deadlock)."""
    fund = await session.scalar(
        select(MdfFund)
        .where(MdfFund.id == fund_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert fund is not None  # funds are never deleted
    return fund


async def locked_activity(
    session: AsyncSession, program: Program, activity_id: uuid.UUID, *, principal: Principal
) -> tuple[MdfFund, MdfActivity]:
    """The activity and its fund, both locked, if the principal sees them."""
    fund_id = await session.scalar(
        select(MdfActivity.fund_id).where(
            MdfActivity.id == activity_id, MdfActivity.program_id == program.id
        )
    )
    if fund_id is None:
        raise NotFound(f"no activity {activity_id}")
    fund = await lock_fund(session, fund_id)
    if not sees(principal, fund):
        raise NotFound(f"no activity {activity_id}")
    activity = await session.scalar(
        select(MdfActivity)
        .where(MdfActivity.id == activity_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert activity is not None
    return fund, activity


def activity_subject(program: Program, fund: MdfFund, activity: MdfActivity) -> str:
    return f"program:{program.slug}:mdf-fund:{fund.reference}:activity:{activity.id}"


async def approve_activity(
    session: AsyncSession,
    program: Program,
    activity_id: uuid.UUID,
    decision: ActivityApproval,
    now: datetime,
    *,
    principal: Principal,
) -> ActivityView:
    """The funder approves a requested activity for ``decision.amount`` (all
    of it if left out), committing it in the fund. Approving it again with
    the same amount answers it; otherwise 409 mdf-wrong-state. Refused: an
    amount above the request (422), a period over (409 mdf-fund-closed),
    a fund that has not that much left (409 mdf-fund-exhausted)."""
    fund, activity = await locked_activity(session, program, activity_id, principal=principal)
    require_funder(principal, fund)
    amount = decision.amount if decision.amount is not None else activity.amount
    if activity.status == ActivityStatus.APPROVED and activity.approved_amount == amount:
        return ActivityView.of(activity)
    if activity.status != ActivityStatus.REQUESTED:
        raise WrongMdfState(f"the activity is {activity.status}: it was decided already")
    if amount > activity.amount:
        raise InvalidMdfRequest(f"amount: the activity asked for {activity.amount}")
    if now.date() > fund.period_end:
        raise FundClosed(f"the fund's period ended on {fund.period_end}")
    if fund.committed + amount > fund.amount:
        raise FundExhausted(
            f"the fund has {fund.amount - fund.committed} left to commit, not {amount}"
        )
    fund.committed += amount
    activity.status = ActivityStatus.APPROVED
    activity.approved_amount = amount
    activity.decided_by = principal.actor
    activity.decided_at = now
    activity.decision_note = decision.note
    await session.flush()
    await _decided(session, program, fund, activity, principal, {"approved_amount": amount})
    return ActivityView.of(activity)


async def refuse_activity(
    session: AsyncSession,
    program: Program,
    activity_id: uuid.UUID,
    decision: Refusal,
    now: datetime,
    *,
    principal: Principal,
) -> ActivityView:
    """The funder refuses a requested activity (commits nothing). Refusing
    it again answers it; an approved one is 409 mdf-wrong-state."""
    fund, activity = await locked_activity(session, program, activity_id, principal=principal)
    require_funder(principal, fund)
    if activity.status == ActivityStatus.REFUSED:
        return ActivityView.of(activity)
    if activity.status != ActivityStatus.REQUESTED:
        raise WrongMdfState(f"the activity is {activity.status}: it was decided already")
    activity.status = ActivityStatus.REFUSED
    activity.decided_by = principal.actor
    activity.decided_at = now
    activity.decision_note = decision.reason
    await session.flush()
    await _decided(session, program, fund, activity, principal, {"reason": decision.reason})
    return ActivityView.of(activity)


async def _decided(
    session: AsyncSession,
    program: Program,
    fund: MdfFund,
    activity: MdfActivity,
    principal: Principal,
    details: dict[str, object],
) -> None:
    action = f"mdf.activity_{activity.status}"
    await audit.record(
        session, principal, action, activity_subject(program, fund, activity), details
    )
    await outbox.emit(
        session,
        events.MDF_ACTIVITY_DECIDED,
        events.subject(fund.partner_id),
        {
            "activity_id": str(activity.id),
            "fund_id": str(fund.id),
            "status": activity.status,
            **details,
        },
    )


async def get_activity(
    session: AsyncSession, program: Program, activity_id: uuid.UUID, *, principal: Principal
) -> ActivityView:
    row = (
        await session.execute(
            select(MdfActivity, MdfFund)
            .join(MdfFund, MdfFund.id == MdfActivity.fund_id)
            .where(MdfActivity.id == activity_id, MdfActivity.program_id == program.id)
        )
    ).one_or_none()
    if row is None or not sees(principal, row[1]):
        raise NotFound(f"no activity {activity_id}")
    return ActivityView.of(row[0])


async def list_activities(
    session: AsyncSession, program: Program, fund: MdfFund, *, limit: int, after: uuid.UUID | None
) -> tuple[list[ActivityView], list[uuid.UUID]]:
    """A fund's activities, newest first (the caller checked it sees the fund)."""
    query = select(MdfActivity).where(
        MdfActivity.fund_id == fund.id, MdfActivity.program_id == program.id
    )
    if after is not None:
        query = query.where(MdfActivity.id < after)
    found = list(await session.scalars(query.order_by(MdfActivity.id.desc()).limit(limit + 1)))
    return [ActivityView.of(a) for a in found], [a.id for a in found]
