"""A purchase is audited by the use case that records it, naming whoever
reported it, whatever door it came through: once, in the purchase's own
transaction; a replay or a refusal writes no line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.demo import DEMO_MEMBERS, DEMO_PROGRAM, load_rewards_demo
from core.audit import audit_events
from core.errors import Conflict, DomainError
from core.principal import Principal, PrincipalKind
from ledger import Ledger
from rewards.connections import session_connection
from rewards.purchase_recording import record_purchase, record_purchases
from rewards.purchases import PurchaseOutcome
from tests.conftest import NewProgram
from tests.rewards.test_purchases import NOW, enrol, purchase, with_rules

TILL = Principal(kind=PrincipalKind.OPERATOR, actor="key:till-1")
WEB = Principal(kind=PrincipalKind.OPERATOR, actor="key:web-shop")


async def lines(session: AsyncSession, slug: str, order: str) -> list[tuple[str, object]]:
    """(actor, details) of the order's ``purchase.record`` lines."""
    rows = await session.execute(
        select(audit_events.c.actor, audit_events.c.details).where(
            audit_events.c.action == "purchase.record",
            audit_events.c.subject == f"program:{slug}:order:{order}",
        )
    )
    return [(row.actor, row.details) for row in rows]


async def test_a_purchase_is_audited_once_by_its_principal(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    await with_rules(session, program, "1", NOW - timedelta(days=1))
    await enrol(session, ledger, program, "ama")
    first = await record_purchase(
        session, ledger, program, purchase("ama", "A-1", 4_200), NOW, principal=TILL
    )
    await session.commit()
    again = await record_purchase(
        session, ledger, program, purchase("ama", "A-1", 4_200), NOW, principal=WEB
    )
    with pytest.raises(Conflict):
        await record_purchase(
            session, ledger, program, purchase("ama", "A-1", 4_201), NOW, principal=WEB
        )
    slug = program.slug
    await session.rollback()
    assert again.replayed
    assert await lines(session, slug, "A-1") == [
        (TILL.actor, {"points": first.points, "amount_minor": 4_200})
    ]


async def test_a_batch_audits_each_purchase_by_its_own_principal(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    await with_rules(session, program, "1", NOW - timedelta(days=1))
    await enrol(session, ledger, program, "ben")
    events = [
        purchase("ben", "B-1", 1_000),
        purchase("ben", "B-2", 2_000),
        purchase("ben", "B-1", 1_000),  # the first again, in the same batch
        purchase("nobody", "B-3", 3_000),
    ]
    answers = await record_purchases(
        await session_connection(session),
        ledger,
        program,
        events,
        NOW,
        principals=[TILL, WEB, WEB, TILL],
        atomic=True,
    )
    await session.commit()
    assert [type(a) for a in answers][:3] == [PurchaseOutcome] * 3
    assert isinstance(answers[3], DomainError)
    assert await lines(session, program.slug, "B-1") == [
        (TILL.actor, {"points": 10, "amount_minor": 1_000})
    ]
    assert await lines(session, program.slug, "B-2") == [
        (WEB.actor, {"points": 20, "amount_minor": 2_000})
    ]
    assert await lines(session, program.slug, "B-3") == []


async def test_the_demos_purchases_are_audited(session: AsyncSession, ledger: Ledger) -> None:
    # The demo's program has a fixed slug; the session's database is its
    # own, and no other test here loads the demo.
    await load_rewards_demo(session, ledger, datetime.now(UTC))
    await session.commit()
    for name in DEMO_MEMBERS:
        found = await lines(session, DEMO_PROGRAM, f"DEMO-{name}")
        assert [actor for actor, _ in found] == ["system:demo"], name
