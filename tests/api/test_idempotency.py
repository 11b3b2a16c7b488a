"""Idempotency keys under concurrency: every duplicate gets the first answer,
and a key reused for another request is a conflict of its own type."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from api.app import create_app
from api.settings import Settings
from ledger import Ledger
from rewards.programs import Enrolment, enrol_member
from rewards.redeeming import RewardSpec, add_reward
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
    """Ann holds 1,000 points; Ben can receive gifts; a mug costs 40."""
    program = await new_program()
    await add_reward(session, program, RewardSpec(sku="MUG", name="Mug", points_price=40))
    ann, _ = await enrol_member(session, ledger, program, Enrolment(external_id="ann"))
    await enrol_member(session, ledger, program, Enrolment(external_id="ben"))
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


async def test_concurrent_opens_of_one_program(database_url: str) -> None:
    slug = f"at-once-{uuid.uuid4().hex[:12]}"
    spec = {"slug": slug, "name": "At once", "currency": "ZAR", "point_value_minor": "1"}
    async with serving(database_url) as client:
        replies = await asyncio.gather(
            *(client.post("/programs", json=spec, headers=AUTH) for _ in range(8))
        )
    assert sorted(r.status_code for r in replies) == [200] * 7 + [201], [r.text for r in replies]
    assert len({r.json()["ledger_id"] for r in replies}) == 1
