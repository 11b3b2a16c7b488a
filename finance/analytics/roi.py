"""Return on the program and on a joint campaign.

Program, for a month (accounting days of the program's zone):

    revenue = the program's own purchases (less returns)
              + what its partners' statements billed them
    cost    = points the program itself issued to wallets (less those a
              return or refund took back) x the point value at the month's end
              + what it came to owe partners for points redeemed at them
    roi     = (revenue - cost) / cost

Revenue is gross, not incremental: the ratio compares months of one
program. The point totals come from the ledger's daily aggregates
(``ledger.lots.daily_totals``), not from a scan of transfers.

Campaign: its attribution (``partners.campaigns.attribution``) gives the
uplift per targeted member against the holdout; the uplift revenue is that
times the targeted members, the cost its bonus points at today's value:

    roi = (uplift revenue - bonus cost) / bonus cost
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import calendar
from core.codes import AccountCode, TransferCode
from core.errors import NotFound
from core.models import Program
from core.principal import Principal
from finance.analytics.schemas import CampaignRoi, ProgramRoi
from finance.analytics.valuation import points_value_minor, ratio
from finance.report_dates import Period, accounting_zone
from ledger import Ledger, lots
from partners.campaigns.attribution import campaign_attribution
from partners.money_ledger import ledger_name
from rewards.connections import session_connection
from rewards.models import Purchase
from rewards.point_values import value_on

_TAKEN_BACK = frozenset({TransferCode.RETURN_REVERSAL, TransferCode.BOUGHT_POINTS_REFUND})
_BILLED = frozenset({TransferCode.PARTNER_SETTLEMENT, TransferCode.PARTNER_LIABILITY_TRANSFER})


async def program_roi(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    period: Period,
    *,
    principal: Principal,
) -> ProgramRoi:
    if not principal.sees_program(program.id):
        raise NotFound(f"no program {program.slug!r}")
    zone = await accounting_zone(await session_connection(session), program.ledger_id)
    start, end = calendar.month_bounds(period.first_day, zone)
    member_revenue = int(
        await session.scalar(
            select(
                func.coalesce(func.sum(Purchase.amount_minor - Purchase.returned_minor), 0)
            ).where(
                Purchase.program_id == program.id,
                Purchase.currency == program.currency,
                Purchase.occurred_at >= start,
                Purchase.occurred_at < end,
            )
        )
        or 0
    )
    connection = await session_connection(session)
    issued = 0
    for line in await lots.daily_totals(
        connection, ledger=program.ledger_id, first_day=period.first_day, last_day=period.last_day
    ):
        wallet, issuance = AccountCode.MEMBER_WALLET, AccountCode.ISSUANCE
        if line.debit_account_code == issuance and line.credit_account_code == wallet:
            issued += line.amount
        elif (
            line.debit_account_code == wallet
            and line.credit_account_code == issuance
            and line.code in _TAKEN_BACK
        ):
            issued -= line.amount
    billed = reimbursed = 0
    money = await ledger.ledger_named(ledger_name(program, program.currency))
    if money is not None:
        for line in await lots.daily_totals(
            connection, ledger=money.id, first_day=period.first_day, last_day=period.last_day
        ):
            if line.code in _BILLED and line.credit_account_code == AccountCode.PARTNER_REVENUE:
                billed += line.amount
            elif line.code == TransferCode.PARTNER_REIMBURSEMENT:
                if line.credit_account_code == AccountCode.PARTNER_PAYABLE:
                    reimbursed += line.amount
                elif line.debit_account_code == AccountCode.PARTNER_RECEIVABLE:
                    reimbursed -= line.amount
    value = await value_on(session, program, end)
    points_cost = points_value_minor(issued, value)
    revenue, cost = member_revenue + billed, points_cost + reimbursed
    return ProgramRoi(
        period=period.first_day.strftime("%Y-%m"),
        member_revenue_minor=member_revenue,
        partner_revenue_minor=billed,
        points_issued=issued,
        points_cost_minor=points_cost,
        partner_reimbursements_minor=reimbursed,
        roi=ratio(revenue - cost, cost),
    )


async def campaign_roi(
    session: AsyncSession,
    program: Program,
    campaign_id: uuid.UUID,
    now: datetime,
    *,
    principal: Principal,
) -> CampaignRoi:
    attribution = await campaign_attribution(
        session, program, campaign_id, now, principal=principal
    )
    targeted = attribution.targeted.members
    uplift = attribution.uplift_per_member_minor * targeted
    cost = points_value_minor(attribution.bonus_points, await value_on(session, program, now))
    return CampaignRoi(
        campaign=attribution.campaign,
        targeted_members=targeted,
        uplift_per_member_minor=attribution.uplift_per_member_minor,
        uplift_revenue_minor=uplift,
        bonus_points=attribution.bonus_points,
        bonus_cost_minor=cost,
        roi=ratio(uplift - cost, cost),
    )
