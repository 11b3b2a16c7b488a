"""Idempotency keys under concurrency: every duplicate gets the first answer,
and a key reused for another request is a conflict of its own type."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from api.app import create_app
from api.settings import Settings
from core.principal import system
from ledger import Ledger
from rewards.programs import Enrolment, enrol_member
from rewards.redeeming import RewardSpec, add_reward
from rewards.rule_versions import draft_rules, publish_rules
from rewards.rules import EarnRules, EventRule
from tests.api.conftest import ADMIN_TOKEN, AUTH, assert_problem, fund
from tests.api.test_member_api import SECRET, bearer, token
from tests.conftest import NewProgram

DUPLICATES = 20
_keys = itertools.count(1)

#: For each keyed route: the request, and another body under the same key.
REQUESTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "redemption": ("/me/redemptions", {"sku": "MUG"}, {"sku": "MUG", "quantity": 2}),
    "gift": ("/me/gifts", {"to": "ben", "points": 30}, {"to": "ben", "points": 31}),
    "hold": (
        "/me/holds",
        {"order_ref": "ORD-1", "amount_minor": 50},
        {"order_ref": "ORD-2", "amount_minor": 50},
    ),
}

#: The shop's rules are in force from here; its events happen after.
RULES_FROM = datetime(2026, 1, 1, tzinfo=UTC)
VISIT = {"member": "ann", "event": "gym-visit", "occurred_at": "2026-06-01T10:00:00+00:00"}
#: For each operator route keyed by an id in the body (the event's, the
#: adjustment's): the path, the id's field, the request, another request
#: under the same id, and the points it moves once.
BY_ID: dict[str, tuple[str, str, dict[str, Any], dict[str, Any], int]] = {
    "event": ("/programs/{shop}/events", "event_id", VISIT, {**VISIT, "member": "ben"}, 50),
    "credit": (
        "/programs/{shop}/members/ann/adjustments",
        "adjustment_id",
        {"points": 25, "reason": "goodwill"},
        {"points": 26, "reason": "goodwill"},
        25,
    ),
    "debit": (
        "/programs/{shop}/members/ann/adjustments",
        "adjustment_id",
        {"points": -25, "reason": "correction"},
        {"points": -26, "reason": "correction"},
        -25,
    ),
}


@asynccontextmanager
async def serving(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The app served in the test's own task: Litestar's test client runs one
    request at a time, and these tests need them truly at once. (Not a
    fixture: the app's lifespan must end in the task that started it.)"""
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        member_jwt_secret=SECRET,
        member_rate_limit=10_000,
        sweep_interval=0,
    )
    app = create_app(settings, database_url=database_url)
    # Litestar's ASGI signature is narrower than httpx's type of an app.
    transport = httpx.ASGITransport(app=cast(Any, app))
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


@pytest.fixture
async def shop(session: AsyncSession, ledger: Ledger, new_program: NewProgram) -> str:
    """Ann holds 1,000 points; Ben can receive gifts; a mug costs 40; a gym
    visit earns 50, once a day."""
    program = await new_program()
    await add_reward(
        session,
        program,
        RewardSpec(sku="MUG", name="Mug", points_price=40),
        principal=system("test"),
    )
    events = {"gym-visit": EventRule(points=50, per_member_per_day=50)}
    rules = await draft_rules(
        session,
        program,
        EarnRules(points_per_unit=Decimal(1), events=events),
        principal=system("test"),
    )
    await publish_rules(
        session, program, rules.version, RULES_FROM, now=RULES_FROM, principal=system("test")
    )
    ann, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id="ann"), principal=system("test")
    )
    await enrol_member(
        session, ledger, program, Enrolment(external_id="ben"), principal=system("test")
    )
    await session.commit()
    await fund(ledger, program, ann, 1_000)
    return program.slug


@pytest.mark.parametrize("kind", sorted(REQUESTS))
async def test_concurrent_duplicates_all_get_the_first_answer(
    database_url: str, shop: str, kind: str
) -> None:
    async with serving(database_url) as client:
        await _duplicates_get_the_first_answer(client, shop, kind)


async def _duplicates_get_the_first_answer(
    keyed_client: httpx.AsyncClient, shop: str, kind: str
) -> None:
    path, body, other = REQUESTS[kind]
    headers = {**bearer(token(shop, "ann")), "Idempotency-Key": f"{kind}-{next(_keys)}"}
    replies = await asyncio.gather(
        *(keyed_client.post(path, json=body, headers=headers) for _ in range(DUPLICATES))
    )
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] * (DUPLICATES - 1) + [201], [r.text for r in replies]
    answers = [{**r.json(), "replayed": None} for r in replies]
    assert all(a == answers[0] for a in answers)
    assert [r.json()["replayed"] for r in replies].count(False) == 1

    spent = {"redemption": 40, "gift": 30, "hold": 50}[kind]
    balance = (await keyed_client.get("/me/balance", headers=headers)).json()
    assert balance["available"] == 1_000 - spent  # counted once

    reused = await keyed_client.post(path, json=other, headers=headers)
    assert_problem(reused, 409, "idempotency-key-reused")


@pytest.mark.parametrize("kind", sorted(BY_ID))
async def test_concurrent_duplicates_of_an_id_all_get_the_first_answer(
    database_url: str, shop: str, kind: str
) -> None:
    """Events and adjustments are keyed by the operator's id in the body: a
    duplicate sent at the same moment answers the first outcome, never a
    conflict of the race (a unique violation, a second grant)."""
    path, field, body, other, points = BY_ID[kind]
    path, key = path.format(shop=shop), f"{kind}-{next(_keys)}"
    async with serving(database_url) as client:
        replies = await asyncio.gather(
            *(client.post(path, json={**body, field: key}, headers=AUTH) for _ in range(DUPLICATES))
        )
        statuses = sorted(r.status_code for r in replies)
        assert statuses == [200] * (DUPLICATES - 1) + [201], [r.text for r in replies]
        answers = [{**r.json(), "replayed": None} for r in replies]
        assert all(a == answers[0] for a in answers)
        assert answers[0]["points"] == points
        member = (await client.get(f"/programs/{shop}/members/ann", headers=AUTH)).json()
        assert member["balance"]["available"] == 1_000 + points  # counted once

        # Another request under the id: the conflict of a business key
        # recorded with other fields (as a purchase's order id answers).
        reused = await client.post(path, json={**other, field: key}, headers=AUTH)
        assert_problem(reused, 409, "idempotency-conflict")


async def test_a_key_reused_at_once_with_another_body_is_a_conflict(
    database_url: str, shop: str
) -> None:
    """Two bodies under one key at the same moment: one is recorded, the
    other answers the key's conflict (never a race's, nor a ledger refusal)."""
    path, body, other = REQUESTS["gift"]
    headers = {**bearer(token(shop, "ann")), "Idempotency-Key": f"gift-{next(_keys)}"}
    async with serving(database_url) as client:
        replies = await asyncio.gather(
            *(client.post(path, json=body if n % 2 else other, headers=headers) for n in range(10))
        )
    created = [r for r in replies if r.status_code == 201]
    assert len(created) == 1, [r.text for r in replies]
    for reply in replies:
        if reply.status_code == 409:
            assert_problem(reply, 409, "idempotency-key-reused")
        else:
            assert reply.status_code in (200, 201), reply.text
            assert reply.json()["points"] == created[0].json()["points"]


@pytest.mark.parametrize("kind", sorted(BY_ID))
async def test_an_id_reused_at_once_with_another_body_is_a_conflict(
    database_url: str, shop: str, kind: str
) -> None:
    """Two requests under one id at the same moment (for an event, of two
    members): one is recorded, the other answers the id's conflict, never a
    ledger refusal."""
    path, field, body, other, _ = BY_ID[kind]
    path, key = path.format(shop=shop), f"{kind}-{next(_keys)}"
    async with serving(database_url) as client:
        replies = await asyncio.gather(
            *(
                client.post(path, json={**(body if n % 2 else other), field: key}, headers=AUTH)
                for n in range(10)
            )
        )
    [created] = [r for r in replies if r.status_code == 201]
    for reply in replies:
        if reply.status_code == 409:
            assert_problem(reply, 409, "idempotency-conflict")
        else:
            assert reply.status_code in (200, 201), reply.text
            assert {**reply.json(), "replayed": False} == created.json()


async def test_concurrent_opens_of_one_program(database_url: str) -> None:
    slug = f"at-once-{uuid.uuid4().hex[:12]}"
    spec = {"slug": slug, "name": "At once", "currency": "ZAR", "point_value_minor": "1"}
    async with serving(database_url) as client:
        replies = await asyncio.gather(
            *(client.post("/programs", json=spec, headers=AUTH) for _ in range(8))
        )
    assert sorted(r.status_code for r in replies) == [200] * 7 + [201], [r.text for r in replies]
    assert len({r.json()["ledger_id"] for r in replies}) == 1
