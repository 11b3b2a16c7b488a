"""Programs, members, rule versions, purchases and returns against PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.codes import TransferCode
from core.errors import Conflict, MemberNotActive
from core.members import get_member
from core.models import Member, MemberStatus, Program
from core.principal import system
from core.programs import get_program
from ledger import Ledger, Transfer, check_invariants
from rewards.errors import InvalidPurchase, PublishInPast, ReturnExceedsPurchase
from rewards.programs import Enrolment, enrol_member, member_balance
from rewards.purchase_recording import record_purchase
from rewards.purchases import PurchaseEvent, ReturnEvent
from rewards.returns import return_purchase
from rewards.rule_versions import draft_rules, publish_rules, rules_in_force
from rewards.rules import EarnRules
from rewards.settlement import settle_matured_earnings
from tests.conftest import NewProgram

NOW = datetime.now(UTC).replace(microsecond=0)


async def with_rules(
    session: AsyncSession, program: Program, rate: str, effective_from: datetime
) -> int:
    version = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(rate)), principal=system("test")
    )
    await publish_rules(
        session,
        program,
        version.version,
        effective_from,
        now=effective_from,
        principal=system("test"),
    )
    await session.commit()
    return version.version


async def enrol(session: AsyncSession, ledger: Ledger, program: Program, name: str) -> Member:
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id=name), principal=system("test")
    )
    await session.commit()
    return member


def purchase(member: str, order: str, amount: int, at: datetime = NOW) -> PurchaseEvent:
    return PurchaseEvent(
        member=member, order_id=order, amount_minor=amount, currency="ZAR", occurred_at=at
    )


async def spend(ledger: Ledger, program: Program, member: Member, points: int) -> str:
    [outcome] = await ledger.create_transfers(
        [
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=member.wallet_account_id,
                credit_account_id=program.redemption_account_id,
                amount=points,
                ledger=program.ledger_id,
                code=TransferCode.CATALOG_REDEMPTION,
            )
        ]
    )
    return outcome.result.value


async def test_enrolment_is_idempotent(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    first, created = await enrol_member(
        session,
        ledger,
        program,
        Enrolment(external_id="m-1", email="a@example.com"),
        principal=system("test"),
    )
    again, created_again = await enrol_member(
        session,
        ledger,
        program,
        Enrolment(external_id="m-1"),
        principal=system("test"),
    )
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    balance = await member_balance(ledger, program, first)
    assert (balance.available, balance.pending, balance.debt) == (0, 0, 0)


async def test_purchase_earns_pending_points_then_settles(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(return_window_days=14)
    await with_rules(session, program, "2", NOW - timedelta(days=30))
    member = await enrol(session, ledger, program, "alice")
    outcome = await record_purchase(
        session, ledger, program, purchase("alice", "A-1", 12_345), NOW, principal=system("test")
    )
    await session.commit()
    assert (outcome.points, outcome.replayed) == (246, False)
    balance = await member_balance(ledger, program, member)
    assert (balance.available, balance.pending) == (0, 246)

    # Nothing is due inside the window; at its end the points are posted.
    assert (
        await settle_matured_earnings(session, ledger, NOW + timedelta(days=13), program=program)
        == 0
    )
    assert (
        await settle_matured_earnings(session, ledger, NOW + timedelta(days=14), program=program)
        == 1
    )
    await session.commit()
    assert (
        await settle_matured_earnings(session, ledger, NOW + timedelta(days=15), program=program)
        == 0
    )
    balance = await member_balance(ledger, program, member)
    assert (balance.available, balance.pending, balance.value_minor) == (246, 0, 246)
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_replayed_order_is_counted_once(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    await with_rules(session, program, "1", NOW - timedelta(days=1))
    member = await enrol(session, ledger, program, "bob")
    first = await record_purchase(
        session, ledger, program, purchase("bob", "B-1", 5000), NOW, principal=system("test")
    )
    await session.commit()
    replay = await record_purchase(
        session, ledger, program, purchase("bob", "B-1", 5000), NOW, principal=system("test")
    )
    assert (replay.points, replay.replayed) == (first.points, True)
    with pytest.raises(Conflict):
        await record_purchase(
            session, ledger, program, purchase("bob", "B-1", 5001), NOW, principal=system("test")
        )
    assert (await member_balance(ledger, program, member)).pending == 50


async def test_twenty_parallel_deliveries_are_counted_once(
    engine: AsyncEngine, session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    await with_rules(session, program, "1", NOW - timedelta(days=1))
    member = await enrol(session, ledger, program, "carol")

    async def deliver() -> bool:
        async with AsyncSession(engine, expire_on_commit=False) as own:
            try:
                await record_purchase(
                    own,
                    ledger,
                    program,
                    purchase("carol", "C-1", 7000),
                    NOW,
                    principal=system("test"),
                )
                await own.commit()
            except Exception:
                return False
            return True

    results = await asyncio.gather(*(deliver() for _ in range(20)))
    assert any(results)
    assert (await member_balance(ledger, program, member)).pending == 70
    # A later delivery is a replay, not an error.
    again = await record_purchase(
        session, ledger, program, purchase("carol", "C-1", 7000), NOW, principal=system("test")
    )
    assert again.replayed


async def test_rate_change_leaves_past_earnings_untouched(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    await with_rules(session, program, "1", NOW - timedelta(days=10))
    await enrol(session, ledger, program, "dan")
    before = await record_purchase(
        session,
        ledger,
        program,
        purchase("dan", "D-1", 10_000, NOW - timedelta(days=2)),
        NOW,
        principal=system("test"),
    )
    await session.commit()
    # Halve the rate from tomorrow: a purchase before then keeps the old rate,
    # even one reported after the change was published.
    v2 = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal("0.5")), principal=system("test")
    )
    tomorrow = NOW + timedelta(days=1)
    await publish_rules(session, program, v2.version, tomorrow, now=NOW, principal=system("test"))
    await session.commit()
    late_report = await record_purchase(
        session, ledger, program, purchase("dan", "D-2", 10_000, NOW), NOW, principal=system("test")
    )
    after = await record_purchase(
        session,
        ledger,
        program,
        purchase("dan", "D-3", 10_000, tomorrow),
        tomorrow,
        principal=system("test"),
    )
    await session.commit()
    assert (before.points, late_report.points, after.points) == (100, 100, 50)
    assert (before.rule_version, after.rule_version) == (1, 2)
    replay = await record_purchase(
        session,
        ledger,
        program,
        purchase("dan", "D-1", 10_000, NOW - timedelta(days=2)),
        NOW,
        principal=system("test"),
    )
    assert replay.points == 100
    with pytest.raises(PublishInPast):
        v3 = await draft_rules(
            session, program, EarnRules(points_per_unit=Decimal(3)), principal=system("test")
        )
        await publish_rules(
            session,
            program,
            v3.version,
            NOW - timedelta(hours=1),
            now=NOW,
            principal=system("test"),
        )
    assert (await rules_in_force(session, program, NOW)).version == 1  # type: ignore[union-attr]


async def test_return_before_posting_shrinks_what_is_posted(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(return_window_days=7)
    await with_rules(session, program, "1", NOW - timedelta(days=1))
    member = await enrol(session, ledger, program, "erin")
    await record_purchase(
        session, ledger, program, purchase("erin", "E-1", 10_000), NOW, principal=system("test")
    )
    await session.commit()
    first = await return_purchase(
        session,
        ledger,
        program,
        "E-1",
        ReturnEvent(return_id="R-1", amount_minor=2_500),
        principal=system("test"),
    )
    await session.commit()
    assert (first.points_reversed, first.debt_points) == (25, 0)
    with pytest.raises(ReturnExceedsPurchase):
        await return_purchase(
            session,
            ledger,
            program,
            "E-1",
            ReturnEvent(return_id="R-2", amount_minor=7_501),
            principal=system("test"),
        )
    slug = program.slug
    await session.rollback()  # expires every loaded object
    program = await get_program(session, system("test"), slug)
    member = await get_member(session, program, "erin")
    await settle_matured_earnings(session, ledger, NOW + timedelta(days=7), program=program)
    await session.commit()
    balance = await member_balance(ledger, program, member)
    assert (balance.available, balance.pending) == (75, 0)


async def test_return_after_partial_redemption_records_a_debt(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(return_window_days=0)
    await with_rules(session, program, "1", NOW - timedelta(days=1))
    member = await enrol(session, ledger, program, "finn")
    await record_purchase(
        session, ledger, program, purchase("finn", "F-1", 10_000), NOW, principal=system("test")
    )
    await settle_matured_earnings(session, ledger, NOW, program=program)
    await session.commit()
    assert await spend(ledger, program, member, 80) == "ok"

    outcome = await return_purchase(
        session,
        ledger,
        program,
        "F-1",
        ReturnEvent(return_id="R-1", amount_minor=10_000),
        principal=system("test"),
    )
    await session.commit()
    assert (outcome.points_reversed, outcome.debt_points) == (100, 80)
    member = await get_member(session, program, "finn")
    balance = await member_balance(ledger, program, member)
    assert (balance.available, balance.debt) == (0, 80)
    # The spent points cannot be spent again, and the replay changes nothing.
    assert await spend(ledger, program, member, 1) == "exceeds_credits"
    replay = await return_purchase(
        session,
        ledger,
        program,
        "F-1",
        ReturnEvent(return_id="R-1", amount_minor=10_000),
        principal=system("test"),
    )
    assert (replay.replayed, replay.debt_points) == (True, 80)
    # The next earning repays the debt first.
    await record_purchase(
        session, ledger, program, purchase("finn", "F-2", 10_000), NOW, principal=system("test")
    )
    await settle_matured_earnings(session, ledger, NOW, program=program)
    await session.commit()
    balance = await member_balance(ledger, program, member)
    assert (balance.available, balance.debt) == (20, 0)
    assert await check_invariants(ledger.pool, program.ledger_id) == []


async def test_bad_purchases_are_refused(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    await with_rules(session, program, "1", NOW - timedelta(days=1))
    member = await enrol(session, ledger, program, "gail")
    with pytest.raises(InvalidPurchase, match="currency"):
        await record_purchase(
            session,
            ledger,
            program,
            PurchaseEvent(
                member="gail", order_id="G-1", amount_minor=100, currency="USD", occurred_at=NOW
            ),
            NOW,
            principal=system("test"),
        )
    with pytest.raises(InvalidPurchase, match="future"):
        await record_purchase(
            session,
            ledger,
            program,
            purchase("gail", "G-2", 100, NOW + timedelta(hours=1)),
            NOW,
            principal=system("test"),
        )
    member.status = MemberStatus.FROZEN
    await session.commit()
    with pytest.raises(MemberNotActive):
        await record_purchase(
            session, ledger, program, purchase("gail", "G-3", 100), NOW, principal=system("test")
        )
    assert (await member_balance(ledger, program, member)).pending == 0


async def test_bonus_budget_is_never_overspent(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    from rewards.rules import Bonus

    program = await new_program()
    bonus = Bonus(
        name="launch",
        multiplier=Decimal(2),
        starts_at=NOW - timedelta(days=1),
        ends_at=NOW + timedelta(days=1),
        budget_points=15,
    )
    version = await draft_rules(
        session,
        program,
        EarnRules(points_per_unit=Decimal(1), bonuses=(bonus,)),
        principal=system("test"),
    )
    await publish_rules(
        session,
        program,
        version.version,
        NOW - timedelta(days=1),
        now=NOW - timedelta(days=1),
        principal=system("test"),
    )
    await session.commit()
    await enrol(session, ledger, program, "bea")
    earned = []
    for n in range(3):
        outcome = await record_purchase(
            session,
            ledger,
            program,
            purchase("bea", f"BB-{n}", 1000),
            NOW,
            principal=system("test"),
        )
        await session.commit()
        earned.append(outcome.points)
    # 10 base points each; the bonus doubles until its 15 points are spent.
    assert earned == [20, 15, 10]
