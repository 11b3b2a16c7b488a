"""Purchases over HTTP go through the intake: concurrent requests are
recorded a batch at a time, and each still gets its own answer."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import asyncpg
import msgspec
import pytest

from api.intake import PurchaseIntake
from core.codes import derived_id
from core.principal import Principal, PrincipalKind, system
from core.programs import read_program
from ledger import Ledger
from rewards.errors import LedgerRefused
from rewards.purchases import PurchaseEvent, PurchaseOutcome
from tests.api.conftest import PROBLEMS, Client, open_program, purchase

MEMBERS = ["p-1", "p-2", "p-3"]

OPERATOR = Principal(kind=PrincipalKind.OPERATOR, actor="test", scopes=frozenset({"*"}))


async def test_concurrent_purchases_each_get_their_answer(
    client: Client, program: str, pool: asyncpg.Pool
) -> None:
    for rank, (code, threshold) in enumerate((("blue", 0), ("silver", 10_000)), start=1):
        tier = {"code": code, "name": code, "rank": rank, "threshold": threshold}
        assert (await client.post(f"/programs/{program}/tiers", json=tier)).status_code == 201
    threshold = {"code": "spend-5k", "amount_minor": 5_000, "bonus_points": 500}
    assert (await client.post(f"/programs/{program}/thresholds", json=threshold)).status_code == 201
    for member in MEMBERS:
        await client.post(f"/programs/{program}/members", json={"external_id": member})

    bodies = [purchase(f"{m}-{n}", 1_000, member=m) for m in MEMBERS for n in range(10)]
    bodies += [bodies[0], bodies[11]]  # sent twice at the same time
    bodies.append(purchase("U-1", 1_000, member="nobody"))
    bodies.append(purchase("C-1", 1_000, member="p-1", currency="USD"))
    responses = await asyncio.gather(
        *(client.post(f"/programs/{program}/purchases", json=body) for body in bodies)
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 30, 200: 2, 404: 1, 422: 1}, [r.text for r in responses]
    assert responses[-2].json()["type"] == PROBLEMS + "not-found"
    assert responses[-1].json()["type"] == PROBLEMS + "invalid-purchase"
    assert {r.json()["points"] for r in responses if r.status_code in (200, 201)} == {10}

    conflict = await client.post(
        f"/programs/{program}/purchases", json={**bodies[0], "amount_minor": 5}
    )
    assert conflict.status_code == 409
    for member in MEMBERS:
        view = (await client.get(f"/programs/{program}/members/{member}")).json()
        # 10 purchases of 1,000: 100 points and one threshold reward of 500,
        # both held until the return window ends; silver at exactly 10,000.
        assert (view["balance"]["pending"], view["balance"]["available"]) == (600, 0), view
    tiers = await pool.fetch(
        "SELECT m.tier_code FROM members m JOIN programs g ON g.id = m.program_id"
        " WHERE g.slug = $1",
        program,
    )
    assert [t["tier_code"] for t in tiers] == ["silver"] * len(MEMBERS)
    audited = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'purchase.record' AND subject LIKE $1",
        f"program:{program}:%",
    )
    assert audited == 30


async def test_one_failing_event_does_not_fail_its_batch(
    client: Client, program: str, pool: asyncpg.Pool, ledger: Ledger
) -> None:
    other = await open_program(client)
    for slug in (program, other):
        for member in MEMBERS:
            await client.post(f"/programs/{slug}/members", json={"external_id": member})
    good = await read_program(pool, system("test"), program)
    broken = await read_program(pool, system("test"), other)
    broken.issuance_account_id = uuid.uuid4()  # the ledger will refuse its earnings
    intake = PurchaseIntake(pool, ledger, max_in_flight=1)
    caller = OPERATOR

    def event(order: str, member: str) -> PurchaseEvent:
        return msgspec.convert(purchase(order, 2_000, member=member), PurchaseEvent)

    try:
        answers: list[Any] = await asyncio.gather(
            intake.record(good, event("G-1", "p-1"), caller),
            intake.record(broken, event("B-1", "p-2"), caller),
            intake.record(good, event("G-2", "p-3"), caller),
            return_exceptions=True,
        )
    finally:
        await intake.close()
    assert isinstance(answers[0], PurchaseOutcome) and answers[0].points == 20
    assert isinstance(answers[1], LedgerRefused)
    assert isinstance(answers[2], PurchaseOutcome) and answers[2].points == 20
    recorded = await pool.fetch(
        "SELECT order_id FROM purchases p JOIN programs g ON g.id = p.program_id"
        " WHERE g.slug = $1 ORDER BY order_id",
        program,
    )
    assert [r["order_id"] for r in recorded] == ["G-1", "G-2"]
    audited = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'purchase.record' AND subject LIKE $1",
        f"program:{program}:%",
    )
    assert audited == 2


async def test_a_batch_commits_whole_or_not_at_all(
    client: Client,
    program: str,
    pool: asyncpg.Pool,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await client.post(f"/programs/{program}/members", json={"external_id": "p-1"})
    shop = await read_program(pool, system("test"), program)

    post_within = ledger.create_transfers_within

    async def failing_after_the_ledger(*args: Any) -> Any:
        # The ledger call is the batch's last statement before its commit.
        await post_within(*args)
        raise RuntimeError("the connection broke before the commit")

    monkeypatch.setattr(ledger, "create_transfers_within", failing_after_the_ledger)
    intake = PurchaseIntake(pool, ledger)
    event = msgspec.convert(purchase("A-1", 2_000, member="p-1"), PurchaseEvent)
    try:
        with pytest.raises(RuntimeError):
            await intake.record(shop, event, OPERATOR)
    finally:
        await intake.close()
    # The ledger's pending earning was written in the same transaction as
    # the purchase: it rolled back with it.
    assert await ledger.lookup_transfers([derived_id(shop.id, "earn", "A-1")]) == []
    recorded = await pool.fetchval(
        "SELECT count(*) FROM purchases WHERE program_id = $1 AND order_id = 'A-1'", shop.id
    )
    assert recorded == 0
    audited = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE subject = $1", f"program:{program}:order:A-1"
    )
    assert audited == 0


async def test_good_purchases_beside_data_the_database_refuses(
    client: Client, program: str, pool: asyncpg.Pool, ledger: Ledger
) -> None:
    members = [f"q-{n}" for n in range(20)]
    for member in members:
        await client.post(f"/programs/{program}/members", json={"external_id": member})
    shop = await read_program(pool, system("test"), program)
    intake = PurchaseIntake(pool, ledger, max_in_flight=1)
    caller = OPERATOR
    good = [
        msgspec.convert(purchase(f"OK-{m}-{n}", 1_000, member=m), PurchaseEvent)
        for m in members
        for n in range(3)
    ]
    # Made in code, past the edge's validation: text PostgreSQL cannot hold.
    bad = [
        msgspec.structs.replace(good[0], order_id="NUL-\u0000"),
        msgspec.structs.replace(good[1], order_id="NUL-2-\u0000", amount_minor=2**63),
    ]
    events = good[:25] + bad[:1] + good[25:] + bad[1:]
    try:
        answers: list[Any] = await asyncio.gather(
            *(intake.record(shop, event, caller) for event in events), return_exceptions=True
        )
    finally:
        await intake.close()
    by_order = {e.order_id: a for e, a in zip(events, answers, strict=True)}
    assert all(isinstance(by_order[e.order_id], PurchaseOutcome) for e in good), answers
    assert all(isinstance(by_order[e.order_id], Exception) for e in bad)
    recorded = await pool.fetchval("SELECT count(*) FROM purchases WHERE program_id = $1", shop.id)
    assert recorded == len(good)
