"""Period close (``finance.periods``): a program's months, in its time zone,
close in order once ended and reopen with a reason, audited; the ledger then
refuses what is dated in them, and corrections post in the open period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core import calendar
from core.codes import TransferCode
from core.models import Program
from core.principal import system
from finance import periods
from finance.periods import (
    InvalidMonth,
    PeriodBeforeProgram,
    PeriodNotEnded,
    PeriodOutOfOrder,
    close_period,
    list_periods,
    reopen_period,
)
from ledger import Ledger, Transfer
from ledger import periods as ledger_periods
from rewards.adjustments import Adjustment, UnknownCorrectedTransfer, adjust_points
from rewards.programs import Enrolment, enrol_member
from tests.conftest import NewProgram

ZONE = "Africa/Johannesburg"  # UTC+2 all year: its months start at 22:00 UTC
CLERK = system("finance-test")


def _label(at: datetime) -> str:
    local = at.astimezone(calendar.time_zone(ZONE))
    return f"{local.year:04d}-{local.month:02d}"


def _months(now: datetime) -> list[datetime]:
    """The first instants of the start month (three months back) to the current one."""
    current, _ = calendar.local_month(now, ZONE)
    return [calendar.add_months(current, n, ZONE) for n in (-3, -2, -1, 0)]


async def _program(new_program: NewProgram, now: datetime) -> Program:
    start = _months(now)[0]
    return await new_program(time_zone=ZONE, started_at=start + timedelta(days=3))


async def _audit(session: AsyncSession, program: Program, action: str) -> list[dict[str, object]]:
    rows = await session.execute(
        text(
            "SELECT subject, details FROM audit_events WHERE action = :action"
            " AND subject LIKE :subject ORDER BY occurred_at, id"
        ),
        {"action": action, "subject": f"program:{program.slug}:finance:period:%"},
    )
    return [{"subject": r.subject, **r.details} for r in rows]


async def test_months_close_in_order_once_ended(
    session: AsyncSession, new_program: NewProgram, pool: object
) -> None:
    now = datetime.now(UTC)
    program = await _program(new_program, now)
    m0, m1, m2, current = (_label(m) for m in _months(now))

    with pytest.raises(PeriodOutOfOrder, match=f"close {m0} first"):
        await close_period(session, program, m1, now, principal=CLERK)
    with pytest.raises(PeriodNotEnded):
        await close_period(session, program, current, now, principal=CLERK)
    closed = await close_period(session, program, m0, now, principal=CLERK)
    await session.commit()

    _, m0_end = calendar.local_month(_months(now)[0], ZONE)
    assert closed.changed and closed.period.status == "closed"
    assert closed.period.closed_by == CLERK.actor
    assert closed.closed_through == m0_end - ledger_periods.RESOLUTION
    # The month is closed at the end of its last local day, 22:00 UTC.
    assert closed.closed_through.astimezone(UTC).hour == 21
    assert len(await _audit(session, program, "finance.period.close")) == 1

    # Again: as it is, nothing written.
    again = await close_period(session, program, m0, now, principal=CLERK)
    await session.commit()
    assert not again.changed and again.period == closed.period
    assert len(await _audit(session, program, "finance.period.close")) == 1

    with pytest.raises(PeriodOutOfOrder, match=f"close {m1} first"):
        await close_period(session, program, m2, now, principal=CLERK)
    await close_period(session, program, m1, now, principal=CLERK)
    await session.commit()
    listed = await list_periods(session, program, now)
    assert [(p.month, p.status, p.ended) for p in listed.periods] == [
        (m0, "closed", True),
        (m1, "closed", True),
        (m2, "open", True),
        (current, "open", False),
    ]
    assert listed.next_to_close == m2
    _, m1_end = calendar.local_month(_months(now)[1], ZONE)
    assert listed.closed_through == m1_end - ledger_periods.RESOLUTION


async def test_bad_months_are_refused_and_write_nothing(
    session: AsyncSession, new_program: NewProgram
) -> None:
    now = datetime.now(UTC)
    program = await _program(new_program, now)
    before = calendar.add_months(_months(now)[0], -1, ZONE)
    arabic_digits = "\u0662\u0660\u0662\u0666-\u0660\u0661"  # 2026-01, other digits
    for month in ("2026-13", "2026-00", "26-01", "2026-1", "", "0000-01", "abcd-ef", arabic_digits):
        with pytest.raises(InvalidMonth):
            await close_period(session, program, month, now, principal=CLERK)
        with pytest.raises(InvalidMonth):
            await reopen_period(session, program, month, "a reason", now, principal=CLERK)
    with pytest.raises(PeriodBeforeProgram):
        await close_period(session, program, _label(before), now, principal=CLERK)
    with pytest.raises(PeriodNotEnded):
        await close_period(session, program, "9998-12", now, principal=CLERK)
    await session.commit()  # nothing to commit: the refusals wrote nothing
    assert (await list_periods(session, program, now)).closed_through is None
    assert await _audit(session, program, "finance.period.close") == []


async def test_reopening_is_audited_with_its_reason_and_reopens_every_later_month(
    session: AsyncSession, new_program: NewProgram
) -> None:
    now = datetime.now(UTC)
    program = await _program(new_program, now)
    m0, m1, m2, _ = (_label(m) for m in _months(now))
    for month in (m0, m1, m2):
        await close_period(session, program, month, now, principal=CLERK)
    await session.commit()

    reopened = await reopen_period(
        session, program, m1, "a late supplier invoice", now, principal=system("auditor")
    )
    await session.commit()

    assert [p.month for p in reopened.reopened] == [m1, m2]
    assert {p.reopen_reason for p in reopened.reopened} == {"a late supplier invoice"}
    _, m0_end = calendar.local_month(_months(now)[0], ZONE)
    assert reopened.closed_through == m0_end - ledger_periods.RESOLUTION
    [line] = await _audit(session, program, "finance.period.reopen")
    assert line == {
        "subject": f"program:{program.slug}:finance:period:{m1}",
        "month": m1,
        "reason": "a late supplier invoice",
        "reopened": [m1, m2],
        "closed_through": reopened.closed_through.isoformat(),
    }
    listed = await list_periods(session, program, now)
    assert [p.status for p in listed.periods[:3]] == ["closed", "open", "open"]
    assert listed.periods[1].reopened_by == "system:auditor"

    # An open month: nothing reopened, nothing written.
    nothing = await reopen_period(session, program, m2, "again", now, principal=CLERK)
    await session.commit()
    assert nothing.reopened == []
    assert len(await _audit(session, program, "finance.period.reopen")) == 1
    # Closing goes on from the earliest open month.
    with pytest.raises(PeriodOutOfOrder):
        await close_period(session, program, m2, now, principal=CLERK)
    closed_again = await close_period(session, program, m1, now, principal=CLERK)
    assert closed_again.changed and closed_again.period.reopen_reason == "a late supplier invoice"


async def test_a_closed_month_is_refused_by_the_ledger_and_corrected_in_the_open_period(
    session: AsyncSession, new_program: NewProgram, ledger: Ledger
) -> None:
    now = datetime.now(UTC)
    program = await _program(new_program, now)
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="ann"), principal=CLERK
    )
    await session.commit()
    in_m0 = _months(now)[0] + timedelta(days=5)
    earned = Transfer(
        id=uuid.uuid4(),
        debit_account_id=program.issuance_account_id,
        credit_account_id=member.wallet_account_id,
        amount=100,
        ledger=program.ledger_id,
        code=TransferCode.ADJUSTMENT,
        effective_at=in_m0,
    )
    assert (await ledger.create_transfers([earned]))[0].ok
    await close_period(session, program, _label(in_m0), now, principal=CLERK)
    await session.commit()

    late = Transfer(
        id=uuid.uuid4(),
        debit_account_id=member.wallet_account_id,
        credit_account_id=program.issuance_account_id,
        amount=30,
        ledger=program.ledger_id,
        code=TransferCode.ADJUSTMENT,
        effective_at=in_m0 + timedelta(days=1),
    )
    [refused] = await ledger.create_transfers([late])
    assert refused.result == "business_time_in_closed_period"

    # The correction: in the open period, naming what it corrects.
    correction = Adjustment(
        adjustment_id="fix-1", points=-30, reason="over-credited in month one", corrects=earned.id
    )
    outcome = await adjust_points(session, ledger, program, member, correction, principal=CLERK)
    await session.commit()
    assert outcome.points == -30 and not outcome.replayed
    [wallet] = await ledger.lookup_accounts([member.wallet_account_id])
    assert wallet.credits_posted - wallet.debits_posted == 70
    history = await ledger.history(member.wallet_account_id, limit=10)
    [posted] = [t for t in history.transfers if t.code == TransferCode.FINANCE_CORRECTION]
    assert posted.metadata is not None and posted.metadata["corrects"] == str(earned.id)
    assert posted.effective_at is None and posted.created_at > now - timedelta(minutes=1)


async def test_a_correction_of_a_transfer_not_of_the_program_writes_nothing(
    session: AsyncSession, new_program: NewProgram, ledger: Ledger
) -> None:
    now = datetime.now(UTC)
    program, other = await _program(new_program, now), await _program(new_program, now)
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="bo"), principal=CLERK
    )
    stranger, _ = await enrol_member(
        session, ledger, other, Enrolment(external_id="cy"), principal=CLERK
    )
    await session.commit()
    theirs = Transfer(
        id=uuid.uuid4(),
        debit_account_id=other.issuance_account_id,
        credit_account_id=stranger.wallet_account_id,
        amount=5,
        ledger=other.ledger_id,
        code=TransferCode.ADJUSTMENT,
    )
    assert (await ledger.create_transfers([theirs]))[0].ok
    writes = await ledger.count_transfers(program.ledger_id)
    for target in (theirs.id, uuid.uuid4()):
        correction = Adjustment(
            adjustment_id=f"fix-{target}", points=5, reason="wrong one", corrects=target
        )
        with pytest.raises(UnknownCorrectedTransfer):
            await adjust_points(session, ledger, program, member, correction, principal=CLERK)
        await session.commit()  # nothing to commit: the refusal wrote nothing
    assert await ledger.count_transfers(program.ledger_id) == writes
    audited = await session.scalar(
        text("SELECT count(*) FROM audit_events WHERE action = 'member.adjust' AND subject = :s"),
        {"s": f"program:{program.slug}:member:bo"},
    )
    assert audited == 0


def test_month_labels_round_trip() -> None:
    assert periods.month_label(periods.parse_month("2026-02")) == "2026-02"
    assert periods.parse_month("0001-12").year == 1
