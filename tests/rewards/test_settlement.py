"""Settlement and debt repayment are one step: a member's matured earning
and the repayment of their debt from it are posted together, so that no
reader ever sees the new points available beside the debt they must repay,
and a failure between the two parts leaves neither behind."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.codes import TransferCode
from core.models import Member, Program
from core.principal import system
from ledger import Ledger, LedgerUnavailable, Transfer, TransferOutcome, check_invariants
from rewards.programs import MemberBalance, read_balance
from rewards.purchase_recording import record_purchase
from rewards.purchases import ReturnEvent
from rewards.returns import return_purchase
from rewards.settlement import settle_matured_earnings
from rewards.tasks import settle_due_earnings
from tests.conftest import NewProgram
from tests.rewards.test_purchases import NOW, enrol, purchase, spend, with_rules


class WatchedLedger:
    """The ledger, with the member's balance read (as the member app reads
    it) before and after every posting call; ``fail_repayment``: a call
    that carries a debt repayment fails as a lost connection would."""

    def __init__(self, ledger: Ledger, program: Program, member: str) -> None:
        self._ledger = ledger
        self._program = program
        self._member = member
        self.fail_repayment = False
        self.seen: list[MemberBalance] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    async def _look(self) -> None:
        self.seen.append(await read_balance(self._ledger.pool, self._program, self._member))

    async def _post(self, transfers: list[Transfer], post: Any) -> list[TransferOutcome]:
        await self._look()
        if self.fail_repayment and any(t.code == TransferCode.DEBT_REPAYMENT for t in transfers):
            raise LedgerUnavailable("connection lost (injected)")
        outcomes: list[TransferOutcome] = await post()
        await self._look()
        return outcomes

    async def create_transfers(self, transfers: list[Transfer]) -> list[TransferOutcome]:
        return await self._post(transfers, lambda: self._ledger.create_transfers(transfers))

    async def create_transfers_within(
        self, connection: Any, transfers: list[Transfer]
    ) -> list[TransferOutcome]:
        return await self._post(
            transfers, lambda: self._ledger.create_transfers_within(connection, transfers)
        )


def half_settled(balance: MemberBalance) -> bool:
    return balance.available > 0 and balance.debt > 0


async def in_debt(
    session: AsyncSession, ledger: Ledger, program: Program, external_id: str, spent: int
) -> Member:
    """A member who earned 100 (posted), spent ``spent`` and had the whole
    purchase returned: a debt of ``spent``."""
    member = await enrol(session, ledger, program, external_id)
    order = f"{external_id}-1"
    await record_purchase(
        session,
        ledger,
        program,
        purchase(external_id, order, 10_000),
        NOW,
        principal=system("test"),
    )
    await settle_matured_earnings(session, ledger, NOW, program=program)
    await session.commit()
    assert await spend(ledger, program, member, spent) == "ok"
    returned = await return_purchase(
        session,
        ledger,
        program,
        order,
        ReturnEvent(return_id="R-1", amount_minor=10_000),
        principal=system("test"),
    )
    await session.commit()
    assert returned.debt_points == spent
    return member


async def test_a_matured_earning_repays_the_debt_in_the_same_step(
    session: AsyncSession, engine: AsyncEngine, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(return_window_days=0)
    await with_rules(session, program, "1", NOW - timedelta(days=1))
    # A debt of 80: 100 earned and posted, 80 spent, then all of it returned.
    member = await in_debt(session, ledger, program, "gus", 80)
    # A new earning of 150, pending until the job settles it.
    await record_purchase(
        session, ledger, program, purchase("gus", "G-2", 15_000), NOW, principal=system("test")
    )
    await session.commit()
    before = await read_balance(ledger.pool, program, "gus")
    assert (before.available, before.pending, before.debt) == (0, 150, 80)

    watched = WatchedLedger(ledger, program, "gus")
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    # The job fails where the repayment is posted: nothing of the step is left.
    watched.fail_repayment = True
    with pytest.raises(LedgerUnavailable):
        await settle_due_earnings(sessions, cast(Ledger, watched), NOW + timedelta(seconds=1))
    await watched._look()
    assert not [b for b in watched.seen if half_settled(b)], watched.seen
    assert watched.seen[-1] == before
    # Run again: settled and repaid, and no reader saw one without the other.
    watched.fail_repayment = False
    watched.seen.clear()
    # (The job settles every program's due earnings: other tests' too.)
    assert await settle_due_earnings(sessions, cast(Ledger, watched), NOW + timedelta(seconds=1))
    assert not [b for b in watched.seen if half_settled(b)], watched.seen
    after = await read_balance(ledger.pool, program, "gus")
    assert (after.available, after.pending, after.debt) == (150 - 80, 0, 0)

    # The ledger's totals: one repayment of the whole debt, nothing twice.
    page = await ledger.history(member.wallet_account_id, limit=50)
    repayments = [t for t in page.transfers if t.code == TransferCode.DEBT_REPAYMENT]
    assert [(t.amount, (t.metadata or {}).get("order_id")) for t in repayments] == [(80, "G-2")]
    [wallet] = await ledger.lookup_accounts([member.wallet_account_id])
    # In: 100 + 150 earned. Out: 80 spent, 20 taken back, 80 repaid.
    assert (wallet.credits_posted, wallet.debits_posted) == (100 + 150, 80 + 20 + 80)
    assert (wallet.credits_pending, wallet.debits_pending) == (0, 0)
    [totals] = await ledger.totals(program.ledger_id)
    assert totals.debits_posted == totals.credits_posted
    assert (totals.debits_pending, totals.credits_pending) == (0, 0)
    assert await check_invariants(ledger.pool, program.ledger_id) == []
    # Run once more: nothing is due, nothing moves.
    later = NOW + timedelta(seconds=1)
    assert await settle_matured_earnings(session, ledger, later, program=program) == 0
    assert await read_balance(ledger.pool, program, "gus") == after


async def test_a_debt_larger_than_the_earning_takes_all_of_it(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(return_window_days=0)
    await with_rules(session, program, "1", NOW - timedelta(days=1))
    await in_debt(session, ledger, program, "hal", 100)
    await record_purchase(
        session, ledger, program, purchase("hal", "H-2", 3_000), NOW, principal=system("test")
    )
    await settle_matured_earnings(session, ledger, NOW, program=program)
    await session.commit()
    balance = await read_balance(ledger.pool, program, "hal")
    assert (balance.available, balance.pending, balance.debt) == (0, 0, 100 - 30)
    assert await check_invariants(ledger.pool, program.ledger_id) == []
