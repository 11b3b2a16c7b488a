"""A partner leaving the coalition: its last issuing and accepting days
enforced where the contract in force is resolved, its report reconciled
to the ledger, and its final statement billing its share of the
outstanding points exactly once, after which the firm is offboarded."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.codes import AccountCode, TransferCode, money_account_id
from core.models import Member, Program
from core.modules import JobContext
from ledger import Ledger, Transfer
from partners.acceptance import capture_hold, refund_hold, release_hold, reserve_points
from partners.coalition_errors import PartnerNotActive
from partners.coalition_schemas import CaptureRequest, CheckoutHold, IssuanceRequest, RefundRequest
from partners.contracts import issuance_account
from partners.departure_errors import (
    DepartureChangeRefused,
    DepartureNotDue,
    InvalidDeparture,
    PartnerDeparted,
)
from partners.departure_models import PartnerDeparture
from partners.departure_schemas import DepartureRequest
from partners.departures import departure_report, read_departure, record_departure
from partners.final_statements import (
    FINAL_STATEMENT_DELAY,
    issue_due_final_statements,
    issue_final_statement,
)
from partners.issuance import issue_points
from partners.models import Partner, PartnerStatus, PartnerStatusChange
from partners.statement_errors import NotContractHolder, StatementPeriodRefused
from partners.statement_lines import round_minor
from partners.statement_models import PartnerStatement
from partners.statement_reads import recompute_statement
from partners.statement_schemas import StatementRequest
from partners.statements import issue_statement
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import (
    OPERATOR,
    contract,
    enrolled,
    fund,
    partner_principal,
    rollback,
)
from tests.partners.conftest import NewPartner
from tests.partners.settlement_helpers import label, months_back, move, settled_partner

ISSUE = TransferCode.PARTNER_ISSUANCE
ACCEPT = TransferCode.PARTNER_ACCEPTANCE
REFUND = TransferCode.PARTNER_ACCEPTANCE_REFUND
JOHANNESBURG = "Africa/Johannesburg"


def leaving(last_issuing: date, last_accepting: date, valuation: date, **fields: Any) -> Any:
    return DepartureRequest(
        last_issuing_day=last_issuing,
        last_accepting_day=last_accepting,
        valuation_date=valuation,
        **fields,
    )


def local_midnight_after(day: date, zone: str) -> datetime:
    """Counted here without ``core.calendar``, to check it."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=ZoneInfo(zone))


def today(zone: str) -> date:
    return datetime.now(ZoneInfo(zone)).date()


async def program_move(
    ledger: Ledger,
    program: Program,
    debit: uuid.UUID,
    credit: uuid.UUID,
    code: TransferCode,
    points: int,
    at: datetime,
) -> None:
    """One of the program's own movements (an adjustment, a redemption)."""
    [outcome] = await ledger.create_transfers(
        [
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=debit,
                credit_account_id=credit,
                amount=points,
                ledger=program.ledger_id,
                code=code,
                effective_at=at,
            )
        ]
    )
    assert outcome.result == "ok", outcome


async def written(pool: asyncpg.Pool, program: Program) -> tuple[int, int]:
    """Departures of the program and the departure audit lines."""
    rows = await pool.fetchval(
        "SELECT count(*) FROM partner_departures WHERE program_id = $1", program.id
    )
    lines = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE action LIKE 'partner.departure.%'"
        " AND subject LIKE $1",
        f"program:{program.slug}:%",
    )
    return rows, lines


async def trading_partner(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    new_partner: NewPartner,
    **fields: Any,
) -> Partner:
    partner = await new_partner(program, **fields)
    await contract(session, ledger, program, partner)
    await fund(session, ledger, program, partner, 100_000)
    return partner


async def test_a_day_ends_at_the_programs_midnight(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program(time_zone=JOHANNESBURG)
    partner = await trading_partner(session, ledger, program, new_partner)
    day = today(JOHANNESBURG)
    view, created = await record_departure(
        session,
        program,
        partner,
        leaving(day, day + timedelta(days=1), day + timedelta(days=2), reason="sold"),
        datetime.now(UTC),
        principal=OPERATOR,
    )
    await session.commit()
    assert created and view.status == "leaving" and view.final_statement is None
    assert view.issuing_ends_at == local_midnight_after(day, JOHANNESBURG)
    assert view.accepting_ends_at == local_midnight_after(day + timedelta(days=1), JOHANNESBURG)
    assert view.valuation_at == local_midnight_after(day + timedelta(days=2), JOHANNESBURG)
    assert (view.reason, view.recorded_by) == ("sold", OPERATOR.actor)
    assert await read_departure(session, program, partner, principal=OPERATOR) == view


async def test_issuance_is_allowed_on_the_last_issuing_day_and_refused_after_it(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program(time_zone=JOHANNESBURG)
    holder = await trading_partner(session, ledger, program, new_partner)
    # A store of the group, acting under the holder's contract: it leaves with it.
    store = await new_partner(program, parent=holder)
    await enrolled(session, ledger, program)
    day = today(JOHANNESBURG)
    await record_departure(
        session,
        program,
        holder,
        leaving(day, day + timedelta(days=3), day + timedelta(days=3)),
        datetime.now(UTC),
        principal=OPERATOR,
    )
    await session.commit()
    ends = local_midnight_after(day, JOHANNESBURG)

    for principal in (partner_principal(holder), partner_principal(store)):
        on_the_day = await issue_points(
            pool,
            ledger,
            IssuanceRequest(transaction_id=f"last-{uuid.uuid4()}", member="ann", points=10),
            ends - timedelta(seconds=1),
            principal=principal,
        )
        assert on_the_day.points == 10
        with pytest.raises(PartnerDeparted, match="issues points up to the end of"):
            await issue_points(
                pool,
                ledger,
                IssuanceRequest(transaction_id=f"late-{uuid.uuid4()}", member="ann", points=10),
                ends,
                principal=principal,
            )
    issued = await pool.fetchval(
        "SELECT count(*) FROM partner_issuances WHERE partner_id = $1", holder.id
    )
    assert issued == 2
    # A replay of an issuance made in time still answers it.
    again = await issue_points(
        pool,
        ledger,
        IssuanceRequest(transaction_id=on_the_day.transaction_id, member="ann", points=10),
        ends + timedelta(days=1),
        principal=partner_principal(store),
    )
    assert again.replayed and again.id == on_the_day.id


async def test_holds_stop_after_the_last_accepting_day_captures_and_refunds_at_valuation(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program(time_zone=JOHANNESBURG)
    partner = await trading_partner(session, ledger, program, new_partner)
    member = await enrolled(session, ledger, program)
    await issue_points(
        pool,
        ledger,
        IssuanceRequest(transaction_id="T-1", member="ann", points=1_000),
        datetime.now(UTC),
        principal=partner_principal(partner),
    )
    day = today(JOHANNESBURG)
    await record_departure(
        session,
        program,
        partner,
        leaving(day, day, day + timedelta(days=1)),
        datetime.now(UTC),
        principal=OPERATOR,
    )
    await session.commit()
    accepting_ends = local_midnight_after(day, JOHANNESBURG)
    valued = local_midnight_after(day + timedelta(days=1), JOHANNESBURG)
    principal = partner_principal(partner)

    def hold(checkout: str) -> CheckoutHold:
        return CheckoutHold(checkout_id=checkout, member="ann", points=100, timeout_seconds=3600)

    held = [
        await reserve_points(
            session,
            ledger,
            hold(f"C-{n}"),
            accepting_ends - timedelta(seconds=1),
            principal=principal,
        )
        for n in range(3)
    ]
    await session.commit()
    with pytest.raises(PartnerDeparted, match="accepts points up to the end of"):
        await reserve_points(session, ledger, hold("C-late"), accepting_ends, principal=principal)
    await rollback(session, member, partner, program)

    # A hold taken in time is captured up to the valuation instant...
    captured = await capture_hold(
        session,
        ledger,
        uuid.UUID(held[0].id),
        CaptureRequest(),
        valued - timedelta(seconds=1),
        principal=principal,
    )
    await session.commit()
    assert captured.status == "captured"
    refunded = await refund_hold(
        session,
        ledger,
        uuid.UUID(held[0].id),
        RefundRequest(refund_id="R-1", points=10),
        valued - timedelta(seconds=1),
        principal=principal,
    )
    await session.commit()
    assert refunded.points == 10
    # ... and not after it; releasing moves no posted point: still allowed.
    with pytest.raises(PartnerDeparted, match="no longer captured or refunded"):
        await capture_hold(
            session, ledger, uuid.UUID(held[1].id), CaptureRequest(), valued, principal=principal
        )
    await rollback(session, member, partner, program)
    with pytest.raises(PartnerDeparted):
        await refund_hold(
            session,
            ledger,
            uuid.UUID(held[0].id),
            RefundRequest(refund_id="R-2", points=10),
            valued,
            principal=principal,
        )
    await rollback(session, member, partner, program)
    released = await release_hold(
        session, ledger, uuid.UUID(held[2].id), valued, principal=principal
    )
    await session.commit()
    assert released.status == "released"


async def test_the_report_reconciles_to_the_ledger(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await trading_partner(session, ledger, program, new_partner)
    other = await trading_partner(session, ledger, program, new_partner)
    ann = await enrolled(session, ledger, program, "ann")
    bob = await enrolled(session, ledger, program, "bob")
    now = datetime.now(UTC)
    for who, points, issuer in ((ann, 700, partner), (bob, 301, partner), (bob, 500, other)):
        await issue_points(
            pool,
            ledger,
            IssuanceRequest(
                transaction_id=str(uuid.uuid4()), member=who.external_id, points=points
            ),
            now,
            principal=partner_principal(issuer),
        )
    await program_move(
        ledger,
        program,
        program.issuance_account_id,
        ann.wallet_account_id,
        TransferCode.ADJUSTMENT,
        2_000,
        now,
    )
    held = await reserve_points(
        session,
        ledger,
        CheckoutHold(checkout_id="C-1", member="ann", points=400),
        now,
        principal=partner_principal(partner),
    )
    await session.commit()
    await capture_hold(
        session,
        ledger,
        uuid.UUID(held.id),
        CaptureRequest(),
        now,
        principal=partner_principal(partner),
    )
    await session.commit()
    await refund_hold(
        session,
        ledger,
        uuid.UUID(held.id),
        RefundRequest(refund_id="R-1", points=50),
        now,
        principal=partner_principal(partner),
    )
    await session.commit()
    day = now.date() + timedelta(days=30)
    await record_departure(
        session, program, partner, leaving(day, day, day), now, principal=OPERATOR
    )
    await session.commit()

    report = await departure_report(
        session, ledger, program, partner, datetime.now(UTC), principal=OPERATOR
    )

    # The ledger, read account by account.
    wallets = await ledger.lookup_accounts([ann.wallet_account_id, bob.wallet_account_id])
    held_by_members = sum(a.credits_posted - a.debits_posted for a in wallets)
    issuers = await ledger.lookup_accounts(
        [
            program.issuance_account_id,
            issuance_account(program, partner.id),
            issuance_account(program, other.id),
        ]
    )
    [own] = [a for a in issuers if a.id == issuance_account(program, partner.id)]
    assert report.basis == "now"
    assert report.points_issued == own.debits_posted == 1_001
    assert (report.points_captured, report.points_refunded, report.points_redeemed) == (
        400,
        50,
        350,
    )
    assert report.program_points_issued == sum(a.debits_posted - a.credits_posted for a in issuers)
    assert report.program_points_issued == 1_001 + 500 + 2_000
    assert report.program_points_outstanding == held_by_members == 3_501 - 350
    share = Fraction(held_by_members * 1_001, 3_501)
    assert report.points_outstanding == round(share) == 901  # 900.78...
    assert (report.final_statement, report.liability_minor) == (None, None)


async def departed_partner(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    new_partner: NewPartner,
    issuance_share: str = "0.6",
) -> tuple[Partner, Member, Member, datetime]:
    """A partner under a price of 1.5 (by default split: 0.6 of it billed
    at issuance) whose valuation date was the 15th of last month, and the points moved
    around it: the program's own, the partner's, and a movement after the
    valuation instant that the final statement must not count."""
    partner = await settled_partner(
        session,
        ledger,
        program,
        new_partner,
        issue_price_per_point="1.5",
        issuance_share=issuance_share,
    )
    ann = await enrolled(session, ledger, program, "ann")
    bob = await enrolled(session, ledger, program, "bob")
    two, _ = months_back(2)
    one, _ = months_back(1)
    await record_departure(
        session,
        program,
        partner,
        leaving(
            (one + timedelta(days=9)).date(),
            (one + timedelta(days=9)).date(),
            (one + timedelta(days=14)).date(),
            reason="sold to another coalition",
        ),
        one,
        principal=OPERATOR,
    )
    await session.commit()
    await move(ledger, program, partner, ann, ISSUE, 10_000, two + timedelta(days=1))
    await program_move(
        ledger,
        program,
        program.issuance_account_id,
        ann.wallet_account_id,
        TransferCode.ADJUSTMENT,
        8_000,
        two + timedelta(days=2),
    )
    await move(ledger, program, partner, bob, ISSUE, 2_001, one + timedelta(days=2))
    await move(ledger, program, partner, ann, ACCEPT, 1_000, one + timedelta(days=3))
    await move(ledger, program, partner, ann, REFUND, 200, one + timedelta(days=4))
    await program_move(
        ledger,
        program,
        bob.wallet_account_id,
        program.redemption_account_id,
        TransferCode.CATALOG_REDEMPTION,
        1_000,
        one + timedelta(days=5),
    )
    # After the valuation instant: the program's business, not the partner's.
    await program_move(
        ledger,
        program,
        program.issuance_account_id,
        bob.wallet_account_id,
        TransferCode.ADJUSTMENT,
        5_000,
        one + timedelta(days=20),
    )
    return partner, ann, bob, one + timedelta(days=15)


# The figures of ``departed_partner`` at its valuation instant.
ISSUED_BY_ALL = 10_000 + 8_000 + 2_001
OUTSTANDING = ISSUED_BY_ALL - 1_000 + 200 - 1_000
SHARE = Fraction(OUTSTANDING * 12_001, ISSUED_BY_ALL)  # 10920.96...


async def liability_transfers(ledger: Ledger, program: Program, partner: Partner) -> list[Any]:
    receivable = money_account_id(program.id, "ZAR", AccountCode.PARTNER_RECEIVABLE, partner.id)
    page = await ledger.history(receivable, limit=100)
    return [t for t in page.transfers if t.code == TransferCode.PARTNER_LIABILITY_TRANSFER]


async def test_the_final_statement_bills_the_liability_share_exactly_once(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner, ann, bob, valued = await departed_partner(session, ledger, program, new_partner)
    # A store of its group, under its contract, and one store of that store.
    store = await new_partner(program, parent=partner)
    kiosk = await new_partner(program, parent=store, status=PartnerStatus.SUSPENDED)
    wallets = [ann.wallet_account_id, bob.wallet_account_id]
    now = datetime.now(UTC)
    # Its last period is the final statement's, not a regular one's...
    with pytest.raises(DepartureNotDue, match=f"the statement of {label(2)} comes before"):
        await issue_final_statement(session, ledger, program, partner, now, principal=OPERATOR)
    await rollback(session, partner, program)
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
    with pytest.raises(StatementPeriodRefused, match="settled by its final statement"):
        await issue_statement(
            session,
            ledger,
            program,
            partner,
            StatementRequest(period=label(1)),
            now,
            principal=OPERATOR,
        )
    await rollback(session, partner, program)
    before = await departure_report(session, ledger, program, partner, now, principal=OPERATOR)
    assert (before.basis, before.as_of) == ("valuation", valued)

    final, created = await issue_final_statement(
        session, ledger, program, partner, now, principal=OPERATOR
    )
    await session.commit()

    assert created and (final.kind, final.number, final.period) == ("final", 2, label(1))
    assert (final.period_start, final.period_end) == (months_back(1)[0], valued)
    lines = [(x.kind, x.points, x.rate, x.amount_minor) for x in final.lines]
    assert round(SHARE) == 10_921
    # 10,921 points at the deferred part of the price, 1.5 x (1 - 0.6):
    # 6552.6 minor units, rounded half-even once.
    assert round_minor(10_921 * Decimal("1.5") * (1 - Decimal("0.6"))) == 6_553
    assert lines == [
        ("points_issued", 2_001, "0.9", round_minor(2_001 * Decimal("0.9"))),
        ("points_refunded", 200, "1", 200),
        ("points_redeemed", 1_000, "1", -1_000),
        # The deferred part of the price of the points redeemed at it...
        ("deferred_issue_price", 800, "0.6", 480),
        # ... and of its share of the points still out (at most its 12,001
        # issued less those 800 whose deferred part is billed).
        ("liability_transferred", 10_921, "0.6", 6_553),
    ]
    assert final.total_minor == 1_801 + 200 - 1_000 + 480 + 6_553
    [transfer] = await liability_transfers(ledger, program, partner)
    assert transfer.amount == 6_553
    # Members keep their points: no point moved for it.
    held = await ledger.lookup_accounts(wallets)
    assert sum(a.credits_posted - a.debits_posted for a in held) == OUTSTANDING + 5_000
    at_valuation = await ledger.balances_as_of(
        wallets,
        valued - timedelta(microseconds=1),
        effective=True,
    )
    assert sum(b.credits_posted - b.debits_posted for b in at_valuation) == OUTSTANDING

    # Issued twice: the same statement, nothing posted again.
    again, created = await issue_final_statement(
        session, ledger, program, partner, datetime.now(UTC), principal=OPERATOR
    )
    await session.commit()
    assert not created and again.replayed and again.id == final.id
    assert len(await liability_transfers(ledger, program, partner)) == 1
    statements = await pool.fetchval(
        "SELECT count(*) FROM partner_statements WHERE partner_id = $1", partner.id
    )
    assert statements == 2

    recomputed = await recompute_statement(session, ledger, program, partner, 2, principal=OPERATOR)
    assert recomputed.matches
    for firm in (partner, store, kiosk):
        await session.refresh(firm)
        assert firm.status == PartnerStatus.OFFBOARDED
        moved = await session.scalar(
            select(PartnerStatusChange)
            .where(PartnerStatusChange.partner_id == firm.id)
            .order_by(PartnerStatusChange.at.desc())
            .limit(1)
        )
        assert moved is not None and moved.to_status == PartnerStatus.OFFBOARDED
        assert moved.reason == "left the coalition: final statement 2"
    view = await read_departure(session, program, partner, principal=OPERATOR)
    assert (view.status, view.final_statement) == ("left", 2)
    report = await departure_report(
        session, ledger, program, partner, datetime.now(UTC), principal=OPERATOR
    )
    assert report.basis == "final_statement"
    assert (report.points_issued, report.points_redeemed) == (12_001, 800)
    assert (report.program_points_issued, report.program_points_outstanding) == (
        ISSUED_BY_ALL,
        OUTSTANDING,
    )
    assert (before.points_issued, before.program_points_outstanding) == (12_001, OUTSTANDING)
    assert (report.points_outstanding, report.liability_points, report.liability_minor) == (
        10_921,
        10_921,
        6_553,
    )
    # Final: the departure changes no more.
    with pytest.raises(DepartureChangeRefused, match="final"):
        await record_departure(
            session,
            program,
            partner,
            leaving(view.last_issuing_day, view.last_accepting_day, view.valuation_date),
            datetime.now(UTC),
            principal=OPERATOR,
        )
    await rollback(session, partner, program)


async def test_a_price_billed_at_issuance_transfers_nothing_to_pay(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner, _, _, _ = await departed_partner(
        session, ledger, program, new_partner, issuance_share="1"
    )
    now = datetime.now(UTC)
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
    final, _ = await issue_final_statement(
        session, ledger, program, partner, now, principal=OPERATOR
    )
    await session.commit()
    [line] = [x for x in final.lines if x.kind == "liability_transferred"]
    # The partner paid the whole price of its points when it issued them.
    assert (line.points, line.rate, line.amount_minor) == (0, "0", 0)
    assert [x.kind for x in final.lines if x.kind == "deferred_issue_price"] == []
    assert await liability_transfers(ledger, program, partner) == []
    report = await departure_report(session, ledger, program, partner, now, principal=OPERATOR)
    assert (report.points_outstanding, report.liability_minor) == (round(SHARE), 0)
    await session.refresh(partner)
    assert partner.status == PartnerStatus.OFFBOARDED


async def test_the_job_issues_the_statements_due_then_the_final_one(
    session: AsyncSession,
    ledger: Ledger,
    engine: AsyncEngine,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner, _, _, _ = await departed_partner(session, ledger, program, new_partner)
    context = JobContext(
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        ledger=ledger,
        now=datetime.now(UTC),
    )

    assert await issue_due_final_statements(context) >= 1

    rows = (
        await session.execute(
            select(PartnerDeparture.final_statement_id).where(
                PartnerDeparture.partner_id == partner.id
            )
        )
    ).scalar_one()
    assert rows is not None
    assert await _statements(session, partner) == [(1, "regular"), (2, "final")]
    # Done: a second run finds nothing of it to do.
    await issue_due_final_statements(context)
    assert len(await _statements(session, partner)) == 2
    assert len(await liability_transfers(ledger, program, partner)) == 1


async def _statements(session: AsyncSession, partner: Partner) -> list[tuple[int, str]]:
    rows = await session.execute(
        select(PartnerStatement.number, PartnerStatement.kind)
        .where(PartnerStatement.partner_id == partner.id)
        .order_by(PartnerStatement.number)
    )
    return [(n, k) for n, k in rows.all()]


async def test_a_final_statement_waits_for_the_valuation_instant(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await trading_partner(session, ledger, program, new_partner)
    day = datetime.now(UTC).date()
    await record_departure(
        session, program, partner, leaving(day, day, day), datetime.now(UTC), principal=OPERATOR
    )
    await session.commit()
    valued = local_midnight_after(day, "UTC")
    for now in (datetime.now(UTC), valued, valued + FINAL_STATEMENT_DELAY - timedelta(seconds=1)):
        with pytest.raises(DepartureNotDue):
            await issue_final_statement(session, ledger, program, partner, now, principal=OPERATOR)
        await rollback(session, partner, program)
    assert partner.status == PartnerStatus.ACTIVE


@pytest.mark.parametrize(
    ("days", "error", "match"),
    [
        ((0, 0, -1), InvalidDeparture, "valuation_date: .* is before last_issuing_day"),
        ((2, 5, 3), InvalidDeparture, "is before last_accepting_day"),
        ((-1, 0, 0), InvalidDeparture, "last_issuing_day: .* has ended"),
        ((0, -1, 0), InvalidDeparture, "last_accepting_day: .* has ended"),
    ],
)
async def test_bad_days_are_refused_and_nothing_is_written(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
    days: tuple[int, int, int],
    error: type[Exception],
    match: str,
) -> None:
    program = await new_program()
    partner = await trading_partner(session, ledger, program, new_partner)
    day = datetime.now(UTC).date()
    request = leaving(*(day + timedelta(days=n) for n in days))
    with pytest.raises(error, match=match):
        await record_departure(
            session, program, partner, request, datetime.now(UTC), principal=OPERATOR
        )
    await rollback(session, partner, program)
    assert await written(pool, program) == (0, 0)


async def test_who_may_leave_and_what_may_change(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    holder = await trading_partner(session, ledger, program, new_partner)
    store = await new_partner(program, parent=holder)
    gone = await new_partner(program, status=PartnerStatus.OFFBOARDED)
    day = datetime.now(UTC).date() + timedelta(days=10)
    request = leaving(day, day, day + timedelta(days=5))
    now = datetime.now(UTC)
    with pytest.raises(NotContractHolder, match="leaves by being offboarded"):
        await record_departure(session, program, store, request, now, principal=OPERATOR)
    await rollback(session, store, holder, gone, program)
    with pytest.raises(PartnerNotActive, match="offboarded"):
        await record_departure(session, program, gone, request, now, principal=OPERATOR)
    await rollback(session, gone, holder, store, program)
    assert await written(pool, program) == (0, 0)

    first, created = await record_departure(
        session, program, holder, request, now, principal=OPERATOR
    )
    await session.commit()
    same, again = await record_departure(session, program, holder, request, now, principal=OPERATOR)
    await session.commit()
    assert created and not again and same == first
    assert await written(pool, program) == (1, 1)
    # Days still to come may move: the valuation a week later.
    later = leaving(day, day, day + timedelta(days=12))
    moved, created = await record_departure(
        session, program, holder, later, now, principal=OPERATOR
    )
    await session.commit()
    assert not created and moved.valuation_date == day + timedelta(days=12)
    assert await written(pool, program) == (1, 2)
    # Once a day has ended it stays (its end seen from the day after).
    after = local_midnight_after(day, "UTC") + timedelta(hours=1)
    with pytest.raises(DepartureChangeRefused, match=r"last_issuing_day: .* has ended"):
        await record_departure(
            session,
            program,
            holder,
            leaving(day + timedelta(days=1), day, day + timedelta(days=12)),
            after,
            principal=OPERATOR,
        )
    await rollback(session, holder, program)
    assert await written(pool, program) == (1, 2)
