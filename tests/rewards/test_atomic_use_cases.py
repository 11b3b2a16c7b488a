"""Use cases that write through the ledger's own connections converge on
retry: a failure between any two of their writes (or before the session's
commit) leaves nothing that breaks the retry, and the retry ends with
exactly the state one clean run leaves."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.stripe.events import handle_event
from core import audit
from core.codes import AccountCode
from core.models import Program
from core.principal import system
from ledger import Ledger
from rewards.programs import Enrolment, ProgramSpec, enrol_member, member_balance, open_program
from tests.conftest import NewProgram

_slugs = itertools.count(1)


class Injected(Exception):
    """The failure a test injects between two writes."""


def fail_once(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
    """The next call of ``owner.name`` raises ``Injected`` after doing its
    work (its writes stand, what follows it never runs); later calls pass."""
    original: Callable[..., Any] = getattr(owner, name)
    calls = itertools.count()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if next(calls):
            return result
        if asyncio.iscoroutine(result):

            async def after() -> Any:
                await result
                raise Injected(name)

            return after()
        raise Injected(name)

    monkeypatch.setattr(owner, name, wrapper)


def spec(slug: str) -> ProgramSpec:
    return msgspec.convert(
        {"slug": slug, "name": "Atomic", "currency": "ZAR", "point_value_minor": Decimal(1)},
        ProgramSpec,
    )


async def ledger_state(pool: asyncpg.Pool, slug: str) -> tuple[int, int, int]:
    """Ledgers named for the slug, their accounts, and program rows."""
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM ledgers WHERE name = $1) AS ledgers,
            (SELECT count(*) FROM accounts a JOIN ledgers l ON l.id = a.ledger
             WHERE l.name = $1) AS accounts,
            (SELECT count(*) FROM programs WHERE slug = $2) AS programs""",
        f"program:{slug}",
        slug,
    )
    assert row is not None
    return row["ledgers"], row["accounts"], row["programs"]


FailurePoint = Callable[[pytest.MonkeyPatch, Ledger], None]

#: Each pair of writes of opening a program: the ledger, its accounts, the row.
PROGRAM_FAILURES: dict[str, FailurePoint] = {
    "after the ledger": lambda mp, ledger: fail_once(mp, ledger, "create_ledger"),
    "after the accounts": lambda mp, ledger: fail_once(mp, ledger, "create_accounts"),
    "before the commit": lambda mp, ledger: fail_once(mp, AsyncSession, "flush"),
}


@pytest.mark.parametrize("failure", PROGRAM_FAILURES)
async def test_opening_a_program_converges_after_a_failure(
    failure: str,
    monkeypatch: pytest.MonkeyPatch,
    engine: AsyncEngine,
    ledger: Ledger,
    pool: asyncpg.Pool,
) -> None:
    slug = f"atomic-open-{next(_slugs)}"
    PROGRAM_FAILURES[failure](monkeypatch, ledger)
    async with AsyncSession(engine) as session:
        with pytest.raises(Injected):
            await open_program(session, ledger, spec(slug), principal=system("test"))
        await session.rollback()
    monkeypatch.undo()

    async with AsyncSession(engine, expire_on_commit=False) as session:
        program, created = await open_program(session, ledger, spec(slug), principal=system("test"))
        await session.commit()
    assert created
    assert await ledger_state(pool, slug) == (1, 3, 1)
    accounts = await ledger.lookup_accounts(
        [program.issuance_account_id, program.redemption_account_id, program.breakage_account_id]
    )
    assert {a.ledger for a in accounts} == {program.ledger_id}


async def test_parallel_opens_after_a_failure_give_one_program(
    monkeypatch: pytest.MonkeyPatch, engine: AsyncEngine, ledger: Ledger, pool: asyncpg.Pool
) -> None:
    slug = f"atomic-parallel-{next(_slugs)}"
    fail_once(monkeypatch, ledger, "create_accounts")
    async with AsyncSession(engine) as session:
        with pytest.raises(Injected):
            await open_program(session, ledger, spec(slug), principal=system("test"))
    monkeypatch.undo()

    async def open_once() -> tuple[Program, bool]:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            opened = await open_program(session, ledger, spec(slug), principal=system("test"))
            await session.commit()
            return opened

    opened = await asyncio.gather(*(open_once() for _ in range(4)))
    assert sorted(created for _, created in opened) == [False, False, False, True]
    assert len({program.id for program, _ in opened}) == 1
    assert await ledger_state(pool, slug) == (1, 3, 1)


async def wallets(pool: asyncpg.Pool, program: Program) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM accounts WHERE ledger = $1 AND code = $2",
        program.ledger_id,
        AccountCode.MEMBER_WALLET,
    )
    return count


ENROLMENT_FAILURES: dict[str, FailurePoint] = {
    "after the wallet": lambda mp, ledger: fail_once(mp, ledger, "create_accounts"),
    "before the commit": lambda mp, ledger: fail_once(mp, AsyncSession, "flush"),
}


@pytest.mark.parametrize("failure", ENROLMENT_FAILURES)
async def test_enrolling_converges_after_a_failure(
    failure: str,
    monkeypatch: pytest.MonkeyPatch,
    engine: AsyncEngine,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
) -> None:
    program = await new_program()
    ENROLMENT_FAILURES[failure](monkeypatch, ledger)
    async with AsyncSession(engine) as session:
        with pytest.raises(Injected):
            await enrol_member(
                session, ledger, program, Enrolment(external_id="twice"), principal=system("test")
            )
    monkeypatch.undo()

    async with AsyncSession(engine, expire_on_commit=False) as session:
        member, created = await enrol_member(
            session,
            ledger,
            program,
            Enrolment(external_id="twice"),
            principal=system("test"),
        )
        await session.commit()
    assert created
    assert await wallets(pool, program) == 1
    balance = await member_balance(ledger, program, member)
    assert (balance.available, balance.pending, balance.debt) == (0, 0, 0)


def _intent(program: Program, member: str, **fields: Any) -> dict[str, Any]:
    """A PaymentIntent as Stripe sends it: with its ``created`` (without
    one, the handler dates the purchase by its own clock, to the second, and
    two deliveries either side of a second would be two different purchases
    of one order)."""
    obj = {
        "id": f"pi_{uuid.uuid4().hex[:12]}",
        "object": "payment_intent",
        "created": int(time.time()),
        "amount": 4_000,
        "amount_received": 4_000,
        "currency": "zar",
        "metadata": {"program": program.slug, "member": member},
    }
    return {"type": "payment_intent.succeeded", "data": {"object": obj | fields}}


async def stripe_lines(pool: asyncpg.Pool, action: str, subject: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT actor FROM audit_events WHERE action = $1 AND subject = $2", action, subject
    )
    return [r["actor"] for r in rows]


async def test_a_stripe_purchase_is_audited_once(
    engine: AsyncEngine, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    program = await new_program()
    async with AsyncSession(engine) as session:
        await enrol_member(
            session, ledger, program, Enrolment(external_id="payer"), principal=system("test")
        )
        await session.commit()
    event = _intent(program, "payer")
    for _ in range(2):
        async with AsyncSession(engine) as session:
            await handle_event(session, ledger, event)
            await session.commit()
    subject = f"program:{program.slug}:order:{event['data']['object']['id']}"
    assert await stripe_lines(pool, "purchase.record", subject) == ["system:stripe"]


async def test_bought_points_whose_audit_failed_are_audited_by_the_retry(
    monkeypatch: pytest.MonkeyPatch,
    engine: AsyncEngine,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
) -> None:
    program = await new_program()
    async with AsyncSession(engine, expire_on_commit=False) as session:
        member, _ = await enrol_member(
            session, ledger, program, Enrolment(external_id="buyer"), principal=system("test")
        )
        await session.commit()
    event = _intent(
        program,
        "buyer",
        amount=300,
        amount_received=300,
        metadata={
            "program": program.slug,
            "member": "buyer",
            "kind": "points_purchase",
            "points": "300",
        },
    )
    # The points are posted through the writer; the audit insert fails after.
    fail_once(monkeypatch, audit, "record")
    async with AsyncSession(engine) as session:
        with pytest.raises(Injected):
            await handle_event(session, ledger, event)
    monkeypatch.undo()
    for _ in range(2):
        async with AsyncSession(engine) as session:
            assert await handle_event(session, ledger, event) == "points bought: 300"
            await session.commit()
    subject = f"program:{program.slug}:member:buyer"
    assert await stripe_lines(pool, "points.buy", subject) == ["system:stripe"]
    assert (await member_balance(ledger, program, member)).available == 300
