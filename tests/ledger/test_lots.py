"""Lots against real PostgreSQL: the posting path's trigger records which
lots each wallet debit consumed, restores and gifts them, and the backfill
derives the same from history.

The reference is ``LotModel``: the rules of docs/ledger.md ("Lots and daily
aggregates") applied one posted transfer at a time, in timestamp order, in
Python. The trigger works set-based per batch; the property test holds the
two together over random batches.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import Account, AccountFlags, Ledger, Transfer, TransferFlags
from ledger import lots as ledger_lots
from ledger.connection import create_pool
from ledger.lots import Connection
from ledger.schemas import Ledger as LedgerDefinition

NewLedger = Callable[[], Awaitable[int]]
WALLET_CODE = 10
WALLET = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
EXAMPLES = int(os.environ.get("LEDGER_LOTS_EXAMPLES", "30"))
# Ledger ids for the synchronous tests, far from the ones the async tests take.
_ledger_ids = itertools.count(700_000)


@dataclass
class Accounts:
    ledger: int
    issuance: uuid.UUID
    redemption: uuid.UUID
    wallets: list[uuid.UUID]


async def open_accounts(ledger: Ledger, ledger_id: int, wallets: int = 3) -> Accounts:
    accounts = Accounts(
        ledger_id, uuid.uuid4(), uuid.uuid4(), [uuid.uuid4() for _ in range(wallets)]
    )
    outcomes = await ledger.create_accounts(
        [
            Account(id=accounts.issuance, ledger=ledger_id, code=1),
            Account(id=accounts.redemption, ledger=ledger_id, code=3),
            *(
                Account(id=w, ledger=ledger_id, code=WALLET_CODE, flags=WALLET)
                for w in accounts.wallets
            ),
        ]
    )
    assert {o.result for o in outcomes} == {"ok"}
    return accounts


def move(
    ledger_id: int, debit: uuid.UUID, credit: uuid.UUID, amount: int, code: int = 1, **kw: Any
) -> Transfer:
    return Transfer(
        id=kw.pop("id", None) or uuid.uuid4(),
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger=ledger_id,
        code=code,
        **kw,
    )


# -- the reference ------------------------------------------------------------


@dataclass
class ModelLot:
    id: uuid.UUID
    account: uuid.UUID
    origin: int
    source: uuid.UUID
    amount: int
    remaining: int
    earned_at: datetime
    timestamp: int
    expires_at: datetime | None = None


def _uuids(value: object) -> list[uuid.UUID]:
    if not isinstance(value, list):
        return []
    found = []
    for item in value:
        if isinstance(item, str):
            try:
                if len(item) == 36:
                    found.append(uuid.UUID(item))
            except ValueError:
                pass
    return found


@dataclass
class LotModel:
    """The lot rules, one posted transfer at a time."""

    lot_accounts: set[uuid.UUID]
    lots: dict[uuid.UUID, ModelLot] = field(default_factory=dict)
    moves: dict[tuple[uuid.UUID, uuid.UUID], int] = field(default_factory=dict)
    directed_of: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)
    restorations: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)

    def _order(self, directed: list[uuid.UUID]) -> Callable[[ModelLot], tuple[Any, ...]]:
        def key(lot: ModelLot) -> tuple[Any, ...]:
            position = directed.index(lot.id) if lot.id in directed else len(directed) + 1
            return (position, lot.earned_at, lot.timestamp, lot.id.bytes)

        return key

    def _new_lot(self, t: dict[str, Any], lot_id: uuid.UUID, amount: int, **kw: Any) -> None:
        self.lots[lot_id] = ModelLot(
            id=lot_id,
            account=t["credit"],
            origin=kw.get("origin", t["code"]),
            source=kw.get("source", t["debit"]),
            amount=amount,
            remaining=amount,
            earned_at=kw.get("earned_at", t["business_at"]),
            timestamp=kw.get("timestamp", t["timestamp"]),
            expires_at=kw.get("expires_at"),
        )
        self.moves[(t["id"], lot_id)] = amount

    def apply(self, t: dict[str, Any]) -> None:
        metadata = t["metadata"] if isinstance(t["metadata"], dict) else {}
        consumed: list[tuple[ModelLot, int]] = []
        if t["debit"] in self.lot_accounts:
            directed = _uuids(metadata.get("lots"))
            self.directed_of[t["id"]] = directed
            open_lots = [
                lot for lot in self.lots.values() if lot.account == t["debit"] and lot.remaining
            ]
            left = t["amount"]
            for lot in sorted(open_lots, key=self._order(directed)):
                if not left:
                    break
                take = min(lot.remaining, left)
                lot.remaining -= take
                left -= take
                self.moves[(t["id"], lot.id)] = -take
                consumed.append((lot, take))
        if t["credit"] not in self.lot_accounts:
            return
        moved = 0
        restores = metadata.get("restores")
        target = None
        if isinstance(restores, str) and len(restores) == 36:
            try:
                target = uuid.UUID(restores)
            except ValueError:
                target = None
        if target is not None:
            expires = None
            if "lot_expires_at" in metadata:
                try:
                    expires = datetime.fromisoformat(str(metadata["lot_expires_at"]))
                except ValueError:
                    expires = None
            earlier = self.restorations.setdefault(target, [])
            taken = [
                (self.lots[lot_id], -points)
                for (tid, lot_id), points in self.moves.items()
                if tid == target and points < 0 and self.lots[lot_id].account == t["credit"]
            ]
            order = self._order(self.directed_of.get(target, []))
            left = t["amount"]
            for lot, points in sorted(taken, key=lambda x: order(x[0]), reverse=True):
                given = sum(self.moves.get((r, lot.id), 0) for r in earlier)
                back = min(points - given, left)
                if back <= 0:
                    continue
                lot.remaining += back
                if expires is not None:
                    lot.expires_at = expires
                left -= back
                moved += back
                self.moves[(t["id"], lot.id)] = back
            earlier.append(t["id"])
        elif t["debit"] in self.lot_accounts:
            for lot, points in consumed:
                import hashlib

                gift_id = uuid.UUID(hashlib.md5(f"{t['id']}{lot.id}".encode()).hexdigest())
                self._new_lot(
                    t,
                    gift_id,
                    points,
                    origin=lot.origin,
                    source=lot.source,
                    earned_at=lot.earned_at,
                    timestamp=lot.timestamp,
                    expires_at=lot.expires_at,
                )
                moved += points
        if t["amount"] > moved:
            self._new_lot(t, t["id"], t["amount"] - moved)


async def posted_history(conn: Connection, ledger_id: int) -> list[dict[str, Any]]:
    """The ledger's posted movements (plain and post_pending rows) in order."""
    rows = await conn.fetch(
        "SELECT id, debit_account_id AS debit, credit_account_id AS credit, amount, code,"
        ' metadata, coalesce(effective_at, created_at) AS business_at, "timestamp"'
        ' FROM transfers WHERE ledger = $1 AND flags & 10 = 0 ORDER BY "timestamp"',
        ledger_id,
    )
    history = []
    for r in rows:
        row = dict(r)
        if isinstance(row["metadata"], str):
            row["metadata"] = json.loads(row["metadata"])
        history.append(row)
    return history


async def recorded_lots(conn: Connection, ledger_id: int) -> dict[uuid.UUID, tuple[Any, ...]]:
    # Read as the ledger's own reads do: plain debits settled first.
    await ledger_lots.settle_lots(conn, ledger=ledger_id)
    rows = await conn.fetch(
        "SELECT id, account_id, origin_code, source_account_id, amount, remaining, earned_at,"
        ' "timestamp", expires_at FROM lots WHERE ledger = $1',
        ledger_id,
    )
    return {r["id"]: tuple(r.values())[1:] for r in rows}


async def recorded_moves(
    conn: Connection, ledger_id: int
) -> dict[tuple[uuid.UUID, uuid.UUID], int]:
    # Read as the ledger's own reads do: plain debits settled first.
    await ledger_lots.settle_lots(conn, ledger=ledger_id)
    rows = await conn.fetch(
        "SELECT m.transfer_id, m.lot_id, m.points FROM lot_movements m"
        " JOIN lots l ON l.id = m.lot_id WHERE l.ledger = $1",
        ledger_id,
    )
    return {(r["transfer_id"], r["lot_id"]): r["points"] for r in rows}


async def assert_as_the_model(
    conn: Connection, ledger_id: int, lot_accounts: set[uuid.UUID]
) -> None:
    model = LotModel(lot_accounts)
    for t in await posted_history(conn, ledger_id):
        model.apply(t)
    expected = {
        lot.id: (
            lot.account,
            lot.origin,
            lot.source,
            lot.amount,
            lot.remaining,
            lot.earned_at,
            lot.timestamp,
            lot.expires_at,
        )
        for lot in model.lots.values()
    }
    assert await recorded_lots(conn, ledger_id) == expected
    assert await recorded_moves(conn, ledger_id) == model.moves


async def assert_lots_hold_the_balances(
    conn: Connection, ledger: Ledger, ledger_id: int, wallets: Sequence[uuid.UUID]
) -> None:
    totals = {
        t.account_id: t.remaining
        for t in await ledger_lots.lot_totals_by_account(conn, ledger=ledger_id)
    }
    for state in await ledger.lookup_accounts(list(wallets)):
        assert totals.get(state.id, 0) == state.credits_posted - state.debits_posted


# -- examples -----------------------------------------------------------------


async def post(ledger: Ledger, transfers: Sequence[Transfer]) -> list[str]:
    return [o.result for o in await ledger.create_transfers(transfers)]


async def test_debits_consume_the_oldest_lots_across_batches(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    wallet = a.wallets[0]
    earns = [move(a.ledger, a.issuance, wallet, amount) for amount in (30, 20, 50)]
    assert await post(ledger, earns) == ["ok"] * 3
    # Two debits of one account in one batch, with a credit between them.
    later = move(a.ledger, a.issuance, wallet, 10)
    first, second = (
        move(a.ledger, wallet, a.redemption, 25, 2),
        move(a.ledger, wallet, a.redemption, 30, 2),
    )
    assert await post(ledger, [first, later, second]) == ["ok"] * 3
    third = move(a.ledger, wallet, a.redemption, 50, 2)
    assert await post(ledger, [third]) == ["ok"]

    moved = {
        t.id: [(m.lot_id, m.points) for m in await ledger_lots.movements_of_transfer(pool, t.id)]
        for t in (first, second, third)
    }
    e1, e2, e3 = (e.id for e in earns)
    assert moved[first.id] == [(e1, -25)]
    assert moved[second.id] == [(e1, -5), (e2, -20), (e3, -5)]
    assert moved[third.id] == [(e3, -45), (later.id, -5)]
    remaining = {lot.id: lot.remaining for lot in await ledger_lots.lots_of(pool, wallet)}
    assert remaining == {e1: 0, e2: 0, e3: 0, later.id: 5}
    assert [lot.id for lot in await ledger_lots.lots_of(pool, wallet, open_only=True)] == [later.id]
    await assert_as_the_model(pool, a.ledger, set(a.wallets))
    await assert_lots_hold_the_balances(pool, ledger, a.ledger, a.wallets)


async def test_a_backdated_credit_is_consumed_first_by_a_later_debit_of_the_batch(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    wallet = a.wallets[0]
    now = move(a.ledger, a.issuance, wallet, 40)
    assert await post(ledger, [now]) == ["ok"]
    backdated = move(
        a.ledger, a.issuance, wallet, 15, effective_at=datetime.now(UTC) - timedelta(days=40)
    )
    spend = move(a.ledger, wallet, a.redemption, 20, 2)
    assert await post(ledger, [backdated, spend]) == ["ok", "ok"]
    moved = [(m.lot_id, m.points) for m in await ledger_lots.movements_of_transfer(pool, spend.id)]
    assert moved == [(backdated.id, -15), (now.id, -5)]
    await assert_as_the_model(pool, a.ledger, set(a.wallets))


async def test_directed_debits_take_the_named_lots_first(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    wallet, other = a.wallets[:2]
    earns = [move(a.ledger, a.issuance, wallet, amount) for amount in (10, 20, 30)]
    foreign = move(a.ledger, a.issuance, other, 5)
    assert await post(ledger, [*earns, foreign]) == ["ok"] * 4
    # The third purchase's points returned, then the first's; another
    # account's lot, an unknown one and a malformed entry are passed over.
    names = [str(earns[2].id), str(foreign.id), str(uuid.uuid4()), "not-a-lot", str(earns[0].id)]
    returned = move(a.ledger, wallet, a.issuance, 35, 3, metadata={"lots": names})
    assert await post(ledger, [returned]) == ["ok"]
    moved = [
        (m.lot_id, m.points) for m in await ledger_lots.movements_of_transfer(pool, returned.id)
    ]
    assert sorted(moved) == sorted([(earns[2].id, -30), (earns[0].id, -5)])
    consumed = await ledger_lots.lots_consumed_by(pool, returned.id)
    assert [(c.lot_id, c.consumed) for c in consumed] == [(earns[2].id, 30), (earns[0].id, 5)]
    await assert_as_the_model(pool, a.ledger, set(a.wallets))


async def test_restorations_give_back_in_reverse_order_capped_and_keep_or_take_the_expiry(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    wallet = a.wallets[0]
    earns = [move(a.ledger, a.issuance, wallet, amount) for amount in (10, 20, 30)]
    redeem = move(a.ledger, wallet, a.redemption, 45, 2)
    assert await post(ledger, [*earns, redeem]) == ["ok"] * 4
    e1, e2, e3 = (e.id for e in earns)
    # The last lot consumed (e3: 15 of it) comes back first.
    cancel = {"restores": str(redeem.id)}
    first = move(a.ledger, a.redemption, wallet, 20, 14, metadata=cancel)
    assert await post(ledger, [first]) == ["ok"]
    assert sorted(
        (m.lot_id, m.points) for m in await ledger_lots.movements_of_transfer(pool, first.id)
    ) == sorted([(e3, 15), (e2, 5)])
    expiry = datetime(2031, 1, 31, tzinfo=UTC)
    # Capped: 25 were left to restore, the other 5 make a lot of their own.
    second = move(
        a.ledger,
        a.redemption,
        wallet,
        30,
        16,
        metadata={**cancel, "lot_expires_at": expiry.isoformat()},
    )
    assert await post(ledger, [second]) == ["ok"]
    moved = dict(
        (m.lot_id, m.points) for m in await ledger_lots.movements_of_transfer(pool, second.id)
    )
    assert moved == {e2: 15, e1: 10, second.id: 5}
    lots = {lot.id: lot for lot in await ledger_lots.lots_of(pool, wallet)}
    assert (lots[e1].remaining, lots[e2].remaining, lots[e3].remaining) == (10, 20, 30)
    assert lots[e1].expires_at == expiry and lots[e2].expires_at == expiry
    assert lots[e3].expires_at is None  # restored by the first, without an expiry
    assert lots[second.id].amount == 5 and lots[second.id].expires_at is None
    consumed = await ledger_lots.lots_consumed_by(pool, redeem.id)
    assert [(c.lot_id, c.consumed, c.restored) for c in consumed] == [
        (e1, 10, 10),
        (e2, 20, 20),
        (e3, 15, 15),
    ]
    # Nothing is left to restore: a third restoration is a lot of its own.
    third = move(a.ledger, a.redemption, wallet, 7, 14, metadata=cancel)
    assert await post(ledger, [third]) == ["ok"]
    assert [
        (m.lot_id, m.points) for m in await ledger_lots.movements_of_transfer(pool, third.id)
    ] == [(third.id, 7)]
    await assert_as_the_model(pool, a.ledger, set(a.wallets))
    await assert_lots_hold_the_balances(pool, ledger, a.ledger, a.wallets)


async def test_gifts_move_lots_with_their_earned_at(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    giver, taker = a.wallets[:2]
    old = move(a.ledger, a.issuance, giver, 10, effective_at=datetime.now(UTC) - timedelta(days=90))
    new = move(a.ledger, a.issuance, giver, 10)
    own = move(a.ledger, a.issuance, taker, 10, effective_at=datetime.now(UTC) - timedelta(days=30))
    assert await post(ledger, [old, new, own]) == ["ok"] * 3
    gift = move(a.ledger, giver, taker, 15, 5)
    # In the same batch the taker spends: the gifted 90-day-old lot goes first.
    spend = move(a.ledger, taker, a.redemption, 12, 2)
    assert await post(ledger, [gift, spend]) == ["ok", "ok"]
    lots = {lot.id: lot for lot in await ledger_lots.lots_of(pool, taker)}
    import hashlib

    gifted_old = uuid.UUID(hashlib.md5(f"{gift.id}{old.id}".encode()).hexdigest())
    gifted_new = uuid.UUID(hashlib.md5(f"{gift.id}{new.id}".encode()).hexdigest())
    assert set(lots) == {own.id, gifted_old, gifted_new}
    original = {lot.id: lot for lot in await ledger_lots.lots_of(pool, giver)}
    assert lots[gifted_old].earned_at == original[old.id].earned_at
    assert lots[gifted_old].origin_code == 1 and lots[gifted_old].source_account_id == a.issuance
    assert (lots[gifted_old].amount, lots[gifted_new].amount) == (10, 5)
    spent = dict(
        (m.lot_id, m.points) for m in await ledger_lots.movements_of_transfer(pool, spend.id)
    )
    assert spent == {gifted_old: -10, own.id: -2}
    await assert_as_the_model(pool, a.ledger, set(a.wallets))
    await assert_lots_hold_the_balances(pool, ledger, a.ledger, a.wallets)


async def test_a_gift_keeps_the_expiry_its_lots_had_when_a_later_restoration_changes_it(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    # Found by the random batches: the giver is recorded one movement at a
    # time (its restoration), the taker was recorded after all of them and
    # copied the expiry the restoration gave the giver's lot afterwards.
    a = await open_accounts(ledger, await new_ledger())
    giver, taker = a.wallets[:2]
    earn = move(a.ledger, a.issuance, giver, 3)
    gift = move(a.ledger, giver, taker, 1, 5)
    expiry = datetime(2031, 1, 31, tzinfo=UTC)
    restore = move(
        a.ledger,
        a.redemption,
        giver,
        1,
        14,
        metadata={"restores": str(gift.id), "lot_expires_at": expiry.isoformat()},
    )
    assert await post(ledger, [earn, gift, restore]) == ["ok"] * 3
    [given] = await ledger_lots.lots_of(pool, taker)
    assert given.expires_at is None
    [kept] = await ledger_lots.lots_of(pool, giver)
    assert (kept.remaining, kept.expires_at) == (3, expiry)
    await assert_as_the_model(pool, a.ledger, set(a.wallets))
    await assert_lots_hold_the_balances(pool, ledger, a.ledger, a.wallets)


async def test_pending_post_and_void(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    wallet = a.wallets[0]
    earn = move(a.ledger, a.issuance, wallet, 50)
    held = move(a.ledger, wallet, a.redemption, 30, 2, flags=TransferFlags.PENDING)
    voided = move(a.ledger, wallet, a.redemption, 10, 2, flags=TransferFlags.PENDING)
    pending_earn = move(a.ledger, a.issuance, wallet, 8, flags=TransferFlags.PENDING)
    assert await post(ledger, [earn, held, voided, pending_earn]) == ["ok"] * 4
    for t in (held, voided, pending_earn):
        assert await ledger_lots.movements_of_transfer(pool, t.id) == []
    post_held = Transfer(
        id=uuid.uuid4(),
        pending_id=held.id,
        amount=20,
        flags=TransferFlags.POST_PENDING,
        debit_account_id=wallet,
        credit_account_id=a.redemption,
        ledger=a.ledger,
        code=2,
    )
    void = Transfer(
        id=uuid.uuid4(),
        pending_id=voided.id,
        amount=0,
        flags=TransferFlags.VOID_PENDING,
        debit_account_id=wallet,
        credit_account_id=a.redemption,
        ledger=a.ledger,
        code=2,
    )
    post_earn = Transfer(
        id=uuid.uuid4(),
        pending_id=pending_earn.id,
        amount=0,
        flags=TransferFlags.POST_PENDING,
        debit_account_id=a.issuance,
        credit_account_id=wallet,
        ledger=a.ledger,
        code=1,
    )
    assert await post(ledger, [post_held, void, post_earn]) == ["ok"] * 3
    assert [
        (m.lot_id, m.points) for m in await ledger_lots.movements_of_transfer(pool, post_held.id)
    ] == [(earn.id, -20)]
    assert await ledger_lots.movements_of_transfer(pool, void.id) == []
    made = await ledger_lots.movements_of_transfer(pool, post_earn.id)
    assert [(m.lot_id, m.points) for m in made] == [(post_earn.id, 8)]
    await assert_as_the_model(pool, a.ledger, set(a.wallets))
    await assert_lots_hold_the_balances(pool, ledger, a.ledger, a.wallets)


async def test_a_failed_linked_chain_moves_no_lot(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    wallet = a.wallets[0]
    earn = move(a.ledger, a.issuance, wallet, 10)
    assert await post(ledger, [earn]) == ["ok"]
    chain = [
        move(a.ledger, a.issuance, wallet, 5, flags=TransferFlags.LINKED),
        move(a.ledger, wallet, a.redemption, 8, 2, flags=TransferFlags.LINKED),
        move(a.ledger, wallet, a.redemption, 100, 2),  # exceeds the wallet: the chain fails
    ]
    after = move(a.ledger, wallet, a.redemption, 3, 2)
    results = await post(ledger, [*chain, after])
    assert results == ["linked_event_failed", "linked_event_failed", "exceeds_credits", "ok"]
    for t in chain:
        assert await ledger_lots.movements_of_transfer(pool, t.id) == []
        assert await ledger_lots.lot(pool, t.id) is None
    assert [
        (m.lot_id, m.points) for m in await ledger_lots.movements_of_transfer(pool, after.id)
    ] == [(earn.id, -3)]
    await assert_as_the_model(pool, a.ledger, set(a.wallets))


async def test_lots_and_aggregates_are_written_by_the_posting_path_only(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    earn = move(a.ledger, a.issuance, a.wallets[0], 10)
    assert await post(ledger, [earn]) == ["ok"]
    # Its lot written (settled), so that each statement below has a row to touch.
    assert (await ledger_lots.settle_lots(pool, ledger=a.ledger)).lots == 1
    for statement in (
        "UPDATE lots SET remaining = 0 WHERE id = $1",
        "UPDATE lots SET amount = 11 WHERE id = $1",
        "DELETE FROM lots WHERE id = $1",
        "DELETE FROM lot_movements WHERE transfer_id = $1",
        "UPDATE lot_movements SET points = 1 WHERE transfer_id = $1",
        "INSERT INTO lot_movements VALUES ($1, $1, 1, now(), current_date, 0)",
    ):
        with pytest.raises(asyncpg.RestrictViolationError):
            await pool.execute(statement, earn.id)
    for statement in (
        "UPDATE ledger_daily_totals SET amount = 0 WHERE ledger = $1",
        "DELETE FROM lot_daily_movements WHERE ledger = $1",
    ):
        with pytest.raises(asyncpg.RestrictViolationError):
            await pool.execute(statement, a.ledger)
    assert [lot.remaining for lot in await ledger_lots.lots_of(pool, a.wallets[0])] == [10]


async def test_the_ledger_keeps_its_time_zone(ledger: Ledger, pool: asyncpg.Pool) -> None:
    ledger_id = 690_001
    assert await ledger.create_ledger(
        LedgerDefinition(id=ledger_id, name="tz-zone"), time_zone="Pacific/Kiritimati"
    )
    assert (
        await pool.fetchval("SELECT time_zone FROM ledgers WHERE id = $1", ledger_id)
        == "Pacific/Kiritimati"
    )
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await ledger.create_ledger(
            LedgerDefinition(id=ledger_id + 1, name="tz-bad"), time_zone="Mars/Olympus"
        )
    assert await pool.fetchval("SELECT count(*) FROM ledgers WHERE id = $1", ledger_id + 1) == 0


# -- the backfill ---------------------------------------------------------------


def history(a: Accounts) -> list[list[Transfer]]:
    """Batches with every kind of movement, all at fixed business times."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    at = iter(start + timedelta(days=d) for d in itertools.count(0, 3))
    w1, w2, w3 = a.wallets
    e = [
        move(a.ledger, a.issuance, w, amt, effective_at=next(at))
        for w, amt in ((w1, 30), (w1, 20), (w2, 40), (w3, 10))
    ]
    redeem = move(a.ledger, w1, a.redemption, 35, 2, effective_at=next(at))
    gift = move(a.ledger, w2, w1, 25, 5, effective_at=next(at))
    directed = move(
        a.ledger, w1, a.issuance, 12, 3, effective_at=next(at), metadata={"lots": [str(e[1].id)]}
    )
    restore = move(
        a.ledger,
        a.redemption,
        w1,
        20,
        14,
        effective_at=next(at),
        metadata={"restores": str(redeem.id)},
    )
    backdated = move(a.ledger, a.issuance, w3, 9, effective_at=start - timedelta(days=60))
    spend3 = move(a.ledger, w3, a.redemption, 12, 2, effective_at=next(at))
    expire = move(a.ledger, w2, a.issuance, 15, 6, effective_at=next(at))
    reinstate = move(
        a.ledger,
        a.issuance,
        w2,
        15,
        16,
        effective_at=next(at),
        metadata={"restores": str(expire.id), "lot_expires_at": "2030-06-30T00:00:00+00:00"},
    )
    return [
        e[:2],
        [e[2], e[3], redeem],
        [gift, directed, restore],
        [backdated, spend3],
        [expire],
        [reinstate],
    ]


async def _snapshot(conn: Connection, ledger_id: int) -> tuple[Any, ...]:
    # Read as the ledger's own reads do: plain debits settled first.
    await ledger_lots.settle_lots(conn, ledger=ledger_id)
    lots = await conn.fetch(
        "SELECT id, account_id, origin_code, source_account_id, amount, remaining, earned_at,"
        " cohort, expires_at FROM lots WHERE ledger = $1 ORDER BY id",
        ledger_id,
    )
    moves = await conn.fetch(
        "SELECT m.transfer_id, m.lot_id, m.points, m.business_at, m.day FROM lot_movements m"
        " JOIN lots l ON l.id = m.lot_id WHERE l.ledger = $1 ORDER BY 1, 2",
        ledger_id,
    )
    daily = await conn.fetch(
        "SELECT * FROM lot_daily_movements WHERE ledger = $1 ORDER BY 2, 3, 4, 5, 6", ledger_id
    )
    return (
        [tuple(r.values()) for r in lots],
        [tuple(r.values()) for r in moves],
        [tuple(r.values()) for r in daily],
    )


async def test_the_backfill_derives_what_the_trigger_records_and_only_once(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    batches = history(a)
    async with pool.acquire() as conn:
        # As posted with the trigger; rolled back so that the same ids post again.
        transaction = conn.transaction()
        await transaction.start()
        for batch in batches:
            assert {o.result for o in await ledger.create_transfers_within(conn, batch)} == {"ok"}
        recorded = await _snapshot(conn, a.ledger)
        await assert_as_the_model(conn, a.ledger, set(a.wallets))
        await transaction.rollback()
        assert recorded[0] and recorded[1] and recorded[2]

        transaction = conn.transaction()
        await transaction.start()
        try:
            await conn.execute("SET LOCAL session_replication_role = replica")
            for batch in batches:
                assert {o.result for o in await ledger.create_transfers_within(conn, batch)} == {
                    "ok"
                }
            await conn.execute("SET LOCAL session_replication_role = origin")
            assert await _snapshot(conn, a.ledger) == ([], [], [])
            derived = await conn.fetchrow("SELECT * FROM ledger_derive_lots()")
            assert derived is not None
            assert (derived["accounts"], derived["lots"], derived["movements"]) == (
                3,
                len(recorded[0]),
                len(recorded[1]),
            )
            assert await _snapshot(conn, a.ledger) == recorded
            again = await conn.fetchrow("SELECT * FROM ledger_derive_lots()")
            assert again is not None and tuple(again.values()) == (0, 0, 0)
            assert await _snapshot(conn, a.ledger) == recorded
        finally:
            await transaction.rollback()


# -- random batches against the reference -------------------------------------


class World:
    """A pool and a ledger on the test's own loop (Hypothesis drives it)."""

    def __init__(self, database_url: str) -> None:
        self.runner = asyncio.Runner()
        self.pool = self.run(create_pool(database_url, min_size=1, max_size=4))
        self.ledger = Ledger(self.pool)

    def run(self, awaitable: Awaitable[Any]) -> Any:
        return self.runner.run(awaitable)  # type: ignore[arg-type]

    def new_accounts(self) -> Accounts:
        ledger_id = next(_ledger_ids)
        self.run(
            self.ledger.create_ledger(LedgerDefinition(id=ledger_id, name=f"lots-{ledger_id}"))
        )
        return self.run(open_accounts(self.ledger, ledger_id))  # type: ignore[no-any-return]

    def close(self) -> None:
        self.run(self.ledger.close())
        self.run(self.pool.close())
        self.runner.close()


@pytest.fixture(scope="module")
def world(database_url: str) -> Any:
    w = World(database_url)
    yield w
    w.close()


OPS = st.one_of(
    st.tuples(
        st.just("earn"), st.integers(0, 2), st.integers(1, 40), st.sampled_from([None, None, 3, 45])
    ),
    st.tuples(st.just("spend"), st.integers(0, 2), st.integers(1, 50), st.booleans()),
    st.tuples(st.just("gift"), st.integers(0, 2), st.integers(0, 2), st.integers(1, 30)),
    st.tuples(st.just("restore"), st.integers(0, 2), st.integers(1, 40), st.booleans()),
    st.tuples(st.just("hold"), st.integers(0, 2), st.integers(1, 30), st.booleans()),
    st.tuples(st.just("resolve"), st.integers(0, 9), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("chain"), st.integers(0, 2), st.integers(1, 20), st.integers(1, 80)),
)


def random_batch(a: Accounts, draw: st.DataObject, known: dict[str, list[Any]]) -> list[Transfer]:
    """One batch of drawn movements; ``known`` holds the ids earlier ones made."""
    batch: list[Transfer] = []
    now = datetime.now(UTC)
    for op in draw.draw(st.lists(OPS, min_size=1, max_size=8)):
        kind = op[0]
        if kind == "earn":
            _, w, amount, days = op
            effective = now - timedelta(days=days) if days else None
            t = move(a.ledger, a.issuance, a.wallets[w], amount, effective_at=effective)
            known["lots"].append(t.id)
        elif kind == "spend":
            _, w, amount, directed = op
            metadata = None
            if directed and known["lots"]:
                names = draw.draw(st.lists(st.sampled_from(known["lots"]), max_size=3))
                metadata = {"lots": [str(n) for n in names] + ["x"]}
            t = move(a.ledger, a.wallets[w], a.redemption, amount, 2, metadata=metadata)
            known["debits"].append((t.id, w))
        elif kind == "gift":
            _, w1, w2, amount = op
            if w1 == w2:
                continue
            t = move(a.ledger, a.wallets[w1], a.wallets[w2], amount, 5)
            known["debits"].append((t.id, w1))
        elif kind == "restore":
            _, w, amount, expiry = op
            if not known["debits"]:
                continue
            target, _ = draw.draw(st.sampled_from(known["debits"]))
            restoring: dict[str, Any] = {"restores": str(target)}
            if expiry:
                restoring["lot_expires_at"] = (now + timedelta(days=365)).isoformat()
            t = move(a.ledger, a.redemption, a.wallets[w], amount, 14, metadata=restoring)
        elif kind == "hold":
            _, w, amount, earning = op
            debit, credit = (a.issuance, a.wallets[w]) if earning else (a.wallets[w], a.redemption)
            t = move(
                a.ledger, debit, credit, amount, 1 if earning else 2, flags=TransferFlags.PENDING
            )
            known["holds"].append(t)
        elif kind == "resolve":
            _, k, amount, posting = op
            if not known["holds"]:
                continue
            held = known["holds"][k % len(known["holds"])]
            t = Transfer(
                id=uuid.uuid4(),
                pending_id=held.id,
                amount=amount if posting else 0,
                flags=TransferFlags.POST_PENDING if posting else TransferFlags.VOID_PENDING,
                debit_account_id=held.debit_account_id,
                credit_account_id=held.credit_account_id,
                ledger=a.ledger,
                code=held.code,
            )
            if posting:
                known["debits"].append((t.id, 0))
        else:
            _, w, earned, spent = op
            batch.append(
                move(a.ledger, a.issuance, a.wallets[w], earned, flags=TransferFlags.LINKED)
            )
            t = move(a.ledger, a.wallets[w], a.redemption, spent, 2)
        batch.append(t)
    return batch


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_random_batches_record_the_lots_of_posting_one_at_a_time(
    world: World, data: st.DataObject
) -> None:
    a = world.new_accounts()
    known: dict[str, list[Any]] = {"lots": [], "debits": [], "holds": []}
    for _ in range(data.draw(st.integers(1, 4))):
        world.run(world.ledger.create_transfers(random_batch(a, data, known)))
    world.run(assert_as_the_model(world.pool, a.ledger, set(a.wallets)))
    world.run(assert_lots_hold_the_balances(world.pool, world.ledger, a.ledger, a.wallets))


def test_the_derive_lots_command_says_what_it_did_and_does_nothing_the_second_time(
    database_url: str,
) -> None:
    from click.testing import CliRunner

    from api.cli import main
    from api.settings import ENVIRONMENT

    async def history_without_lots() -> Accounts:
        pool = await create_pool(database_url, min_size=1, max_size=2)
        ledger = Ledger(pool)
        try:
            ledger_id = next(_ledger_ids)
            await ledger.create_ledger(LedgerDefinition(id=ledger_id, name=f"derive-{ledger_id}"))
            a = await open_accounts(ledger, ledger_id, wallets=2)
            async with pool.acquire() as conn, conn.transaction():
                # Posted as before migration 0037: no trigger.
                await conn.execute("SET LOCAL session_replication_role = replica")
                batch = [
                    move(ledger_id, a.issuance, a.wallets[0], 30),
                    move(ledger_id, a.issuance, a.wallets[1], 5),
                    move(ledger_id, a.wallets[0], a.redemption, 12, 2),
                ]
                await ledger.create_transfers_within(conn, batch)
            return a
        finally:
            await ledger.close()
            await pool.close()

    async def check(a: Accounts) -> None:
        pool = await create_pool(database_url, min_size=1, max_size=2)
        ledger = Ledger(pool)
        try:
            await assert_as_the_model(pool, a.ledger, set(a.wallets))
            await assert_lots_hold_the_balances(pool, ledger, a.ledger, a.wallets)
        finally:
            await ledger.close()
            await pool.close()

    a = asyncio.run(history_without_lots())
    environment: dict[str, str | None] = dict.fromkeys(ENVIRONMENT)
    environment["DATABASE_URL"] = database_url
    first = CliRunner().invoke(main, ["ledger", "derive-lots"], env=environment)
    assert first.exit_code == 0, first.output
    # Only this test's history lacks lots in the session's database.
    assert first.stdout == (
        "ledger derive-lots: 2 accounts derived from their history: 2 lots, 3 lot movements\n"
    )
    asyncio.run(check(a))
    again = CliRunner().invoke(main, ["ledger", "derive-lots"], env=environment)
    assert again.exit_code == 0, again.output
    assert again.stdout == "ledger derive-lots: every lot account has its lots; nothing to do\n"


async def test_expired_lots_since_lists_what_no_reinstatement_gave_back(
    ledger: Ledger, pool: asyncpg.Pool, new_ledger: NewLedger
) -> None:
    a = await open_accounts(ledger, await new_ledger())
    w1, w2 = a.wallets[:2]
    earns = [move(a.ledger, a.issuance, w, 40) for w in (w1, w2)]
    assert await post(ledger, earns) == ["ok", "ok"]
    long_ago = datetime.now(UTC) - timedelta(days=400)
    old_expiry = move(a.ledger, w1, a.issuance, 5, 6, effective_at=long_ago)
    expiry = move(a.ledger, w1, a.issuance, 30, 6)
    sunset = move(a.ledger, w2, a.issuance, 40, 17)
    spent = move(a.ledger, w1, a.redemption, 5, 2)  # not an expiry
    assert await post(ledger, [old_expiry, expiry, sunset, spent]) == ["ok"] * 4
    since = datetime.now(UTC) - timedelta(days=1)
    listed = await ledger_lots.expired_lots_since(pool, ledger=a.ledger, since=since)
    assert sorted((e.account_id, e.transfer_id, e.points) for e in listed) == sorted(
        [(w1, expiry.id, 30), (w2, sunset.id, 40)]
    )
    back = {"restores": str(expiry.id), "lot_expires_at": "2032-01-01T00:00:00+00:00"}
    reinstated = move(a.ledger, a.issuance, w1, 12, 16, metadata=back)
    assert await post(ledger, [reinstated]) == ["ok"]
    listed = await ledger_lots.expired_lots_since(pool, ledger=a.ledger, since=since)
    assert sorted((e.account_id, e.transfer_id, e.points) for e in listed) == sorted(
        [(w1, expiry.id, 18), (w2, sunset.id, 40)]
    )
    rest = move(a.ledger, a.issuance, w1, 18, 16, metadata=back)
    assert await post(ledger, [rest]) == ["ok"]
    listed = await ledger_lots.expired_lots_since(pool, ledger=a.ledger, since=since)
    assert [(e.account_id, e.transfer_id, e.points) for e in listed] == [(w2, sunset.id, 40)]
    [lot] = await ledger_lots.lots_of(pool, w1)
    assert lot.expires_at == datetime(2032, 1, 1, tzinfo=UTC)
    await assert_as_the_model(pool, a.ledger, set(a.wallets))
