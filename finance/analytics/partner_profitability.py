"""What each partner brought the program in a month (of the program's
zone): the points it issued and the points redeemed at it (the points
ledger: its issuance and acceptance accounts), what it was billed and paid
in, what the program came to owe it and paid out (the money ledger in its
currency: its receivable and payable accounts), and its position.

    net contribution = billed - reimbursed
    balance          = receivable - payable, at the month's end (what it
                       owes the program net of what the program owes it)

Reimbursed counts what its payable was credited with (redemptions at it,
referral rewards, development funds) less refunds billed back to its
receivable; paid in counts payments received and prepaid credit drawn.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import calendar
from core.codes import AccountCode, TransferCode, money_account_id, partner_account_id
from core.errors import NotFound
from core.models import Program
from core.principal import Principal
from finance.analytics.schemas import PartnerProfitability, PartnerProfitabilityLine
from finance.report_dates import Period, accounting_zone
from ledger import Ledger
from ledger.account_activity import MovementSum, movement_sums
from partners.models import Partner
from partners.money_ledger import ledger_name
from rewards.connections import session_connection

_BILLED = frozenset({TransferCode.PARTNER_SETTLEMENT, TransferCode.PARTNER_LIABILITY_TRANSFER})
_PAID_IN = frozenset({TransferCode.PARTNER_PAYMENT, TransferCode.PARTNER_PREPAID_DRAWN})


def _total(
    sums: Iterable[MovementSum],
    *,
    debit: uuid.UUID | None = None,
    credit: uuid.UUID | None = None,
    codes: frozenset[int] | None = None,
) -> int:
    return sum(
        s.amount
        for s in sums
        if (debit is None or s.debit_account_id == debit)
        and (credit is None or s.credit_account_id == credit)
        and (codes is None or s.code in codes)
    )


async def partner_profitability(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    period: Period,
    *,
    principal: Principal,
) -> PartnerProfitability:
    if not principal.sees_program(program.id):
        raise NotFound(f"no program {program.slug!r}")
    connection = await session_connection(session)
    zone = await accounting_zone(connection, program.ledger_id)
    start, end = calendar.month_bounds(period.first_day, zone)
    partners = list(
        await session.scalars(
            select(Partner).where(Partner.program_id == program.id).order_by(Partner.slug)
        )
    )
    money_ledgers: dict[str, int | None] = {}
    lines = []
    for partner in partners:
        issuance = partner_account_id(program.id, partner.id, AccountCode.PARTNER_ISSUANCE)
        acceptance = partner_account_id(program.id, partner.id, AccountCode.PARTNER_ACCEPTANCE)
        points = await movement_sums(
            connection,
            ledger=program.ledger_id,
            account_ids=[issuance, acceptance],
            since=start,
            until=end,
        )
        currency = partner.currency or program.currency
        if currency not in money_ledgers:
            found = await ledger.ledger_named(ledger_name(program, currency))
            money_ledgers[currency] = found.id if found is not None else None
        money_id = money_ledgers[currency]
        receivable = money_account_id(
            program.id, currency, AccountCode.PARTNER_RECEIVABLE, partner.id
        )
        payable = money_account_id(program.id, currency, AccountCode.PARTNER_PAYABLE, partner.id)
        period_money: list[MovementSum] = []
        to_date: list[MovementSum] = []
        if money_id is not None:
            period_money = await movement_sums(
                connection,
                ledger=money_id,
                account_ids=[receivable, payable],
                since=start,
                until=end,
            )
            to_date = await movement_sums(
                connection, ledger=money_id, account_ids=[receivable, payable], until=end
            )
        billed = _total(period_money, debit=receivable, codes=_BILLED)
        reimbursed = _total(period_money, credit=payable) - _total(
            period_money, debit=receivable, codes=frozenset({TransferCode.PARTNER_REIMBURSEMENT})
        )
        owes = _total(to_date, debit=receivable) - _total(to_date, credit=receivable)
        owed = _total(to_date, credit=payable) - _total(to_date, debit=payable)
        lines.append(
            PartnerProfitabilityLine(
                partner=partner.slug,
                currency=currency,
                points_issued=_total(
                    points, debit=issuance, codes=frozenset({TransferCode.PARTNER_ISSUANCE})
                ),
                points_redeemed=_total(
                    points, credit=acceptance, codes=frozenset({TransferCode.PARTNER_ACCEPTANCE})
                )
                - _total(
                    points,
                    debit=acceptance,
                    codes=frozenset({TransferCode.PARTNER_ACCEPTANCE_REFUND}),
                ),
                billed_minor=billed,
                paid_in_minor=_total(period_money, credit=receivable, codes=_PAID_IN),
                reimbursed_minor=reimbursed,
                paid_out_minor=_total(
                    period_money, debit=payable, codes=frozenset({TransferCode.PARTNER_PAYOUT})
                ),
                net_contribution_minor=billed - reimbursed,
                balance_minor=owes - owed,
            )
        )
    return PartnerProfitability(period=period.first_day.strftime("%Y-%m"), partners=lines)
