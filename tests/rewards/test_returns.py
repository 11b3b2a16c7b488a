"""A return writes its own audit line, once, whatever door it came through
and however often it is retried."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import audit_events
from core.codes import TransferCode
from core.members import get_member
from core.models import Program
from core.principal import Principal, PrincipalKind, system
from core.programs import get_program
from ledger import Ledger, check_invariants
from rewards.programs import member_balance
from rewards.purchase_recording import record_purchase
from rewards.purchases import ReturnEvent
from rewards.returns import return_purchase
from rewards.settlement import settle_matured_earnings
from tests.conftest import NewProgram
from tests.rewards.test_purchases import NOW, enrol, purchase, with_rules

TILL = Principal(kind=PrincipalKind.OPERATOR, actor="key:till-7")


async def audit_lines(session: AsyncSession, slug: str, order: str) -> list[str]:
    """The actors of the order's return lines."""
    rows = await session.scalars(
        select(audit_events.c.actor).where(
            audit_events.c.action == "purchase.return",
            audit_events.c.subject == f"program:{slug}:order:{order}",
        )
    )
    return list(rows)


async def posted_purchase(
    session: AsyncSession, ledger: Ledger, program: Program, member: str, order: str
) -> None:
    await with_rules(session, program, "1", NOW - timedelta(days=1))
    await enrol(session, ledger, program, member)
    await record_purchase(
        session, ledger, program, purchase(member, order, 10_000), NOW, principal=system("test")
    )
    await settle_matured_earnings(session, ledger, NOW, program=program)
    await session.commit()


async def test_a_return_audits_itself_once(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(return_window_days=0)
    await posted_purchase(session, ledger, program, "jo", "J-1")
    event = ReturnEvent(return_id="R-1", amount_minor=4_000)
    first = await return_purchase(session, ledger, program, "J-1", event, principal=TILL)
    await session.commit()
    again = await return_purchase(session, ledger, program, "J-1", event, principal=TILL)
    await session.commit()
    assert (first.points_reversed, first.replayed, again.replayed) == (40, False, True)
    assert await audit_lines(session, program.slug, "J-1") == ["key:till-7"]


async def test_a_retry_after_the_ledger_committed_audits_once(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    """The take-back commits through the ledger's writer first; the session
    then fails. The retry finds the take-back recorded (``exists``) and
    writes the return and its audit line, once."""
    program = await new_program(return_window_days=0)
    await posted_purchase(session, ledger, program, "kim", "K-1")
    event = ReturnEvent(return_id="R-1", amount_minor=10_000)
    lost = await return_purchase(session, ledger, program, "K-1", event, principal=TILL)
    slug = program.slug
    await session.rollback()  # the request failed after the ledger's commit
    assert await audit_lines(session, slug, "K-1") == []
    program = await get_program(session, TILL, slug)
    retried = await return_purchase(session, ledger, program, "K-1", event, principal=TILL)
    await session.commit()
    assert (retried.points_reversed, retried.replayed) == (lost.points_reversed, False)
    assert await audit_lines(session, slug, "K-1") == ["key:till-7"]
    # Taken back once: the wallet is empty, not overdrawn into a debt.
    member = await get_member(session, program, "kim")
    balance = await member_balance(ledger, program, member)
    assert (balance.available, balance.debt) == (0, 0)
    page = await ledger.history(member.wallet_account_id, limit=20)
    reversals = [t.amount for t in page.transfers if t.code == TransferCode.RETURN_REVERSAL]
    assert reversals == [100]
    assert await check_invariants(ledger.pool, program.ledger_id) == []
