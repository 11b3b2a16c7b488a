"""A postpaid partner's headroom is its credit line less what it issued
and has not yet paid for: paying a statement in full gives back the points
that statement billed as issued, once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from ledger import Ledger, Transfer
from partners.contracts import issuance_account
from partners.payouts import record_payment
from partners.statement_errors import PaymentRefused
from partners.statement_schemas import PaymentRequest, StatementRequest
from partners.statements import issue_statement
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import OPERATOR, enrolled, issuable, rollback
from tests.partners.conftest import NewPartner
from tests.partners.settlement_helpers import label, months_back, move, settled_partner


async def test_paying_a_statement_restores_the_headroom_it_billed_once(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await settled_partner(
        session,
        ledger,
        program,
        new_partner,
        funding=0,
        funding_model="postpaid",
        credit_limit_points=10_000,
    )
    member = await enrolled(session, ledger, program)
    two_back, _ = months_back(2)
    await move(ledger, program, partner, member, TransferCode.PARTNER_ISSUANCE, 10_000, two_back)
    assert await issuable(ledger, program, partner) == 0
    # The credit line is used up: the ledger refuses one point more.
    [refused] = await ledger.create_transfers(
        [
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=issuance_account(program, partner.id),
                credit_account_id=member.wallet_account_id,
                amount=1,
                ledger=program.ledger_id,
                code=TransferCode.PARTNER_ISSUANCE,
            )
        ]
    )
    assert refused.result == "exceeds_credits"

    statement, _ = await issue_statement(
        session,
        ledger,
        program,
        partner,
        StatementRequest(period=label(2)),
        datetime.now(UTC),
        principal=OPERATOR,
    )
    await session.commit()
    assert statement.total_minor == 15_000
    # A part payment gives nothing back yet.
    await record_payment(
        session,
        ledger,
        program,
        partner,
        statement.number,
        PaymentRequest(reference="bank-1", amount_minor=5_000),
        principal=OPERATOR,
    )
    await session.commit()
    assert await issuable(ledger, program, partner) == 0
    paid, created = await record_payment(
        session,
        ledger,
        program,
        partner,
        statement.number,
        PaymentRequest(reference="bank-2", amount_minor=10_000),
        principal=OPERATOR,
    )
    await session.commit()
    assert created and paid.payment_status == "paid"
    assert await issuable(ledger, program, partner) == 10_000

    # The same payment again, or another one, restores nothing more.
    _again, created = await record_payment(
        session,
        ledger,
        program,
        partner,
        statement.number,
        PaymentRequest(reference="bank-2", amount_minor=10_000),
        principal=OPERATOR,
    )
    await session.commit()
    assert not created
    with pytest.raises(PaymentRefused):
        await record_payment(
            session,
            ledger,
            program,
            partner,
            statement.number,
            PaymentRequest(reference="bank-3", amount_minor=1),
            principal=OPERATOR,
        )
    await rollback(session, program, partner, member)
    assert await issuable(ledger, program, partner) == 10_000
    # And the partner can issue again.
    await move(
        ledger,
        program,
        partner,
        member,
        TransferCode.PARTNER_ISSUANCE,
        10_000,
        datetime.now(UTC) - timedelta(seconds=1),
    )
    assert await issuable(ledger, program, partner) == 0
