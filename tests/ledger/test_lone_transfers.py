"""A batch of one plain transfer takes the function's scalar path (migration
0014): the edges of its rules, each posted alone."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import msgspec

from ledger import Account, AccountFlags, Ledger, Transfer, check_invariants

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
