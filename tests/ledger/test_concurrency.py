"""Concurrency and failure: real connections, real locks, real kills."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest

from ledger import (
    Account,
    AccountFlags,
    Ledger,
    LedgerUnavailable,
    Transfer,
    TransferFlags,
    check_invariants,
)
from ledger.connection import create_pool

NewLedger = Callable[[], Awaitable[int]]
WALLET = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS


@asynccontextmanager
async def separate_writers(database_url: str, count: int, size: int) -> AsyncIterator[list[Ledger]]:
    """``count`` ledgers with pools (of ``size``) of their own, as separate
    processes would have: their batches really run side by side."""
    pools: list[asyncpg.Pool] = []
    writers: list[Ledger] = []
    try:
        for _ in range(count):
            pools.append(await create_pool(database_url, min_size=1, max_size=size))
            writers.append(Ledger(pools[-1]))
        yield writers
    finally:
        for writer in writers:
            await writer.close()
        for pool in pools:
            await pool.close()


def zipf_index(rng: random.Random, n: int, s: float = 1.2) -> int:
    weights = [1 / (k + 1) ** s for k in range(n)]
    return rng.choices(range(n), weights=weights)[0]


async def test_stress_with_hot_account_and_opposing_flows(
    ledger: Ledger, new_ledger: NewLedger, database_url: str
) -> None:
    ledger_id = await new_ledger()
    issuance, shop = uuid.uuid4(), uuid.uuid4()
    members = [uuid.uuid4() for _ in range(40)]
    await ledger.create_accounts(
        [Account(id=issuance, ledger=ledger_id, code=1), Account(id=shop, ledger=ledger_id, code=3)]
        + [Account(id=m, ledger=ledger_id, code=2, flags=WALLET) for m in members]
    )
    rng = random.Random(7)

    async def client(n: int) -> list[tuple[Transfer, str]]:
        writer = writers[n % len(writers)]
        done = []
        for _ in range(15):
            a = members[zipf_index(rng, len(members))]
            b = members[zipf_index(rng, len(members))]
            kind = rng.random()
            if kind < 0.35:
                t = Transfer(
                    id=uuid.uuid4(),
                    debit_account_id=issuance,
                    credit_account_id=a,
                    amount=rng.randint(1, 50),
                    ledger=ledger_id,
                    code=1,
                )
            elif kind < 0.55:
                t = Transfer(
                    id=uuid.uuid4(),
                    debit_account_id=a,
                    credit_account_id=shop,
                    amount=rng.randint(1, 60),
                    ledger=ledger_id,
                    code=2,
                )
            elif kind < 0.9 and a != b:
                # Gifts both ways between the same hot wallets.
                t = Transfer(
                    id=uuid.uuid4(),
                    debit_account_id=a,
                    credit_account_id=b,
                    amount=rng.randint(1, 30),
                    ledger=ledger_id,
                    code=3,
                )
            else:
                t = Transfer(
                    id=uuid.uuid4(),
                    debit_account_id=shop,
                    credit_account_id=issuance,
                    amount=rng.randint(1, 5),
                    ledger=ledger_id,
                    code=4,
                )
            [outcome] = await writer.create_transfers([t])
            done.append((t, outcome.result.value))
        return done

    # Three processes' worth of writers.
    async with separate_writers(database_url, count=3, size=3) as writers:
        results = await asyncio.wait_for(
            asyncio.gather(*(client(n) for n in range(120))), timeout=120
        )

    flat = [pair for r in results for pair in r]
    codes = {code for _, code in flat}
    assert codes <= {"ok", "exceeds_credits"}, codes
    assert sum(code == "ok" for _, code in flat) > len(flat) // 2
    # Each account's balance is exactly the sum of the transfers it was told succeeded.
    expected: dict[uuid.UUID, list[int]] = defaultdict(lambda: [0, 0])
    for t, code in flat:
        if code == "ok":
            assert t.debit_account_id and t.credit_account_id
            expected[t.debit_account_id][0] += t.amount
            expected[t.credit_account_id][1] += t.amount
    for state in await ledger.lookup_accounts([issuance, shop, *members]):
        assert [state.debits_posted, state.credits_posted] == expected[state.id]
        if state.flags & WALLET:
            assert state.debits_posted <= state.credits_posted
    assert await check_invariants(ledger.pool, ledger_id) == []


async def test_killed_connection_leaves_no_partial_batch(
    ledger: Ledger, new_ledger: NewLedger, pool: asyncpg.Pool
) -> None:
    ledger_id = await new_ledger()
    issuance = uuid.uuid4()
    members = [uuid.uuid4() for _ in range(50)]
    await ledger.create_accounts(
        [Account(id=issuance, ledger=ledger_id, code=1)]
        + [Account(id=m, ledger=ledger_id, code=2, flags=WALLET) for m in members]
    )
    batch = [
        Transfer(
            id=uuid.uuid4(),
            debit_account_id=issuance,
            credit_account_id=m,
            amount=10,
            ledger=ledger_id,
            code=1,
        )
        for m in members * 10
    ]
    async with pool.acquire() as blocker:
        transaction = blocker.transaction()
        await transaction.start()
        # Hold one account so the batch is caught mid-flight, inside its transaction.
        await blocker.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", members[-1])
        posting = asyncio.create_task(ledger.create_transfers(batch))
        pid = None
        for _ in range(200):
            # Of this database only: a server shared with other runs shows
            # their batches waiting on locks too, and this would end them.
            pid = await pool.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE '%ledger_create_transfers(%'"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                " AND datname = current_database()"
            )
            if pid:
                break
            await asyncio.sleep(0.02)
        assert pid, "the batch never reached the lock"
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(LedgerUnavailable):
            await posting
        await transaction.rollback()

    assert await ledger.lookup_transfers([t.id for t in batch]) == []
    states = await ledger.lookup_accounts([issuance, *members])
    assert all(s.debits_posted == 0 and s.credits_posted == 0 for s in states)
    assert await check_invariants(pool, ledger_id) == []
    # Nothing of the failed attempt is reserved: the same ids now succeed.
    outcomes = await ledger.create_transfers(batch)
    assert {o.result.value for o in outcomes} == {"ok"}


async def test_concurrent_callers_share_batches(ledger: Ledger, new_ledger: NewLedger) -> None:
    """Many single-transfer callers are served in few database calls."""
    ledger_id = await new_ledger()
    issuance = uuid.uuid4()
    members = [uuid.uuid4() for _ in range(200)]
    await ledger.create_accounts(
        [Account(id=issuance, ledger=ledger_id, code=1)]
        + [Account(id=m, ledger=ledger_id, code=2, flags=WALLET) for m in members]
    )
    transfers = [
        Transfer(
            id=uuid.uuid4(),
            debit_account_id=issuance,
            credit_account_id=m,
            amount=3,
            ledger=ledger_id,
            code=1,
            flags=TransferFlags.NONE,
        )
        for m in members
    ]
    outcomes = await asyncio.gather(*(ledger.create_transfers([t]) for t in transfers))
    assert all(o[0].result == "ok" for o in outcomes)
    stamps = sorted(o[0].timestamp or 0 for o in outcomes)
    assert len(set(stamps)) == len(stamps)
    assert await check_invariants(ledger.pool, ledger_id) == []


async def test_one_id_posted_to_two_ledgers_at_once_has_one_outcome(
    ledger: Ledger, new_ledger: NewLedger, database_url: str
) -> None:
    first, second = await new_ledger(), await new_ledger()
    a, b = uuid.uuid4(), uuid.uuid4()
    await ledger.create_accounts(
        [Account(id=a, ledger=first, code=1), Account(id=b, ledger=first, code=1)]
    )
    pairs = []
    for _ in range(300):
        tid = uuid.uuid4()
        valid = Transfer(
            id=tid, debit_account_id=a, credit_account_id=b, amount=1, ledger=first, code=1
        )
        # The second ledger has no such accounts: a rejection.
        invalid = Transfer(
            id=tid, debit_account_id=a, credit_account_id=b, amount=1, ledger=second, code=1
        )
        pairs.append((valid, invalid))
    # Two writers: the two batches really run side by side.
    async with separate_writers(database_url, count=2, size=2) as writers:
        answers = await asyncio.gather(
            *(
                asyncio.gather(writers[0].create_transfers([v]), writers[1].create_transfers([i]))
                for v, i in pairs
            )
        )
    ids = [v.id for v, _ in pairs]
    both = await ledger.pool.fetchval(
        # Rows of ledger 0 reserve the ids of rejections: no transfers.
        "SELECT count(*) FROM transfers t JOIN transfer_rejections x USING (id)"
        " WHERE t.id = ANY($1::uuid[]) AND t.ledger <> 0",
        ids,
    )
    assert both == 0
    for (valid, _), ([v_outcome], [i_outcome]) in zip(pairs, answers, strict=True):
        assert not (v_outcome.ok and i_outcome.ok)
        # The owner of the recorded transfer is answered as its owner.
        [replay] = await ledger.create_transfers([valid])
        recorded = await ledger.lookup_transfers([valid.id])
        if recorded and recorded[0].ledger == first:
            assert replay.result.value in ("ok", "exists"), (v_outcome, i_outcome, replay)
