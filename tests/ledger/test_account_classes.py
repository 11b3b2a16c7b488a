"""Account classes against real PostgreSQL: every class's points at the end
of any day, from the daily totals by class and the moves of its changes
(``ledger.classes``), equal what each wallet held then summed by the class
it was in then, computed here from the posted transfers and the changes
asked for, over random histories of earns, spends and gifts (backdated or
not, alone or in batches) and changes of class (dated now or in the past).
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from ledger import Ledger, Transfer, TransferFlags, classes
from ledger.periods import close_through
from ledger.schemas import Ledger as LedgerDefinition
from tests.ledger.test_lots import NewLedger, move, open_accounts, post, posted_history

#: Ledger ids for the zoned ledgers, far from the ones ``new_ledger`` takes.
_zoned_ids = itertools.count(880_000)


async def _changes(pool: asyncpg.Pool, ledger_id: int) -> list[tuple[uuid.UUID, datetime, int]]:
    rows = await pool.fetch(
        "SELECT account_id, valid_from, account_class FROM account_class_changes"
        " WHERE ledger = $1 ORDER BY valid_from, seq",
        ledger_id,
    )
    return [(r["account_id"], r["valid_from"], r["account_class"]) for r in rows]


async def _expected(
    pool: asyncpg.Pool, ledger_id: int, wallets: list[uuid.UUID], day: date, zone: ZoneInfo
) -> dict[int, int]:
    """Each wallet's balance at the end of ``day``, summed by its class then."""
    held: dict[uuid.UUID, int] = defaultdict(int)
    for t in await posted_history(pool, ledger_id):
        if t["business_at"].astimezone(zone).date() > day:
            continue
        if t["credit"] in wallets:
            held[t["credit"]] += t["amount"]
        if t["debit"] in wallets:
            held[t["debit"]] -= t["amount"]
    in_class = dict.fromkeys(wallets, 0)
    for account, valid_from, cls in await _changes(pool, ledger_id):
        # '-infinity' reads as datetime.min.
        if valid_from.year == 1 or valid_from.astimezone(zone).date() <= day:
            in_class[account] = cls
    sums: dict[int, int] = defaultdict(int)
    for wallet in wallets:
        sums[in_class[wallet]] += held[wallet]
    return {cls: points for cls, points in sums.items() if points}


async def _assert_every_day(
    pool: asyncpg.Pool, ledger_id: int, wallets: list[uuid.UUID], first: date, last: date
) -> None:
    """Every day from ``first`` to ``last`` (accounting days of the ledger)."""
    zone = ZoneInfo(await pool.fetchval("SELECT time_zone FROM ledgers WHERE id = $1", ledger_id))
    day = first
    while day <= last:
        found = await classes.points_by_class(pool, ledger=ledger_id, as_of=day)
        assert found == await _expected(pool, ledger_id, wallets, day, zone), day
        day += timedelta(days=1)


@pytest.mark.parametrize("seed", range(6))
async def test_points_by_class_equal_the_balances_by_class_in_force_every_day(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger, seed: int
) -> None:
    rng = random.Random(seed)
    a = await open_accounts(ledger, await new_ledger(), wallets=4)
    now = datetime.now(UTC)
    balance = dict.fromkeys(a.wallets, 0)
    asked: dict[uuid.UUID, datetime] = {}
    for _ in range(40):
        kind = rng.choice(["earn", "earn", "spend", "gift", "class", "batch"])
        ago = timedelta(days=rng.choice([0, 0, 1, 3, 9, 20]), hours=rng.randint(0, 23))
        when = None if ago.days == 0 else now - ago
        wallet = rng.choice(a.wallets)
        if kind == "class":
            cls = rng.randint(0, 3)
            at = None if rng.random() < 0.4 else now - ago
            await classes.set_account_classes(pool, [wallet], [cls], [at])
            if at is not None:
                asked[wallet] = at
            continue
        transfers: list[Transfer] = []
        for _ in range(rng.randint(2, 4) if kind == "batch" else 1):
            step = kind if kind != "batch" else rng.choice(["earn", "spend", "gift"])
            wallet = rng.choice(a.wallets)
            amount = rng.randint(1, 50)
            if step == "earn":
                transfers.append(move(a.ledger, a.issuance, wallet, amount, effective_at=when))
                balance[wallet] += amount
            elif balance[wallet] > 0:
                amount = min(amount, balance[wallet])
                other = rng.choice([w for w in a.wallets if w != wallet])
                target = other if step == "gift" else a.redemption
                transfers.append(move(a.ledger, wallet, target, amount, 2, effective_at=when))
                balance[wallet] -= amount
                if target in balance:
                    balance[target] += amount
        if transfers:
            assert await post(ledger, transfers) == ["ok"] * len(transfers)
    today = now.date()
    await _assert_every_day(pool, a.ledger, a.wallets, today - timedelta(days=22), today)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "America/Los_Angeles"])
async def test_points_by_class_with_two_phase_failed_chains_and_any_instant(
    ledger: Ledger, pool: asyncpg.Pool, seed: int, zone: str
) -> None:
    # Pending, posted and voided transfers, linked chains that fail, changes
    # dated in the future, at '-infinity' and several in one call, in zones
    # far from UTC on both sides.
    rng = random.Random(seed)
    ledger_id = next(_zoned_ids)
    await ledger.create_ledger(
        LedgerDefinition(id=ledger_id, name=f"z-{ledger_id}"), time_zone=zone
    )
    a = await open_accounts(ledger, ledger_id, wallets=4)
    now = datetime.now(UTC)
    pending: list[uuid.UUID] = []
    for _ in range(50):
        kind = rng.choice(
            ["earn", "spend", "class", "classes", "batch", "pend", "resolve", "chain"]
        )
        ago = timedelta(days=rng.choice([0, 0, 1, 3, 9]), hours=rng.randint(0, 23))
        when = None if ago == timedelta(0) or rng.random() < 0.3 else now - ago
        wallet = rng.choice(a.wallets)
        if kind == "class":
            pick = rng.random()
            at = (
                None
                if pick < 0.3
                else now + timedelta(days=rng.randint(1, 2))
                if pick < 0.45
                else datetime.min.replace(tzinfo=UTC)
                if pick < 0.5
                else now - ago
            )
            await classes.set_account_classes(pool, [wallet], [rng.randint(0, 3)], [at])
        elif kind == "classes":
            other = rng.choice(a.wallets)
            instants = [rng.choice([None, now - ago, now - ago / 2]) for _ in range(3)]
            await classes.set_account_classes(
                pool, [wallet, other, wallet], [rng.randint(0, 3) for _ in range(3)], instants
            )
        elif kind == "pend":
            held = move(
                ledger_id,
                a.issuance,
                wallet,
                rng.randint(1, 30),
                flags=TransferFlags.PENDING,
                effective_at=when,
            )
            if await post(ledger, [held]) == ["ok"]:
                pending.append(held.id)
        elif kind == "resolve" and pending:
            resolved = pending.pop(rng.randrange(len(pending)))
            flags = rng.choice([TransferFlags.POST_PENDING, TransferFlags.VOID_PENDING])
            await post(
                ledger,
                [
                    Transfer(
                        id=uuid.uuid4(),
                        pending_id=resolved,
                        amount=0,
                        flags=flags,
                        effective_at=when,
                    )
                ],
            )
        else:
            transfers: list[Transfer] = []
            for k in range(rng.randint(2, 4) if kind in ("batch", "chain") else 1):
                w = rng.choice(a.wallets)
                linked = TransferFlags.LINKED if kind == "chain" else TransferFlags.NONE
                if rng.random() < 0.6:
                    transfers.append(
                        move(ledger_id, a.issuance, w, rng.randint(1, 50), effective_at=when)
                    )
                else:
                    # May exceed the wallet: refused, failing its chain.
                    target = rng.choice([a.redemption, *(x for x in a.wallets if x != w)])
                    transfers.append(
                        move(ledger_id, w, target, rng.randint(1, 50), 2, effective_at=when)
                    )
                if kind == "chain" and k > 0:
                    previous = transfers[-2]
                    transfers[-2] = Transfer(
                        **{f: getattr(previous, f) for f in previous.__struct_fields__}
                        | {"flags": linked}
                    )
            await post(ledger, transfers)
    today = now.astimezone(ZoneInfo(zone)).date()
    await _assert_every_day(
        pool, ledger_id, a.wallets, today - timedelta(days=12), today + timedelta(days=3)
    )


async def test_a_movement_dated_before_a_change_follows_the_account_through_it(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger(), wallets=1)
    (wallet,) = a.wallets
    now = datetime.now(UTC)
    assert await post(ledger, [move(a.ledger, a.issuance, wallet, 100)]) == ["ok"]
    assert await classes.set_account_classes(pool, [wallet], [2], [now - timedelta(days=5)]) == 1
    assert await classes.set_account_classes(pool, [wallet], [3], [now - timedelta(days=2)]) == 1
    # Posted under class 3, dated in class 0's days: counted in 0, then 2, then 3.
    backdated = move(a.ledger, a.issuance, wallet, 7, effective_at=now - timedelta(days=8))
    assert await post(ledger, [backdated]) == ["ok"]
    today = now.date()
    assert await classes.points_by_class(pool, ledger=a.ledger, as_of=today - timedelta(8)) == {
        0: 7
    }
    assert await classes.points_by_class(pool, ledger=a.ledger, as_of=today - timedelta(4)) == {
        2: 7
    }
    assert await classes.points_by_class(pool, ledger=a.ledger, as_of=today) == {3: 107}
    # The same class again is no change; a change dated before the last is taken at it.
    assert await classes.set_account_classes(pool, [wallet], [3], [None]) == 0
    assert await classes.set_account_classes(pool, [wallet], [1], [now - timedelta(days=9)]) == 1
    changes = await _changes(pool, a.ledger)
    assert changes[-1][1] == changes[-2][1]
    assert await classes.points_by_class(pool, ledger=a.ledger, as_of=today) == {1: 107}
    assert await classes.points_by_class(pool, ledger=a.ledger, as_of=today - timedelta(4)) == {
        2: 7
    }


async def test_a_change_dated_in_a_closed_period_leaves_the_closed_days_alone(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger(), wallets=1)
    (wallet,) = a.wallets
    now = datetime.now(UTC)
    earn = move(a.ledger, a.issuance, wallet, 40, effective_at=now - timedelta(days=10))
    assert await post(ledger, [earn]) == ["ok"]
    closed = now - timedelta(days=6)
    async with pool.acquire() as conn, conn.transaction():
        await close_through(conn, a.ledger, closed)
    await classes.set_account_classes(pool, [wallet], [4], [now - timedelta(days=8)])
    today = now.date()
    assert await classes.points_by_class(pool, ledger=a.ledger, as_of=today - timedelta(7)) == {
        0: 40
    }
    assert await classes.points_by_class(pool, ledger=a.ledger, as_of=today) == {4: 40}


async def test_bad_changes_are_refused_and_change_nothing(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger(), wallets=1)
    (wallet,) = a.wallets
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await classes.set_account_classes(pool, [wallet], [-1], [None])
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await classes.set_account_classes(pool, [wallet, uuid.uuid4()], [1, 1], [None, None])
    assert await _changes(pool, a.ledger) == []
    with pytest.raises(asyncpg.RestrictViolationError):
        await pool.execute("UPDATE accounts SET account_class = 1 WHERE id = $1", wallet)
    with pytest.raises(asyncpg.RestrictViolationError):
        await pool.execute(
            "INSERT INTO ledger_class_moves VALUES ($1, current_date, 10, 0, 1, 5)", a.ledger
        )
