"""A member's value to the program, up to a moment.

    revenue            = the member's purchases: the program's own (their
                         amount less what was returned) and those partners
                         reported with their issuances, in the program's
                         currency
    points cost        = (points redeemed + points outstanding) x point value
    relationship value = revenue - points cost   (the cost to serve)

Points redeemed (spent on rewards, in payments, at partners, converted;
cancellations given back) have cost the program their value; points still
outstanding (the wallet less what the member owes back after a return) are
a liability at that value; points that expired or were taken back by a
return cost nothing. The point value is the one in force at the moment
(``rewards.point_values``), rounded half to even to the minor unit. A gift
moves the cost from the giver to the receiver, with the points.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from core.errors import NotFound
from core.models import Member, Program
from core.principal import Principal
from finance.analytics.schemas import MemberValue
from finance.analytics.valuation import points_value_minor
from finance.report_dates import InvalidReportDate
from finance.revenue.breakage import NEUTRAL, REDEEMING, UNEXPIRING, UNREDEEMING
from ledger.account_activity import movement_sums
from ledger.bounds import check_moment
from partners.coalition_models import PartnerIssuance
from rewards.connections import session_connection
from rewards.models import Purchase
from rewards.point_values import value_on

#: Debits of a wallet that take earned points back (a return, a refund of bought points).
_TAKEN_BACK = frozenset({TransferCode.RETURN_REVERSAL, TransferCode.BOUGHT_POINTS_REFUND})
#: The smallest step of a timestamp: "up to the moment, included".
_TICK = timedelta(microseconds=1)


async def member_revenue(
    session: AsyncSession, program: Program, member: Member, as_of: datetime
) -> int:
    own = select(func.coalesce(func.sum(Purchase.amount_minor - Purchase.returned_minor), 0)).where(
        Purchase.member_id == member.id,
        Purchase.currency == program.currency,
        Purchase.occurred_at <= as_of,
    )
    at_partners = select(func.coalesce(func.sum(PartnerIssuance.purchase_amount_minor), 0)).where(
        PartnerIssuance.member_id == member.id,
        PartnerIssuance.currency == program.currency,
        PartnerIssuance.created_at <= as_of,
    )
    return int(await session.scalar(own) or 0) + int(await session.scalar(at_partners) or 0)


async def member_value(
    session: AsyncSession,
    program: Program,
    external_id: str,
    as_of: datetime,
    *,
    principal: Principal,
) -> MemberValue:
    if not principal.sees_program(program.id):
        raise NotFound(f"no program {program.slug!r}")
    member = await session.scalar(
        select(Member).where(Member.program_id == program.id, Member.external_id == external_id)
    )
    if member is None:
        raise NotFound(f"no member {external_id!r}")
    revenue = await member_revenue(session, program, member, as_of)
    wallet, debt = member.wallet_account_id, member.debt_account_id
    accounts = [wallet] + ([debt] if debt is not None else [])
    sums = await movement_sums(
        await session_connection(session),
        ledger=program.ledger_id,
        account_ids=accounts,
        until=as_of + _TICK,
    )
    earned = redeemed = balance = owed = 0
    for s in sums:
        if s.credit_account_id == wallet:
            balance += s.amount
            if s.code in UNREDEEMING:
                redeemed -= s.amount
            elif s.code not in NEUTRAL and s.code not in UNEXPIRING:
                earned += s.amount
        if s.debit_account_id == wallet:
            balance -= s.amount
            if s.code in REDEEMING:
                redeemed += s.amount
            elif s.code in _TAKEN_BACK:
                earned -= s.amount
        if debt is not None and s.debit_account_id == debt:
            owed += s.amount
        if debt is not None and s.credit_account_id == debt:
            owed -= s.amount
    outstanding = balance - owed
    value = await value_on(session, program, as_of)
    cost = points_value_minor(redeemed + outstanding, value)
    return MemberValue(
        member=member.external_id,
        as_of=as_of,
        revenue_minor=revenue,
        points_earned=earned,
        points_redeemed=redeemed,
        points_outstanding=outstanding,
        point_value_minor=format(value.normalize(), "f"),
        points_cost_minor=cost,
        relationship_value_minor=revenue - cost,
    )


def as_of_moment(text: str | None, now: datetime) -> datetime:
    """``text`` (ISO 8601 with its offset, years 1900 to 9998) or ``now``;
    ``InvalidReportDate`` for anything else."""
    if text is None:
        return now
    try:
        moment = datetime.fromisoformat(text)
        check_moment("as_of", moment)
    except ValueError as error:
        raise InvalidReportDate(f"as_of: {error}") from None
    if moment.tzinfo is None:
        raise InvalidReportDate("as_of: give the time's offset (e.g. 2026-01-31T23:59:59Z)")
    return moment
