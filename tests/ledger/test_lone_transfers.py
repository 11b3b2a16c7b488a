"""A batch of one plain transfer takes the function's scalar path (migration
0014): the edges of its rules, each posted alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import msgspec
import pytest

from ledger import Account, AccountFlags, Ledger, Transfer, TransferOutcome, check_invariants

NewLedger = Callable[[], Awaitable[int]]


async def _accounts(ledger: Ledger, ledger_id: int) -> tuple[uuid.UUID, uuid.UUID]:
    issuance, wallet = uuid.uuid4(), uuid.uuid4()
    await ledger.create_accounts(
        [
            Account(id=issuance, ledger=ledger_id, code=1),
            Account(
                id=wallet,
                ledger=ledger_id,
                code=2,
                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            ),
        ]
    )
    return issuance, wallet


def _move(debit: uuid.UUID, credit: uuid.UUID, amount: int, ledger_id: int) -> Transfer:
    return Transfer(
        id=uuid.uuid4(),
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger=ledger_id,
        code=1,
    )


async def test_a_wallet_may_be_spent_to_exactly_zero(ledger: Ledger, new_ledger: NewLedger) -> None:
    ledger_id = await new_ledger()
    issuance, wallet = await _accounts(ledger, ledger_id)
    [earned] = await ledger.create_transfers([_move(issuance, wallet, 10, ledger_id)])
    [spent] = await ledger.create_transfers([_move(wallet, issuance, 10, ledger_id)])
    [beyond] = await ledger.create_transfers([_move(wallet, issuance, 1, ledger_id)])
    assert [o.result.value for o in (earned, spent, beyond)] == ["ok", "ok", "exceeds_credits"]
    [state] = await ledger.lookup_accounts([wallet])
    assert (state.debits_posted, state.credits_posted) == (10, 10)
    assert await check_invariants(ledger.pool, ledger_id) == []


async def test_a_replay_with_other_metadata_is_a_conflict(
    ledger: Ledger, new_ledger: NewLedger
) -> None:
    ledger_id = await new_ledger()
    issuance, wallet = await _accounts(ledger, ledger_id)
    first = msgspec.structs.replace(
        _move(issuance, wallet, 5, ledger_id), metadata={"order": "A-1"}
    )
    [posted] = await ledger.create_transfers([first])
    [same] = await ledger.create_transfers([first])
    other = msgspec.structs.replace(first, metadata={"order": "A-2"})
    [conflict] = await ledger.create_transfers([other])
    assert [o.result.value for o in (posted, same, conflict)] == [
        "ok",
        "exists",
        "exists_with_different_fields",
    ]


async def test_a_rejected_lone_transfer_stays_rejected(
    ledger: Ledger, new_ledger: NewLedger
) -> None:
    ledger_id = await new_ledger()
    issuance, wallet = await _accounts(ledger, ledger_id)
    refused = _move(wallet, issuance, 1, ledger_id)
    [first] = await ledger.create_transfers([refused])
    # The wallet can now pay, but the id keeps its first outcome.
    await ledger.create_transfers([_move(issuance, wallet, 10, ledger_id)])
    [again] = await ledger.create_transfers([refused])
    assert (first.result.value, again.result.value) == ("exceeds_credits", "exceeds_credits")
    assert await ledger.lookup_transfers([refused.id]) == []


# An id taken in another ledger: the transfer alone (the scalar path) and in
# a batch of two (the general path) get the same answer, whether the other
# ledger recorded or rejected the id before, or commits it while the post
# waits on its row (the scalar path's "taken meanwhile" branch, for a
# rejection, and the writer's post again after a unique violation).
SCENARIOS = ["recorded-before", "rejected-before", "recorded-meanwhile", "rejected-meanwhile"]


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_an_id_taken_by_another_ledger_answers_as_in_a_batch(
    ledger: Ledger, new_ledger: NewLedger, scenario: str
) -> None:
    taken, stored_first = scenario.split("-")
    answers = []
    for alone in (True, False):
        first, second = await new_ledger(), await new_ledger()
        issuance, wallet = await _accounts(ledger, first)
        other_issuance, other_wallet = await _accounts(ledger, second)
        # Recorded: an earning. Rejected: a spend of an empty wallet.
        there = (
            _move(issuance, wallet, 5, first)
            if taken == "recorded"
            else _move(wallet, issuance, 5, first)
        )
        here = msgspec.structs.replace(
            _move(other_wallet, other_issuance, 5, second)
            if taken == "recorded"
            else _move(other_issuance, other_wallet, 5, second),
            id=there.id,
        )
        beside = [] if alone else [_move(other_issuance, other_wallet, 1, second)]
        if stored_first == "before":
            await ledger.create_transfers([there])
            outcomes = await ledger.create_transfers([here, *beside])
        else:
            outcomes = await _posted_while_open(ledger, there, [here, *beside])
        assert [o.result.value for o in outcomes[1:]] == ["ok"] * len(beside)
        [replay] = await ledger.create_transfers([here])
        answers.append((outcomes[0].result.value, replay.result.value))
        recorded = await ledger.lookup_transfers([there.id])
        assert [t.ledger for t in recorded] == ([first] if taken == "recorded" else [])
        for ledger_id in (first, second):
            assert await check_invariants(ledger.pool, ledger_id) == []
    assert answers[0] == answers[1] == ("exists_with_different_fields",) * 2


async def _posted_while_open(
    ledger: Ledger, there: Transfer, here: list[Transfer]
) -> list[TransferOutcome]:
    """``here`` posted while a transaction that posted ``there`` is open; it
    commits once the post waits on it."""
    async with ledger.pool.acquire() as connection:
        async with connection.transaction():
            await ledger.create_transfers_within(connection, [there])
            posting = asyncio.create_task(ledger.create_transfers(here))
            holder = connection.get_server_pid()
            for _ in range(500):
                waiting = await ledger.pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                    holder,
                )
                if waiting or posting.done():
                    break
                await asyncio.sleep(0.01)
            assert waiting, f"the post never waited on the open transaction's row: {posting}"
        return await posting
