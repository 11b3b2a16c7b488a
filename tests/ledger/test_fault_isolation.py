"""One caller's bad data fails that caller alone: the batch it shares with
others is split until the bad request is alone, and every good caller gets
its real answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ledger import Account, AccountFlags, Ledger, Transfer, check_invariants
from ledger.batching import MicroBatcher, isolate_faults
from ledger.errors import InvalidTransfer

NewLedger = Callable[[], Awaitable[int]]


async def test_isolate_faults_gives_the_error_to_the_bad_request_alone() -> None:
    calls: list[list[int]] = []

    async def handle(requests: list[int]) -> Sequence[int | Exception]:
        calls.append(requests)
        if any(r < 0 for r in requests):
            raise ValueError("negative")
        return [r * 10 for r in requests]

    answers = await isolate_faults(
        handle, [1, 2, -3, 4, 5, 6, -7, 8], is_item_fault=lambda e: isinstance(e, ValueError)
    )
    assert [a if isinstance(a, int) else "error" for a in answers] == [
        10,
        20,
        "error",
        40,
        50,
        60,
        "error",
        80,
    ]
    # Every good request was answered from a call that held no bad one.
    good_calls = [c for c in calls if all(r >= 0 for r in c)]
    assert sorted(r for c in good_calls for r in c) == [1, 2, 4, 5, 6, 8]


async def test_isolate_faults_does_not_split_a_batch_for_a_lost_database() -> None:
    calls = 0

    async def handle(requests: list[int]) -> Sequence[int | Exception]:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError):
        await isolate_faults(
            handle, [1, 2, 3, 4], is_item_fault=lambda e: isinstance(e, ValueError)
        )
    assert calls == 1


async def test_batcher_answers_good_callers_beside_a_bad_one() -> None:
    async def handle(requests: list[int]) -> Sequence[int | Exception]:
        await asyncio.sleep(0.001)
        if 13 in requests:
            raise ValueError("thirteen")
        return requests

    batcher: MicroBatcher[int, int] = MicroBatcher(
        handle,
        name="test",
        max_batch=64,
        is_item_fault=lambda e: isinstance(e, ValueError),
        on_item_fault=lambda e: KeyError(str(e)),
        on_failure=lambda e: RuntimeError("unavailable"),
    )
    try:
        answers = await asyncio.gather(
            *(batcher.submit(n) for n in range(200)), return_exceptions=True
        )
    finally:
        await batcher.close()
    assert isinstance(answers[13], KeyError)
    assert [a for n, a in enumerate(answers) if n != 13] == [n for n in range(200) if n != 13]


def _bad_transfers(debit: uuid.UUID, credit: uuid.UUID, ledger_id: int) -> list[Transfer]:
    """Transfers made in code (no edge validation) that the database refuses."""
    base: dict[str, Any] = {
        "debit_account_id": debit,
        "credit_account_id": credit,
        "ledger": ledger_id,
        "code": 1,
        "amount": 1,
    }
    far_east = timezone(timedelta(hours=14))
    return [
        Transfer(id=uuid.uuid4(), **{**base, "metadata": {"note": "nul \u0000 here"}}),
        Transfer(id=uuid.uuid4(), **{**base, "effective_at": datetime(1, 1, 1, tzinfo=far_east)}),
        Transfer(id=uuid.uuid4(), **{**base, "amount": 2**63}),
        Transfer(id=uuid.uuid4(), **{**base, "code": 2**40}),
    ]


async def test_good_transfers_beside_bad_ones_all_land(
    ledger: Ledger, new_ledger: NewLedger
) -> None:
    ledger_id = await new_ledger()
    issuance, shop = uuid.uuid4(), uuid.uuid4()
    members = [uuid.uuid4() for _ in range(50)]
    await ledger.create_accounts(
        [Account(id=issuance, ledger=ledger_id, code=1), Account(id=shop, ledger=ledger_id, code=3)]
        + [
            Account(
                id=m, ledger=ledger_id, code=2, flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
            )
            for m in members
        ]
    )
    good = [
        [
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=issuance,
                credit_account_id=m,
                amount=10,
                ledger=ledger_id,
                code=1,
            )
        ]
        for m in members
        for _ in range(4)
    ]
    bad = [[t] for t in _bad_transfers(issuance, shop, ledger_id)]
    # The bad requests are spread among the good ones so that they share batches.
    requests = good[:60] + bad[:2] + good[60:140] + bad[2:] + good[140:]

    async def post(request: list[Transfer]) -> Any:
        return await ledger.create_transfers(request)

    answers = await asyncio.gather(*(post(r) for r in requests), return_exceptions=True)
    by_request = dict(zip((r[0].id for r in requests), answers, strict=True))
    for request in good:
        outcome = by_request[request[0].id]
        assert not isinstance(outcome, BaseException), outcome
        assert [o.result.value for o in outcome] == ["ok"]
    for request in bad:
        assert isinstance(by_request[request[0].id], InvalidTransfer), by_request[request[0].id]
        # Permanent: the same request fails the same way again.
        with pytest.raises(InvalidTransfer):
            await ledger.create_transfers(request)
    assert await ledger.lookup_transfers([r[0].id for r in bad]) == []
    for member in await ledger.lookup_accounts(members):
        assert member.credits_posted == 40
    assert await check_invariants(ledger.pool, ledger_id) == []


async def test_refused_data_names_the_field(ledger: Ledger, new_ledger: NewLedger) -> None:
    ledger_id = await new_ledger()
    a, b = uuid.uuid4(), uuid.uuid4()
    await ledger.create_accounts(
        [Account(id=a, ledger=ledger_id, code=1), Account(id=b, ledger=ledger_id, code=1)]
    )
    transfer = Transfer(
        id=uuid.uuid4(),
        debit_account_id=a,
        credit_account_id=b,
        amount=2**63,
        ledger=ledger_id,
        code=1,
    )
    with pytest.raises(InvalidTransfer, match=r"^amount: "):
        await ledger.create_transfers([transfer])
