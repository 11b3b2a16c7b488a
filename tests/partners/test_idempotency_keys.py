"""The Idempotency-Key store's batches (``partners.idempotency_keys``): the
claims of concurrent requests in one statement, and their answers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from partners.idempotency_keys import (
    CLAIM_LEASE,
    KEPT,
    Answered,
    Claim,
    InFlight,
    KeptAnswer,
    KeyRequest,
    StoredAnswer,
    claim_many,
    release,
    store_many,
)
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import partner_principal
from tests.partners.conftest import NewPartner


def answer(sha: bytes, status: int = 201) -> StoredAnswer:
    return StoredAnswer(
        request_sha256=sha,
        status_code=status,
        headers=[("content-type", "application/json")],
        body=b'{"ok":true}',
    )


async def test_a_batch_claims_each_key_once_and_reads_the_answered_ones(
    pool: asyncpg.Pool, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    a, b = await new_partner(program), await new_partner(program)
    of_a, of_b = partner_principal(a), partner_principal(b)
    sha, other = bytes(32), b"\x01" * 32
    now = datetime.now(UTC)
    answered_key, fresh, twice = (str(uuid.uuid4()) for _ in range(3))
    [first] = await claim_many(pool, [KeyRequest(of_a, answered_key, sha)], now=now)
    assert isinstance(first, Claim)
    assert await store_many(pool, [KeptAnswer(first, answer(sha))]) == [True]

    outcomes = await claim_many(
        pool,
        [
            KeyRequest(of_a, answered_key, sha),
            KeyRequest(of_a, fresh, sha),
            KeyRequest(of_a, twice, sha),
            KeyRequest(of_a, twice, other),
            # Another firm's key of the same name is its own.
            KeyRequest(of_b, answered_key, other),
        ],
        now=now,
    )

    kinds = [type(o) for o in outcomes]
    assert kinds == [Answered, Claim, Claim, InFlight, Claim]
    replayed = outcomes[0]
    assert isinstance(replayed, Answered)
    assert replayed.answer == answer(sha)
    # Claimed keys are in flight for the next request, until answered.
    again = await claim_many(pool, [KeyRequest(of_a, fresh, sha)], now=now)
    assert [type(o) for o in again] == [InFlight]


async def test_a_lost_claim_stores_nothing_and_a_released_key_runs_again(
    pool: asyncpg.Pool, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    firm = partner_principal(await new_partner(program))
    sha, now = bytes(32), datetime.now(UTC)
    lapsed, released = str(uuid.uuid4()), str(uuid.uuid4())
    [old, freed] = await claim_many(
        pool, [KeyRequest(firm, lapsed, sha), KeyRequest(firm, released, sha)], now=now
    )
    assert isinstance(old, Claim) and isinstance(freed, Claim)

    # Past the lease another request takes the key over; the first's answer
    # then finds its claim gone.
    [taken] = await claim_many(
        pool, [KeyRequest(firm, lapsed, sha)], now=now + CLAIM_LEASE + timedelta(seconds=1)
    )
    assert isinstance(taken, Claim)
    assert await store_many(
        pool, [KeptAnswer(old, answer(sha)), KeptAnswer(taken, answer(sha, 200))]
    ) == [
        False,
        True,
    ]
    [read] = await claim_many(pool, [KeyRequest(firm, lapsed, sha)], now=now)
    assert isinstance(read, Answered) and read.answer.status_code == 200

    await release(pool, freed)
    [rerun] = await claim_many(pool, [KeyRequest(firm, released, sha)], now=now)
    assert isinstance(rerun, Claim)
    # An answer older than KEPT is a new request's key.
    assert await store_many(pool, [KeptAnswer(rerun, answer(sha))]) == [True]
    [later] = await claim_many(pool, [KeyRequest(firm, released, sha)], now=now + KEPT)
    assert isinstance(later, Claim)


async def test_concurrent_batches_claim_a_key_once(
    pool: asyncpg.Pool, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    firm = partner_principal(await new_partner(program))
    keys = [str(uuid.uuid4()) for _ in range(50)]
    now = datetime.now(UTC)

    # Ten batches at once, each asking for every key, in another order.
    batches = await asyncio.gather(
        *(
            claim_many(pool, [KeyRequest(firm, k, bytes(32)) for k in keys[n:] + keys[:n]], now=now)
            for n in range(0, 50, 5)
        )
    )

    claims = [o for batch in batches for o in batch if isinstance(o, Claim)]
    assert sorted(c.key for c in claims) == sorted(keys)
