"""The daily aggregates the posting path keeps (``ledger_daily_totals``,
``lot_daily_movements``) against full scans of the transfers and the lots,
after random workloads through ``Ledger.create_transfers``."""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Account, Ledger
from ledger import lots as ledger_lots
from ledger.schemas import Ledger as LedgerDefinition
from tests.ledger.test_lots import (
    EXAMPLES,
    WALLET,
    WALLET_CODE,
    Accounts,
    World,
    move,
    random_batch,
    world,
)

__all__ = ["world"]  # the module-scoped fixture, shared with test_lots

_zoned_ledger_ids = itertools.count(720_000)


async def assert_aggregates_equal_the_scans(pool: asyncpg.Pool, ledger_id: int) -> None:
    days = [
        r["day"]
        for r in await pool.fetch(
            "SELECT DISTINCT day FROM ledger_daily_totals WHERE ledger = $1 ORDER BY day",
            ledger_id,
        )
    ]
    assert days, "the workload posted nothing"
    edges = [days[0] - timedelta(days=1), *days, days[-1] + timedelta(days=1)]
    for as_of in edges:
        assert await ledger_lots.outstanding(
            pool, ledger=ledger_id, as_of=as_of
        ) == await ledger_lots.outstanding_by_scan(pool, ledger=ledger_id, as_of=as_of)
        balances = await ledger_lots.account_code_balances(pool, ledger=ledger_id, as_of=as_of)
        assert sum(b.debits for b in balances) == sum(b.credits for b in balances)
        by_code: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for total in await ledger_lots.daily_totals_by_scan(
            pool, ledger=ledger_id, first_day=date(1900, 1, 1), last_day=as_of
        ):
            by_code[total.debit_account_code][0] += total.amount
            by_code[total.credit_account_code][1] += total.amount
        assert {b.account_code: [b.debits, b.credits] for b in balances} == dict(by_code)
    for first, last in itertools.combinations_with_replacement(edges, 2):
        assert await ledger_lots.daily_totals(
            pool, ledger=ledger_id, first_day=first, last_day=last
        ) == await ledger_lots.daily_totals_by_scan(
            pool, ledger=ledger_id, first_day=first, last_day=last
        )
        assert await ledger_lots.lot_movement_totals(
            pool, ledger=ledger_id, first_day=first, last_day=last
        ) == await ledger_lots.lot_movement_totals_by_scan(
            pool, ledger=ledger_id, first_day=first, last_day=last
        )
    # Outstanding at the end equals what the lots hold, by issuer, origin, cohort.
    held: dict[tuple[Any, ...], int] = defaultdict(int)
    for row in await pool.fetch(
        "SELECT source_account_id, origin_code, cohort, remaining FROM lots WHERE ledger = $1",
        ledger_id,
    ):
        if row["remaining"]:
            held[(row["source_account_id"], row["origin_code"], row["cohort"])] += row["remaining"]
    final = await ledger_lots.outstanding(pool, ledger=ledger_id, as_of=edges[-1])
    assert {(o.source_account_id, o.origin_code, o.cohort): o.points for o in final} == dict(held)
    # Cohort development is the movements by cohort, month and code.
    development: dict[tuple[Any, ...], int] = defaultdict(int)
    for row in await pool.fetch(
        "SELECT l.cohort, date_trunc('month', m.day)::date AS month, t.code, m.points"
        " FROM lot_movements m JOIN lots l ON l.id = m.lot_id"
        " JOIN transfers t ON t.id = m.transfer_id WHERE l.ledger = $1",
        ledger_id,
    ):
        development[(row["cohort"], row["month"], row["code"])] += row["points"]
    assert {
        (c.cohort, c.month, c.code): c.points
        for c in await ledger_lots.cohort_development(pool, ledger=ledger_id, through=edges[-1])
    } == dict(development)


async def _zoned_accounts(ledger: Ledger, zone: str) -> Accounts:
    ledger_id = next(_zoned_ledger_ids)
    await ledger.create_ledger(
        LedgerDefinition(id=ledger_id, name=f"zoned-{ledger_id}"), time_zone=zone
    )
    a = Accounts(ledger_id, uuid.uuid4(), uuid.uuid4(), [uuid.uuid4() for _ in range(3)])
    await ledger.create_accounts(
        [
            Account(id=a.issuance, ledger=ledger_id, code=1),
            Account(id=a.redemption, ledger=ledger_id, code=3),
            *(Account(id=w, ledger=ledger_id, code=WALLET_CODE, flags=WALLET) for w in a.wallets),
        ]
    )
    return a


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data(), zone=st.sampled_from(["UTC", "Pacific/Kiritimati", "America/Los_Angeles"]))
def test_the_aggregates_equal_the_full_scans_after_random_batches(
    world: World, data: st.DataObject, zone: str
) -> None:
    a = world.run(_zoned_accounts(world.ledger, zone))
    known: dict[str, list[Any]] = {"lots": [], "debits": [], "holds": []}
    # Points in every wallet first, earned over the past days.
    first = [
        move(a.ledger, a.issuance, w, 20, effective_at=datetime.now(UTC) - timedelta(days=d))
        for d, w in enumerate(a.wallets)
    ]
    known["lots"] += [t.id for t in first]
    world.run(world.ledger.create_transfers(first))
    for _ in range(data.draw(st.integers(1, 4))):
        world.run(world.ledger.create_transfers(random_batch(a, data, known)))
    world.run(assert_aggregates_equal_the_scans(world.pool, a.ledger))


async def test_the_accounting_day_is_the_ledgers(ledger: Ledger, pool: asyncpg.Pool) -> None:
    a = await _zoned_accounts(ledger, "Africa/Johannesburg")
    # 23:30 UTC on 31 January is 01:30 on 1 February in Johannesburg.
    late = datetime(2025, 1, 31, 23, 30, tzinfo=UTC)
    earn = move(a.ledger, a.issuance, a.wallets[0], 10, effective_at=late)
    spend = move(a.ledger, a.wallets[0], a.redemption, 4, 2)
    assert [o.result for o in await ledger.create_transfers([earn, spend])] == ["ok", "ok"]
    totals = await ledger_lots.daily_totals(
        pool, ledger=a.ledger, first_day=date(2025, 2, 1), last_day=date(2025, 2, 1)
    )
    assert [(t.code, t.amount, t.transfers) for t in totals] == [(1, 10, 1)]
    assert (
        await ledger_lots.daily_totals(
            pool, ledger=a.ledger, first_day=date(2025, 1, 1), last_day=date(2025, 1, 31)
        )
        == []
    )
    [lot] = await ledger_lots.lots_of(pool, a.wallets[0])
    assert lot.cohort == date(2025, 2, 1)
    assert await ledger_lots.outstanding(pool, ledger=a.ledger, as_of=date(2025, 1, 31)) == []
    [before_spend] = await ledger_lots.outstanding(pool, ledger=a.ledger, as_of=date(2025, 2, 1))
    assert (before_spend.points, before_spend.cohort) == (10, date(2025, 2, 1))
    [now] = await ledger_lots.outstanding(
        pool, ledger=a.ledger, as_of=date.today() + timedelta(days=1)
    )
    assert now.points == 6
    balances = await ledger_lots.account_code_balances(
        pool, ledger=a.ledger, as_of=date.today() + timedelta(days=1)
    )
    assert [(b.account_code, b.debits, b.credits) for b in balances] == [
        (1, 10, 0),
        (3, 0, 4),
        (WALLET_CODE, 4, 10),
    ]


async def test_pending_and_void_rows_are_not_in_the_totals(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    from ledger import Transfer, TransferFlags

    a = await _zoned_accounts(ledger, "UTC")
    earn = move(a.ledger, a.issuance, a.wallets[0], 10)
    held = move(a.ledger, a.wallets[0], a.redemption, 6, 2, flags=TransferFlags.PENDING)
    void = Transfer(
        id=uuid.uuid4(),
        pending_id=held.id,
        amount=0,
        flags=TransferFlags.VOID_PENDING,
        debit_account_id=a.wallets[0],
        credit_account_id=a.redemption,
        ledger=a.ledger,
        code=2,
    )
    held2 = move(a.ledger, a.wallets[0], a.redemption, 5, 2, flags=TransferFlags.PENDING)
    post = Transfer(
        id=uuid.uuid4(),
        pending_id=held2.id,
        amount=3,
        flags=TransferFlags.POST_PENDING,
        debit_account_id=a.wallets[0],
        credit_account_id=a.redemption,
        ledger=a.ledger,
        code=2,
    )
    results = await ledger.create_transfers([earn, held, void, held2, post])
    assert [o.result for o in results] == ["ok"] * 5
    today = date.today()
    totals = await ledger_lots.daily_totals(
        pool,
        ledger=a.ledger,
        first_day=today - timedelta(days=2),
        last_day=today + timedelta(days=2),
    )
    assert [(t.code, t.amount, t.transfers) for t in totals] == [(1, 10, 1), (2, 3, 1)]


async def test_lone_transfers_add_to_the_totals_and_lots_as_batches_do(
    ledger: Ledger, pool: asyncpg.Pool
) -> None:
    # A lone plain transfer takes the posting function's scalar path, which
    # records its aggregates with statements of its own.
    a = await _zoned_accounts(ledger, "Africa/Johannesburg")
    late = datetime(2025, 1, 31, 23, 30, tzinfo=UTC)  # 1 February in Johannesburg
    for amount in (10, 5):
        earn = move(a.ledger, a.issuance, a.wallets[0], amount, effective_at=late)
        assert [o.result for o in await ledger.create_transfers([earn])] == ["ok"]
    refused = move(a.ledger, a.wallets[1], a.redemption, 1, 2, effective_at=late)
    assert [o.result for o in await ledger.create_transfers([refused])] == ["exceeds_credits"]
    spend = move(a.ledger, a.wallets[0], a.redemption, 12, 2, effective_at=late)
    assert [o.result for o in await ledger.create_transfers([spend])] == ["ok"]
    totals = await ledger_lots.daily_totals(
        pool, ledger=a.ledger, first_day=date(2025, 2, 1), last_day=date(2025, 2, 1)
    )
    assert [(t.code, t.amount, t.transfers) for t in totals] == [(1, 15, 2), (2, 12, 1)]
    assert [lot.remaining for lot in await ledger_lots.lots_of(pool, a.wallets[0])] == [0, 3]
    await assert_aggregates_equal_the_scans(pool, a.ledger)
