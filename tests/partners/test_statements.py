"""Statements computed from the ledger: exact amounts rounded once per line,
reproducible up to their cutoff, issued once, late transfers carried into
the next statement as adjustments naming their period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from ledger import Ledger
from partners.statement_errors import NotContractHolder, StatementPeriodRefused
from partners.statement_lines import round_minor
from partners.statement_reads import line_transfers, list_statements, recompute_statement
from partners.statement_schemas import StatementRequest
from partners.statements import draft_statement, issue_statement
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import OPERATOR, enrolled, rollback
from tests.partners.conftest import NewPartner
from tests.partners.settlement_helpers import label, months_back, move, settled_partner

ISSUE = TransferCode.PARTNER_ISSUANCE
ACCEPT = TransferCode.PARTNER_ACCEPTANCE
REFUND = TransferCode.PARTNER_ACCEPTANCE_REFUND


def test_each_line_is_rounded_once_half_even() -> None:
    # 10,000 points at 1.5 minor units: exactly 15000 minor units, 150.00.
    assert round_minor(10_000 * Decimal("1.5")) == 15_000
    assert round_minor(Decimal("2.5")) == 2
    assert round_minor(Decimal("3.5")) == 4
    assert round_minor(Decimal("0.000001") * 499_999) == 0


async def test_a_statement_bills_issued_points_and_reimburses_redeemed_ones(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await settled_partner(
        session, ledger, program, new_partner, tax_codes={"issuance": "VAT15"}
    )
    member = await enrolled(session, ledger, program)
    start, end = months_back(2)
    await move(ledger, program, partner, member, ISSUE, 10_000, start + timedelta(days=1))
    await move(ledger, program, partner, member, ACCEPT, 3_000, start + timedelta(days=2))
    await move(ledger, program, partner, member, REFUND, 500, start + timedelta(days=3))
    # The next period's: not on this statement.
    await move(ledger, program, partner, member, ISSUE, 7, end + timedelta(hours=1))

    draft = await draft_statement(session, ledger, program, partner, principal=OPERATOR)
    again = await draft_statement(session, ledger, program, partner, principal=OPERATOR)
    assert draft == again
    assert (draft.status, draft.period, draft.number) == ("draft", label(2), 1)
    lines = [(x.kind, x.points, x.rate, x.amount_minor, x.tax_code) for x in draft.lines]
    assert lines == [
        ("points_issued", 10_000, "1.5", 15_000, "VAT15"),
        ("points_refunded", 500, "1", 500, None),
        ("points_redeemed", 3_000, "1", -3_000, None),
    ]
    assert (draft.total_minor, draft.direction, draft.amount_due_minor) == (
        12_500,
        "partner_owes",
        12_500,
    )

    issued, created = await issue_statement(
        session,
        ledger,
        program,
        partner,
        StatementRequest(period=label(2)),
        datetime.now(UTC),
        principal=OPERATOR,
    )
    await session.commit()
    assert created and issued.status == "issued" and issued.id is not None
    assert [line.amount_minor for line in issued.lines] == [15_000, 500, -3_000]
    assert issued.total_minor == sum(line.amount_minor for line in issued.lines)
    assert issued.payment_status == "due"
    # Drill down: the transfers of the issued line.
    page = await line_transfers(
        session,
        ledger,
        program.id,
        1,
        principal=OPERATOR,
        number=1,
        partner=partner,
        limit=10,
        cursor=None,
    )
    assert [(t.amount, t.code) for t in page.items] == [(10_000, ISSUE)]
    lines_written = await pool.fetchval(
        "SELECT count(*) FROM partner_statement_lines l JOIN partner_statements s"
        " ON s.id = l.statement_id WHERE s.partner_id = $1",
        partner.id,
    )
    assert lines_written == 3


async def test_issuing_twice_answers_the_same_statement_and_recomputes_identically(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await settled_partner(session, ledger, program, new_partner)
    member = await enrolled(session, ledger, program)
    start, _ = months_back(2)
    await move(ledger, program, partner, member, ISSUE, 1_001, start + timedelta(days=1))
    request = StatementRequest(period=label(2))
    first, _ = await issue_statement(
        session, ledger, program, partner, request, datetime.now(UTC), principal=OPERATOR
    )
    await session.commit()
    second, created = await issue_statement(
        session, ledger, program, partner, request, datetime.now(UTC), principal=OPERATOR
    )
    await session.commit()
    assert not created and second.replayed and second.id == first.id
    assert second.lines == first.lines
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM partner_statements WHERE partner_id = $1", partner.id
        )
        == 1
    )
    # Recorded since, in the closed period: the issued statement is unchanged.
    await move(ledger, program, partner, member, ISSUE, 50, start + timedelta(days=5))
    check = await recompute_statement(session, ledger, program, partner, 1, principal=OPERATOR)
    assert check.matches
    assert check.recomputed.total_minor == first.total_minor == round_minor(1_001 * Decimal("1.5"))


async def test_late_transfers_go_into_the_next_statement_as_adjustments(
    session: AsyncSession,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await settled_partner(session, ledger, program, new_partner)
    member = await enrolled(session, ledger, program)
    two_back, _ = months_back(2)
    one_back, _ = months_back(1)
    now = datetime.now(UTC)
    await move(ledger, program, partner, member, ISSUE, 100, two_back + timedelta(days=1))
    await issue_statement(
        session,
        ledger,
        program,
        partner,
        StatementRequest(period=label(2)),
        now,
        principal=OPERATOR,
    )
    await session.commit()
    # Recorded after statement 1 was issued, belonging to its period.
    await move(ledger, program, partner, member, ISSUE, 40, two_back + timedelta(days=2))
    await move(ledger, program, partner, member, ISSUE, 200, one_back + timedelta(days=1))
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
    assert [(x.late_period, x.points, x.amount_minor) for x in second.lines] == [
        (None, 200, 300),
        (label(2), 40, 60),
    ]
    page = await list_statements(
        session, program.id, principal=OPERATOR, partner=partner, limit=10, cursor=None
    )
    assert [s.number for s in page.items] == [2, 1]
    assert page.items[1].total_minor == 150  # never rewritten


async def test_a_period_out_of_turn_or_not_ended_is_refused_and_writes_nothing(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await settled_partner(session, ledger, program, new_partner)
    now = datetime.now(UTC)
    for period in (label(1), label(0)):
        with pytest.raises(StatementPeriodRefused):
            await issue_statement(
                session,
                ledger,
                program,
                partner,
                StatementRequest(period=period),
                now,
                principal=OPERATOR,
            )
        await rollback(session, program, partner)
    # The current month (after the two past ones) has not ended.
    for period in (label(2), label(1)):
        await issue_statement(
            session,
            ledger,
            program,
            partner,
            StatementRequest(period=period),
            now,
            principal=OPERATOR,
        )
        await session.commit()
    with pytest.raises(StatementPeriodRefused):
        await issue_statement(
            session,
            ledger,
            program,
            partner,
            StatementRequest(period=label(0)),
            now,
            principal=OPERATOR,
        )
    await rollback(session, program, partner)
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM partner_statements WHERE partner_id = $1", partner.id
        )
        == 2
    )
    other = await new_partner(program)
    with pytest.raises(NotContractHolder):
        await draft_statement(session, ledger, program, other, principal=OPERATOR)
