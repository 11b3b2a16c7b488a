"""Partner issuances over HTTP go through the intake: concurrent issuances of
a program are written in one transaction, and each still gets its own
answer; a refused or broken one writes nothing of its own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from api.issuance_intake import IssuanceIntake
from core.models import Program
from ledger import Ledger
from partners.coalition_errors import FundingExhausted
from partners.coalition_schemas import IssuanceRequest, IssuanceView
from partners.issuance import prepare_issuance
from partners.issuance_recording import PreparedIssuance
from partners.models import Partner
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import (
    contract,
    enrolled,
    fund,
    issuable,
    partner_principal,
)
from tests.partners.conftest import NewPartner
from tests.partners.test_issuance import written


@pytest.fixture
async def intake(pool: asyncpg.Pool, ledger: Ledger) -> AsyncIterator[IssuanceIntake]:
    intake = IssuanceIntake(pool, ledger)
    yield intake
    await intake.close()


class Coalition(msgspec.Struct):
    program: Program
    partner: Partner


@pytest.fixture
async def coalition(
    session: AsyncSession,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> Coalition:
    """A program, three members (ann, bob, cy) and a partner funded with 250 points."""
    program = await new_program()
    partner = await new_partner(program)
    for name in ("ann", "bob", "cy"):
        await enrolled(session, ledger, program, name)
    await contract(session, ledger, program, partner)
    await fund(session, ledger, program, partner, 250)
    return Coalition(program, partner)


async def prepared(
    pool: asyncpg.Pool, side: Coalition, transaction_id: str, member: str, points: int
) -> PreparedIssuance:
    request = IssuanceRequest(transaction_id=transaction_id, member=member, points=points)
    ready = await prepare_issuance(
        pool, request, datetime.now(UTC), principal=partner_principal(side.partner)
    )
    assert isinstance(ready, PreparedIssuance)
    return ready


async def transactions(pool: asyncpg.Pool, program: Program) -> int:
    """How many transactions wrote the program's issuances (a row's
    ``created_at`` is its transaction's start)."""
    count: int = await pool.fetchval(
        "SELECT count(DISTINCT created_at) FROM partner_issuances WHERE program_id = $1",
        program.id,
    )
    return count


async def test_concurrent_issuances_are_written_in_one_transaction(
    intake: IssuanceIntake, pool: asyncpg.Pool, ledger: Ledger, coalition: Coalition
) -> None:
    batch = [
        await prepared(pool, coalition, f"T-{n}", member, 10)
        for n, member in enumerate(["ann", "bob", "cy", "ann", "bob"])
    ]
    views = await asyncio.gather(*(intake.submit(issuance) for issuance in batch))
    assert [v.transaction_id for v in views] == [f"T-{n}" for n in range(5)]
    assert [v.member for v in views] == ["ann", "bob", "cy", "ann", "bob"]
    assert not any(v.replayed for v in views)
    assert await transactions(pool, coalition.program) == 1
    assert await written(pool, coalition.program.id) == (5, 5, 5)
    assert await issuable(ledger, coalition.program, coalition.partner) == 200


async def test_a_refused_issuance_in_a_batch_fails_alone_and_writes_nothing(
    intake: IssuanceIntake,
    pool: asyncpg.Pool,
    ledger: Ledger,
    session: AsyncSession,
    coalition: Coalition,
) -> None:
    # 250 points of funding: the third (100 more after 200) is refused by the
    # ledger, the fourth (50) still fits, in the order the requests came.
    amounts = [100, 100, 100, 50]
    batch = [await prepared(pool, coalition, f"T-{n}", "ann", p) for n, p in enumerate(amounts)]
    answers = await asyncio.gather(
        *(intake.submit(issuance) for issuance in batch), return_exceptions=True
    )
    assert isinstance(answers[2], FundingExhausted)
    issued = [a for n, a in enumerate(answers) if n != 2]
    assert all(isinstance(a, IssuanceView) for a in issued)
    assert await issuable(ledger, coalition.program, coalition.partner) == 0
    # Nothing of the refused one: no row, line or event, and its transfer's
    # id not kept as refused (the batch was written again without it).
    assert await written(pool, coalition.program.id) == (3, 3, 3)
    assert await transactions(pool, coalition.program) == 1
    assert batch[2].transfer_id is not None
    assert await ledger.lookup_transfers([batch[2].transfer_id]) == []
    await fund(session, ledger, coalition.program, coalition.partner, 100)
    again = await intake.submit(await prepared(pool, coalition, "T-2", "ann", 100))
    assert not again.replayed and again.points == 100


async def test_a_bad_issuance_in_a_batch_fails_alone(
    intake: IssuanceIntake, pool: asyncpg.Pool, ledger: Ledger, coalition: Coalition
) -> None:
    batch = [await prepared(pool, coalition, f"T-{n}", "bob", 10) for n in range(4)]
    # A member the database does not know (deleted since it was resolved,
    # say): its row breaks the batch's statement, which is split until it
    # is alone.
    gone = msgspec.structs.replace(batch[1].acting, member_id=uuid.uuid4())
    batch[1] = msgspec.structs.replace(batch[1], acting=gone)
    answers = await asyncio.gather(
        *(intake.submit(issuance) for issuance in batch), return_exceptions=True
    )
    assert isinstance(answers[1], asyncpg.ForeignKeyViolationError)
    assert [a.transaction_id for n, a in enumerate(answers) if n != 1] == [  # type: ignore[union-attr]
        "T-0",
        "T-2",
        "T-3",
    ]
    assert await written(pool, coalition.program.id) == (3, 3, 3)
    assert await issuable(ledger, coalition.program, coalition.partner) == 220


async def test_the_same_transaction_twice_in_a_batch_issues_once(
    intake: IssuanceIntake, pool: asyncpg.Pool, ledger: Ledger, coalition: Coalition
) -> None:
    first = await prepared(pool, coalition, "T-1", "ann", 10)
    same = await prepared(pool, coalition, "T-1", "ann", 10)
    other = await prepared(pool, coalition, "T-1", "ann", 11)
    answers = await asyncio.gather(
        intake.submit(first), intake.submit(same), intake.submit(other), return_exceptions=True
    )
    view, replay, conflict = answers
    assert isinstance(view, IssuanceView) and isinstance(replay, IssuanceView)
    assert not view.replayed and replay.replayed and replay.id == view.id
    assert type(conflict).__name__ == "Conflict"
    assert await written(pool, coalition.program.id) == (1, 1, 1)
    assert await issuable(ledger, coalition.program, coalition.partner) == 240


async def test_a_prepaid_partner_cannot_over_issue_through_the_intake(
    intake: IssuanceIntake, pool: asyncpg.Pool, ledger: Ledger, coalition: Coalition
) -> None:
    principal = partner_principal(coalition.partner)
    now = datetime.now(UTC)
    outcomes = await asyncio.gather(
        *(
            intake.issue(
                IssuanceRequest(transaction_id=f"T-{n}", member="cy", points=25),
                now,
                principal=principal,
            )
            for n in range(20)
        ),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(refused) == 10 and all(isinstance(r, FundingExhausted) for r in refused)
    assert await issuable(ledger, coalition.program, coalition.partner) == 0
    assert await written(pool, coalition.program.id) == (10, 10, 10)
