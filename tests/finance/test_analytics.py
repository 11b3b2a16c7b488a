"""Analytics on hand-computed data: a member's value, the redemption curve
of their cohort, the program's ROI for a month and a partner's
profitability, all from movements posted last month on the ledger (points
and money) with their business time."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.codes import AccountCode, TransferCode, money_account_id, partner_account_id
from core.models import Member, Program
from core.principal import system
from finance.analytics.curves import redemption_curves
from finance.analytics.member_value import member_value
from finance.analytics.partner_profitability import partner_profitability
from finance.analytics.roi import program_roi
from finance.report_dates import InvalidReportDate, Period, parse_month
from finance.revenue import breakage
from ledger import Account, Ledger, Transfer, TransferFlags, lots
from partners.models import Partner
from partners.money_ledger import money_ledger, open_money_accounts
from rewards.programs import Enrolment, enrol_member
from tests.conftest import NewProgram

OPERATOR = system("analytics-test")


@dataclass
class World:
    program: Program
    ann: Member
    ben: Member
    partner: Partner
    period: Period
    #: Moments inside last month.
    day: list[datetime]


def last_month() -> tuple[Period, datetime]:
    first = (datetime.now(UTC).replace(day=1) - timedelta(days=1)).replace(day=1)
    start = datetime(first.year, first.month, 1, 12, tzinfo=UTC)
    return parse_month("period", first.strftime("%Y-%m")), start


async def post(ledger: Ledger, program_ledger: int, *moves: tuple) -> None:  # type: ignore[type-arg]
    transfers = [
        Transfer(
            id=uuid.uuid4(),
            debit_account_id=debit,
            credit_account_id=credit,
            amount=amount,
            ledger=program_ledger,
            code=code,
            flags=flags,
            effective_at=at,
        )
        for debit, credit, amount, code, at, flags in moves
    ]
    outcomes = await ledger.create_transfers(transfers)
    assert all(o.ok for o in outcomes), outcomes


@pytest.fixture
async def world(session: AsyncSession, ledger: Ledger, new_program: NewProgram) -> World:
    program = await new_program(point_value_minor=Decimal("0.5"))
    period, start = last_month()
    day = [start + timedelta(days=n) for n in range(5)]
    ann, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="ann"), principal=OPERATOR
    )
    ben, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="ben"), principal=OPERATOR
    )
    partner = Partner(
        id=uuid.uuid4(),
        program_id=program.id,
        slug=f"fuel-{uuid.uuid4().hex[:6]}",
        name="Fuel",
        legal_name="Fuel Ltd",
        country="ZA",
        currency="ZAR",
        contacts=[],
        status="active",
        status_changed_at=start - timedelta(days=40),
    )
    session.add(partner)
    await session.flush()
    # Ann's purchases: 10,000 less 2,000 returned; 5,000 in another currency
    # (not revenue); 3,000 reported by the partner.
    for order, amount, returned, currency in (
        ("o-1", 10_000, 2_000, "ZAR"),
        ("o-2", 5_000, 0, "USD"),
    ):
        await session.execute(
            text(
                "INSERT INTO purchases (id, program_id, member_id, order_id, occurred_at,"
                " amount_minor, currency, points, matures_at, returned_minor)"
                " VALUES (:id, :program, :member, :order, :at, :amount, :currency, 0, :at,"
                " :returned)"
            ),
            {
                "id": uuid.uuid4(),
                "program": program.id,
                "member": ann.id,
                "order": order,
                "at": day[0],
                "amount": amount,
                "currency": currency,
                "returned": returned,
            },
        )
    await session.execute(
        text(
            "INSERT INTO partner_issuances (id, program_id, partner_id, company_id,"
            " transaction_id, member_id, points, purchase_amount_minor, currency,"
            " contract_version, request_digest, created_at)"
            " VALUES (:id, :program, :partner, :partner, 't-1', :member, 0, 3000, 'ZAR', 1,"
            " '\\x00', :at)"
        ),
        {
            "id": uuid.uuid4(),
            "program": program.id,
            "partner": partner.id,
            "member": ann.id,
            "at": day[0],
        },
    )
    await session.commit()
    issuance = partner_account_id(program.id, partner.id, AccountCode.PARTNER_ISSUANCE)
    acceptance = partner_account_id(program.id, partner.id, AccountCode.PARTNER_ACCEPTANCE)
    outcomes = await ledger.create_accounts(
        [
            Account(id=issuance, ledger=program.ledger_id, code=AccountCode.PARTNER_ISSUANCE),
            Account(id=acceptance, ledger=program.ledger_id, code=AccountCode.PARTNER_ACCEPTANCE),
        ]
    )
    assert all(o.result == "ok" for o in outcomes)
    a, b = ann.wallet_account_id, ben.wallet_account_id
    none, pending = TransferFlags.NONE, TransferFlags.PENDING
    await post(
        ledger,
        program.ledger_id,
        (program.issuance_account_id, a, 1_000, TransferCode.PURCHASE_EARN, day[0], none),
        (program.issuance_account_id, a, 500, TransferCode.PURCHASE_EARN, day[0], pending),
        (a, program.redemption_account_id, 300, TransferCode.CATALOG_REDEMPTION, day[1], none),
        (program.redemption_account_id, a, 100, TransferCode.REDEMPTION_CANCELLATION, day[2], none),
        (a, program.breakage_account_id, 50, TransferCode.EXPIRY, day[3], none),
        (a, b, 20, TransferCode.GIFT, day[3], none),
        # Ben at the partner: issued 400, redeemed 120 there, 20 of it refunded.
        (issuance, b, 400, TransferCode.PARTNER_ISSUANCE, day[1], none),
        (b, acceptance, 120, TransferCode.PARTNER_ACCEPTANCE, day[2], none),
        (acceptance, b, 20, TransferCode.PARTNER_ACCEPTANCE_REFUND, day[3], none),
    )
    money = await money_ledger(session, ledger, program, "ZAR")
    await session.commit()
    await open_money_accounts(ledger, program, "ZAR", money, partner.id)

    def account(role: AccountCode, owner: uuid.UUID | None = None) -> uuid.UUID:
        return money_account_id(program.id, "ZAR", role, owner)

    receivable = account(AccountCode.PARTNER_RECEIVABLE, partner.id)
    payable = account(AccountCode.PARTNER_PAYABLE, partner.id)
    revenue, cost = (
        account(AccountCode.PARTNER_REVENUE),
        account(AccountCode.PARTNER_REDEMPTION_COST),
    )
    cash = account(AccountCode.PARTNER_CASH)
    after = period.last_day + timedelta(days=2)
    await post(
        ledger,
        money,
        (receivable, revenue, 1_500, TransferCode.PARTNER_SETTLEMENT, day[1], none),
        (cash, receivable, 1_000, TransferCode.PARTNER_PAYMENT, day[2], none),
        (cost, payable, 300, TransferCode.PARTNER_REIMBURSEMENT, day[2], none),
        (payable, cash, 200, TransferCode.PARTNER_PAYOUT, day[3], none),
        (receivable, cost, 50, TransferCode.PARTNER_REIMBURSEMENT, day[3], none),
        # This month: in neither the period nor its closing balance.
        (
            receivable,
            revenue,
            999,
            TransferCode.PARTNER_SETTLEMENT,
            datetime(after.year, after.month, after.day, 12, tzinfo=UTC),
            none,
        ),
    )
    return World(program=program, ann=ann, ben=ben, partner=partner, period=period, day=day)


async def test_member_value_by_hand(session: AsyncSession, world: World) -> None:
    value = await member_value(session, world.program, "ann", datetime.now(UTC), principal=OPERATOR)
    assert value.revenue_minor == 8_000 + 3_000
    assert value.points_earned == 1_000  # the pending 500 and the cancellation left out
    assert value.points_redeemed == 300 - 100
    assert value.points_outstanding == 1_000 - 300 + 100 - 50 - 20
    assert value.point_value_minor == "0.5"
    assert value.points_cost_minor == (200 + 730) // 2
    assert value.relationship_value_minor == 11_000 - 465
    # Up to the day before the redemption: nothing redeemed, all outstanding.
    early = await member_value(
        session, world.program, "ann", world.day[1] - timedelta(seconds=1), principal=OPERATOR
    )
    assert (early.points_redeemed, early.points_outstanding, early.points_cost_minor) == (
        0,
        1_000,
        500,
    )
    # Ben's gift and partner points: 20 + 400 - 120 + 20 outstanding, 100 redeemed.
    ben = await member_value(session, world.program, "ben", datetime.now(UTC), principal=OPERATOR)
    assert (ben.points_redeemed, ben.points_outstanding, ben.revenue_minor) == (100, 320, 0)
    assert ben.points_cost_minor == 210 and ben.relationship_value_minor == -210


async def test_redemption_curve_is_breakages(session: AsyncSession, world: World) -> None:
    this_month = parse_month("period", datetime.now(UTC).strftime("%Y-%m"))
    curves = await redemption_curves(session, world.program, this_month, principal=OPERATOR)
    [cohort] = curves.cohorts
    assert cohort.cohort == world.period.first_day and cohort.age == 1
    # Issued: Ann's 1,000 and Ben's 400 (gifts move points inside the cohort).
    assert (cohort.issued, cohort.expired) == (1_400, 50)
    assert cohort.redeemed == [200 + 100, 300]
    assert cohort.redeemed_share == ["0.214286", "0.214286"]
    connection = await session.connection()
    raw = (await connection.get_raw_connection()).driver_connection
    movements = await lots.cohort_development(
        raw, ledger=world.program.ledger_id, through=this_month.last_day
    )
    [same] = breakage.redemption_curves(movements, this_month.first_day)
    assert list(same.redeemed) == cohort.redeemed and same.issued == cohort.issued


async def test_program_roi_by_hand(session: AsyncSession, ledger: Ledger, world: World) -> None:
    roi = await program_roi(session, ledger, world.program, world.period, principal=OPERATOR)
    assert roi.member_revenue_minor == 8_000
    assert roi.partner_revenue_minor == 1_500
    assert roi.points_issued == 1_000
    assert roi.points_cost_minor == 500
    assert roi.partner_reimbursements_minor == 300 - 50
    assert roi.roi == "11.666667"  # (9,500 - 750) / 750


async def test_partner_profitability_by_hand(
    session: AsyncSession, ledger: Ledger, world: World
) -> None:
    report = await partner_profitability(
        session, ledger, world.program, world.period, principal=OPERATOR
    )
    [line] = report.partners
    assert line.partner == world.partner.slug and line.currency == "ZAR"
    assert (line.points_issued, line.points_redeemed) == (400, 100)
    assert (line.billed_minor, line.paid_in_minor) == (1_500, 1_000)
    assert (line.reimbursed_minor, line.paid_out_minor) == (250, 200)
    assert line.net_contribution_minor == 1_250
    # Receivable 1,550 - 1,000; payable 300 - 200.
    assert line.balance_minor == 550 - 100
    empty = await partner_profitability(
        session,
        ledger,
        world.program,
        parse_month("period", (world.period.first_day - timedelta(days=40)).strftime("%Y-%m")),
        principal=OPERATOR,
    )
    assert [(p.billed_minor, p.points_issued, p.balance_minor) for p in empty.partners] == [
        (0, 0, 0)
    ]


def test_a_malformed_month_is_refused() -> None:
    for text_ in ("2026-13", "26-01", "2026-1", ""):
        with pytest.raises(InvalidReportDate):
            parse_month("period", text_)


async def test_another_tenant_sees_no_program(
    session: AsyncSession, ledger: Ledger, world: World, engine: AsyncEngine
) -> None:
    from core.principal import Principal, PrincipalKind

    stranger = Principal(kind=PrincipalKind.OPERATOR, actor="key:other", program_id=uuid.uuid4())
    with pytest.raises(Exception, match="no program"):
        await partner_profitability(
            session, ledger, world.program, world.period, principal=stranger
        )
    with pytest.raises(Exception, match="no program"):
        await member_value(session, world.program, "ann", datetime.now(UTC), principal=stranger)
