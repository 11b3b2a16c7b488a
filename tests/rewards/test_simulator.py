"""The simulator reprices recorded purchases under a draft, writing nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.principal import system
from ledger import Ledger
from rewards.models import Purchase
from rewards.programs import Enrolment, enrol_member
from rewards.purchase_recording import record_purchase
from rewards.purchases import PurchaseEvent, ReturnEvent
from rewards.returns import return_purchase
from rewards.rule_versions import draft_rules, publish_rules
from rewards.rules import EarnRules, Item
from rewards.simulator import simulate
from tests.conftest import NewProgram


async def test_halving_the_rate_shows_before_publishing(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    now = datetime.now(UTC)
    start = now - timedelta(days=20)
    v1 = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(1)), principal=system("test")
    )
    await publish_rules(session, program, v1.version, start, now=start, principal=system("test"))
    for name in ("a", "b"):
        await enrol_member(
            session, ledger, program, Enrolment(external_id=name), principal=system("test")
        )
    for n, (name, amount, days_ago) in enumerate(
        (("a", 10_000, 2), ("a", 5_000, 10), ("b", 3_000, 1), ("b", 8_000, 40))
    ):
        at = now - timedelta(days=days_ago)
        if at < start:
            continue  # before the rules: not part of the window anyway
        await record_purchase(
            session,
            ledger,
            program,
            PurchaseEvent(
                member=name, order_id=f"S-{n}", amount_minor=amount, currency="ZAR", occurred_at=at
            ),
            now,
            principal=system("test"),
        )
    await return_purchase(
        session,
        ledger,
        program,
        "S-0",
        ReturnEvent(return_id="R", amount_minor=5_000),
        principal=system("test"),
    )
    v2 = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal("0.5")), principal=system("test")
    )
    await session.commit()
    purchases_before = await session.scalar(select(func.count()).select_from(Purchase))

    report = await simulate(session, program, v2.version, days=30, now=now)
    # Earned: 100 (50 returned) + 50 + 30 = 130 kept; the draft: 25 + 25 + 15.
    assert (report.purchases, report.current.points, report.draft.points) == (3, 130, 65)
    assert report.draft.liability_minor == 65
    [line] = report.by_tier
    assert (line.tier, line.members, line.purchases) == (None, 2, 3)
    assert await session.scalar(select(func.count()).select_from(Purchase)) == purchases_before


async def test_a_return_is_netted_alike_on_both_sides_for_itemized_purchases(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    """A purchase with items and a return: the draft nets the return as the
    recorded points did (180 points priced, half returned: 90 due)."""
    program = await new_program()
    now = datetime.now(UTC)
    start = now - timedelta(days=5)
    v1 = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(1)), principal=system("test")
    )
    await publish_rules(session, program, v1.version, start, now=start, principal=system("test"))
    await enrol_member(
        session, ledger, program, Enrolment(external_id="i"), principal=system("test")
    )
    items = (Item(sku="A", amount_minor=9_000), Item(sku="B", amount_minor=9_000))
    await record_purchase(
        session,
        ledger,
        program,
        PurchaseEvent(
            member="i",
            order_id="I-1",
            amount_minor=18_000,
            currency="ZAR",
            occurred_at=now - timedelta(days=1),
            items=items,
        ),
        now,
        principal=system("test"),
    )
    await return_purchase(
        session,
        ledger,
        program,
        "I-1",
        ReturnEvent(return_id="R", amount_minor=9_000),
        principal=system("test"),
    )
    same = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(1)), principal=system("test")
    )
    await session.commit()

    report = await simulate(session, program, same.version, days=30, now=now)
    assert (report.current.points, report.draft.points) == (90, 90)
