"""Issued statements move money on a money ledger per program and currency:
what a partner owes and is owed is an account balance, which reconciles
with the statements, payments and payouts to the minor unit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from ledger import Ledger
from partners.money_ledger import ledger_name, money_balances
from partners.payouts import record_payment, record_payout
from partners.statement_errors import PaymentRefused
from partners.statement_schemas import PaymentRequest, PayoutRequest, StatementRequest
from partners.statements import issue_statement
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import OPERATOR, enrolled, rollback
from tests.partners.conftest import NewPartner
from tests.partners.settlement_helpers import label, months_back, move, settled_partner


async def test_balances_reconcile_with_statements_payments_and_payouts(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await settled_partner(session, ledger, program, new_partner)
    member = await enrolled(session, ledger, program)
    two_back, _ = months_back(2)
    one_back, _ = months_back(1)
    now = datetime.now(UTC)
    # Month 1: issued 10,000 (15000 owed), 2,000 redeemed (2000 owed back): net 13000.
    await move(
        ledger,
        program,
        partner,
        member,
        TransferCode.PARTNER_ISSUANCE,
        10_000,
        two_back + timedelta(days=1),
    )
    await move(
        ledger,
        program,
        partner,
        member,
        TransferCode.PARTNER_ACCEPTANCE,
        2_000,
        two_back + timedelta(days=2),
    )
    first, _ = await issue_statement(
        session,
        ledger,
        program,
        partner,
        StatementRequest(period=label(2)),
        now,
        principal=OPERATOR,
    )
    await session.commit()
    assert first.total_minor == 13_000
    assert await money_balances(ledger, program, "ZAR", partner.id) == (13_000, 0)
    money = await ledger.ledger_named(ledger_name(program, "ZAR"))
    assert money is not None and money.asset_scale == 2
    # Month 2: only redemptions, 5,000: the program owes 5000.
    await move(
        ledger,
        program,
        partner,
        member,
        TransferCode.PARTNER_ACCEPTANCE,
        5_000,
        one_back + timedelta(days=1),
    )
    second, _ = await issue_statement(
        session,
        ledger,
        program,
        partner,
        StatementRequest(period=label(1)),
        now,
        principal=OPERATOR,
    )
    await session.commit()
    assert (second.total_minor, second.direction, second.payment_status) == (
        -5_000,
        "program_owes",
        "none",
    )
    assert await money_balances(ledger, program, "ZAR", partner.id) == (13_000, 5_000)

    # A payment beyond what is due is refused, nothing recorded.
    with pytest.raises(PaymentRefused):
        await record_payment(
            session,
            ledger,
            program,
            partner,
            1,
            PaymentRequest(reference="bank-1", amount_minor=13_001),
            principal=OPERATOR,
        )
    await rollback(session, program, partner)
    paid, created = await record_payment(
        session,
        ledger,
        program,
        partner,
        1,
        PaymentRequest(reference="bank-1", amount_minor=13_000),
        principal=OPERATOR,
    )
    await session.commit()
    assert created and paid.payment_status == "paid" and paid.paid_minor == 13_000
    again, created = await record_payment(
        session,
        ledger,
        program,
        partner,
        1,
        PaymentRequest(reference="bank-1", amount_minor=13_000),
        principal=OPERATOR,
    )
    await session.commit()
    assert not created and again.paid_minor == 13_000

    # A payout beyond what the program owes is refused by the ledger.
    with pytest.raises(PaymentRefused):
        await record_payout(
            session,
            ledger,
            program,
            partner,
            PayoutRequest(reference="eft-1", amount_minor=5_001),
            now,
            principal=OPERATOR,
        )
    await rollback(session, program, partner)
    payout, created = await record_payout(
        session,
        ledger,
        program,
        partner,
        PayoutRequest(reference="eft-1", amount_minor=5_000),
        now,
        principal=OPERATOR,
    )
    await session.commit()
    assert created and payout.amount_minor == 5_000
    assert await money_balances(ledger, program, "ZAR", partner.id) == (0, 0)

    # Reconciled: statement totals less payments, plus payouts, is nil.
    totals = await pool.fetchval(
        "SELECT sum(total_minor) FROM partner_statements WHERE partner_id = $1", partner.id
    )
    payments = await pool.fetchval(
        "SELECT sum(amount_minor) FROM partner_statement_payments WHERE partner_id = $1",
        partner.id,
    )
    payouts = await pool.fetchval(
        "SELECT sum(amount_minor) FROM partner_payouts WHERE partner_id = $1", partner.id
    )
    owes, owed = await money_balances(ledger, program, "ZAR", partner.id)
    assert totals - payments + payouts == owes - owed == 0
    [state] = await ledger.totals(money.id)
    assert state.debits_posted == state.credits_posted
