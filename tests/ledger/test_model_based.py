"""The real ledger against the in-memory model, under Hypothesis.

These tests are synchronous: Hypothesis drives the steps, and each step runs
on an event loop of the test's own (``asyncio.Runner``) with its own pool.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ledger import Account, AccountFlags, Ledger, Transfer, TransferFlags, check_invariants
from ledger.connection import create_pool
from ledger.schemas import AMOUNT_MAX
from ledger.schemas import Ledger as LedgerDefinition
from tests.ledger.model import ModelLedger

#: Raise for a deeper search, e.g. LEDGER_MODEL_EXAMPLES=1000.
EXAMPLES = int(os.environ.get("LEDGER_MODEL_EXAMPLES", "40"))

# Ledger ids for this module, far from the ones the async tests take.
_ledger_ids = itertools.count(500_000)

ACCOUNT_FLAGS = [
    AccountFlags.NONE,
    AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
    AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS,
]
TRANSFER_FLAGS = [
    TransferFlags.NONE,
    TransferFlags.NONE,
    TransferFlags.PENDING,
    TransferFlags.POST_PENDING,
    TransferFlags.VOID_PENDING,
    TransferFlags.LINKED,
    TransferFlags.LINKED | TransferFlags.PENDING,
    TransferFlags.LINKED | TransferFlags.POST_PENDING,
    TransferFlags.PENDING | TransferFlags.POST_PENDING,
]
AMOUNTS = st.one_of(
    st.integers(min_value=0, max_value=60),
    st.sampled_from([0, 1, AMOUNT_MAX // 2, AMOUNT_MAX]),
)


class World:
    """A pool, a ledger and the loop they live on, for one test."""

    def __init__(self, database_url: str) -> None:
        self.runner = asyncio.Runner()
        self.pool = self.run(create_pool(database_url, min_size=1, max_size=4))
        self.ledger = Ledger(self.pool)

    def run(self, awaitable: Any) -> Any:
        return self.runner.run(awaitable)

    def close(self) -> None:
        self.run(self.ledger.close())
        self.run(self.pool.close())
        self.runner.close()

    def new_ledger(self) -> int:
        ledger_id = next(_ledger_ids)
        self.run(self.ledger.create_ledger(LedgerDefinition(id=ledger_id, name=f"m-{ledger_id}")))
        return ledger_id


@pytest.fixture(scope="module")
def world(database_url: str) -> Any:
    w = World(database_url)
    yield w
    w.close()


def assert_balances_match(world: World, model: ModelLedger, accounts: list[uuid.UUID]) -> None:
    """Each account's four balances in the database are the model's."""
    for state in world.run(world.ledger.lookup_accounts(accounts)):
        m = model.accounts[state.id]
        assert (
            state.debits_pending,
            state.debits_posted,
            state.credits_pending,
            state.credits_posted,
        ) == (m.dp, m.dpo, m.cp, m.cpo)


#: For ``@given`` tests that share the module's ``world``.
given_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def transfer_strategy(
    ids: list[uuid.UUID],
    accounts: list[uuid.UUID],
    ledgers: list[int],
    flags: Sequence[TransferFlags] = TRANSFER_FLAGS,
) -> st.SearchStrategy[Transfer]:
    now = datetime.now(UTC)
    maybe_account = st.one_of(st.sampled_from(accounts), st.none())
    return st.builds(
        Transfer,
        id=st.sampled_from(ids),
        debit_account_id=maybe_account,
        credit_account_id=maybe_account,
        amount=AMOUNTS,
        ledger=st.one_of(st.sampled_from(ledgers), st.none()),
        code=st.sampled_from([1, 1, 2, None]),
        flags=st.sampled_from(flags),
        pending_id=st.one_of(st.none(), st.none(), st.sampled_from(ids)),
        timeout=st.sampled_from([0, 0, 3600]),
        metadata=st.sampled_from([None, None, {"order": "A-1"}]),
        effective_at=st.sampled_from(
            [None, None, now - timedelta(days=1), now + timedelta(days=1)]
        ),
    )


class LedgerMachine(RuleBasedStateMachine):
    world: World

    def __init__(self) -> None:
        super().__init__()
        self.model = ModelLedger()
        self.ledgers: list[int] = []
        self.accounts: list[uuid.UUID] = []
        # A small pool of ids makes replays, duplicates and references common.
        self.ids = [uuid.uuid4() for _ in range(12)] + [uuid.UUID(int=0)]

    @initialize(flags=st.lists(st.sampled_from(ACCOUNT_FLAGS), min_size=5, max_size=5))
    def open_accounts(self, flags: list[AccountFlags]) -> None:
        self.ledgers = [self.world.new_ledger(), self.world.new_ledger()]
        requests = []
        for n, account_flags in enumerate(flags):
            ledger_id = self.ledgers[0] if n < 4 else self.ledgers[1]
            account_id = uuid.uuid4()
            requests.append(Account(id=account_id, ledger=ledger_id, code=1, flags=account_flags))
            self.model.open_account(account_id, ledger_id, account_flags)
            self.accounts.append(account_id)
        outcomes = self.world.run(self.world.ledger.create_accounts(requests))
        assert all(o.result == "ok" for o in outcomes)
        # An id no account has, for account_not_found.
        self.accounts.append(uuid.uuid4())

    @rule(data=st.data())
    def post_batch(self, data: st.DataObject) -> None:
        batch = data.draw(
            st.lists(
                transfer_strategy(self.ids, self.accounts, self.ledgers), min_size=1, max_size=6
            )
        )
        outcomes = self.world.run(self.world.ledger.create_transfers(batch))
        expected = self.model.create_transfers(batch, datetime.now(UTC))
        assert [o.result for o in outcomes] == expected, batch

    @rule(data=st.data())
    def post_lone_plain_transfer(self, data: st.DataObject) -> None:
        """A batch of exactly one plain transfer: the function's scalar fast
        path (0014), against the same model as the general path."""
        transfer = data.draw(
            transfer_strategy(self.ids, self.accounts, self.ledgers, flags=[TransferFlags.NONE])
        )
        outcomes = self.world.run(self.world.ledger.create_transfers([transfer]))
        expected = self.model.create_transfers([transfer], datetime.now(UTC))
        assert [o.result for o in outcomes] == expected, transfer

    @invariant()
    def balances_match_model(self) -> None:
        if not self.ledgers:
            return
        assert_balances_match(self.world, self.model, self.accounts)

    @invariant()
    def invariants_hold(self) -> None:
        for ledger_id in self.ledgers:
            assert self.world.run(check_invariants(self.world.pool, ledger_id)) == []


def test_ledger_matches_model(world: World) -> None:
    LedgerMachine.world = world
    machine = LedgerMachine.TestCase
    machine.settings = settings(
        max_examples=EXAMPLES,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    machine().runTest()


@given_settings
@given(data=st.data())
def test_batch_equals_one_at_a_time(world: World, data: st.DataObject) -> None:
    """Posting a batch gives the same outcomes and balances as posting its
    transfers one by one (chains aside: a lone linked transfer is an open chain)."""
    flags = data.draw(st.lists(st.sampled_from(ACCOUNT_FLAGS), min_size=4, max_size=4))
    worlds = []
    for _ in range(2):
        ledger_id = world.new_ledger()
        accounts = [uuid.uuid4() for _ in flags]
        world.run(
            world.ledger.create_accounts(
                [
                    Account(id=a, ledger=ledger_id, code=1, flags=f)
                    for a, f in zip(accounts, flags, strict=True)
                ]
            )
        )
        worlds.append((ledger_id, accounts))
    (ledger_a, accounts_a), (ledger_b, accounts_b) = worlds
    ids_a = [uuid.uuid4() for _ in range(8)]
    ids_b = [uuid.uuid4() for _ in range(8)]
    plain = [f for f in TRANSFER_FLAGS if not f & TransferFlags.LINKED]
    shape = data.draw(
        st.lists(
            st.tuples(
                st.integers(0, 7),
                st.integers(0, 3),
                st.integers(0, 3),
                AMOUNTS,
                st.sampled_from(plain),
                st.one_of(st.none(), st.integers(0, 7)),
            ),
            min_size=1,
            max_size=10,
        )
    )

    def build(ids: list[uuid.UUID], accounts: list[uuid.UUID], ledger_id: int) -> list[Transfer]:
        return [
            Transfer(
                id=ids[i],
                debit_account_id=accounts[d],
                credit_account_id=accounts[c],
                amount=amount,
                ledger=ledger_id,
                code=1,
                flags=f,
                pending_id=None if p is None else ids[p],
            )
            for i, d, c, amount, f, p in shape
        ]

    batched = world.run(world.ledger.create_transfers(build(ids_a, accounts_a, ledger_a)))
    one_by_one = [
        world.run(world.ledger.create_transfers([t]))[0] for t in build(ids_b, accounts_b, ledger_b)
    ]
    assert [o.result for o in batched] == [o.result for o in one_by_one]
    balances = [
        [
            (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
            for a in world.run(world.ledger.lookup_accounts(accounts))
        ]
        for accounts in (accounts_a, accounts_b)
    ]
    assert balances[0] == balances[1]
    assert world.run(check_invariants(world.pool, ledger_a)) == []


@settings(
    max_examples=max(10, EXAMPLES // 2),
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_large_batches_match_model(world: World, data: st.DataObject) -> None:
    """Batches of up to 120 transfers over up to 60 accounts: the set-based
    parts of the batch (joins, aggregates) meet enough rows to reorder them."""
    model = ModelLedger()
    ledger_id = world.new_ledger()
    flags = data.draw(st.lists(st.sampled_from(ACCOUNT_FLAGS), min_size=40, max_size=80))
    accounts = [uuid.uuid4() for _ in flags]
    world.run(
        world.ledger.create_accounts(
            [
                Account(id=a, ledger=ledger_id, code=1, flags=f)
                for a, f in zip(accounts, flags, strict=True)
            ]
        )
    )
    for account, account_flags in zip(accounts, flags, strict=True):
        model.open_account(account, ledger_id, account_flags)
    ids = [uuid.uuid4() for _ in range(150)]

    def transfer(kinds: list[TransferFlags]) -> st.SearchStrategy[Transfer]:
        return st.builds(
            Transfer,
            id=st.sampled_from(ids),
            debit_account_id=st.sampled_from(accounts),
            credit_account_id=st.sampled_from(accounts),
            amount=st.integers(0, 40),
            ledger=st.just(ledger_id),
            code=st.just(1),
            flags=st.sampled_from(kinds),
            pending_id=st.one_of(st.none(), st.sampled_from(ids)),
        )

    # First mostly holds, then a mix in which posts and voids find them.
    rounds = [
        [TransferFlags.PENDING, TransferFlags.PENDING, TransferFlags.NONE],
        TRANSFER_FLAGS,
        # A few posts among many plain transfers over many accounts.
        [TransferFlags.POST_PENDING, TransferFlags.VOID_PENDING, *[TransferFlags.NONE] * 6],
    ]
    for kinds in rounds:
        batch = data.draw(st.lists(transfer(kinds), min_size=1, max_size=120))
        outcomes = world.run(world.ledger.create_transfers(batch))
        expected = model.create_transfers(batch, datetime.now(UTC))
        assert [o.result for o in outcomes] == expected
        assert_balances_match(world, model, accounts)
    assert world.run(check_invariants(world.pool, ledger_id)) == []


@given_settings
@given(data=st.data())
def test_lone_plain_transfers_match_model(world: World, data: st.DataObject) -> None:
    """A stream of batches of exactly one plain transfer (the function's
    scalar fast path, 0014), mostly valid so that the balance rules, limits,
    overflow, replays and reserved rejections all meet it, against the model."""
    model = ModelLedger()
    ledger_id, other_ledger = world.new_ledger(), world.new_ledger()
    flags = data.draw(st.lists(st.sampled_from(ACCOUNT_FLAGS), min_size=4, max_size=4))
    accounts = [uuid.uuid4() for _ in flags]
    stranger = uuid.uuid4()
    opened = [
        Account(id=a, ledger=ledger_id, code=1, flags=f)
        for a, f in zip(accounts, flags, strict=True)
    ] + [Account(id=stranger, ledger=other_ledger, code=1)]
    world.run(world.ledger.create_accounts(opened))
    for account in opened:
        model.open_account(account.id, account.ledger, AccountFlags(account.flags))
    # Ids new to the database (Hypothesis's own uuids repeat across examples),
    # some used twice for replays, and the nil id.
    ids = [uuid.uuid4() for _ in range(40)] + [uuid.UUID(int=0)]
    now = datetime.now(UTC)
    # Mostly the valid choice, sometimes each way a field can be wrong.
    party = st.sampled_from([*accounts * 3, stranger, uuid.uuid4(), None])
    transfer = st.builds(
        Transfer,
        id=st.sampled_from(ids),
        debit_account_id=party,
        credit_account_id=party,
        amount=st.one_of(st.integers(1, 60), st.integers(1, 60), AMOUNTS),
        ledger=st.sampled_from([ledger_id] * 8 + [other_ledger, None]),
        code=st.sampled_from([1] * 8 + [2, None]),
        flags=st.just(TransferFlags.NONE),
        pending_id=st.sampled_from([None] * 9 + [ids[-2]]),
        timeout=st.sampled_from([0] * 9 + [3600]),
        metadata=st.sampled_from([None, None, {"order": "A-1"}]),
        effective_at=st.sampled_from(
            [None] * 6 + [now - timedelta(days=1), now + timedelta(days=1)]
        ),
    )
    posted: list[Transfer] = []
    for _ in range(data.draw(st.integers(10, 40))):
        # Now and then the very same transfer again: a replay.
        replay = posted and data.draw(st.integers(0, 7)) == 0
        t = data.draw(st.sampled_from(posted)) if replay else data.draw(transfer)
        [outcome] = world.run(world.ledger.create_transfers([t]))
        [expected] = model.create_transfers([t], datetime.now(UTC))
        assert outcome.result == expected, t
        posted.append(t)
    assert_balances_match(world, model, [*accounts, stranger])
    for checked in (ledger_id, other_ledger):
        assert world.run(check_invariants(world.pool, checked)) == []
