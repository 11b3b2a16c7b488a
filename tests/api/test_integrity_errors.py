"""A unique violation answers what its constraint means: a taken field is
409 already-exists naming the field, with no promise that a retry helps; a
lost race on a key looked up first is 409 concurrent-change with
Retry-After."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from sqlalchemy.exc import IntegrityError

from api.modules import CONSTRAINTS
from api.problems import from_database_error
from tests.api.conftest import Client, assert_problem

#: Tables that are not a domain module's: the ledger's own (it answers its
#: violations itself), the operator keys' (random prefixes), Alembic's and
#: the outbox tests'.
NOT_DOMAIN_TABLES = {
    "accounts",
    "alembic_version",
    "api_keys",
    "ledgers",
    "outbox_test_effects",
    "pending_expiries",
    "transfer_rejections",
    "transfers",
}


def assert_taken(response: Any, field: str) -> None:
    body = assert_problem(response, 409, "already-exists")
    assert body["field"] == field
    assert "retry" not in body["detail"].lower()
    assert "retry-after" not in response.headers


async def test_a_second_reward_of_one_sku_is_already_exists(client: Client, program: str) -> None:
    reward = {"sku": "MUG", "name": "Mug", "points_price": 10}
    first = await client.post(f"/programs/{program}/rewards", json=reward)
    assert first.status_code == 201, first.text
    again = await client.post(f"/programs/{program}/rewards", json=reward | {"name": "Cup"})
    assert_taken(again, "sku")


async def test_a_taken_tier_code_or_rank_is_already_exists(client: Client, program: str) -> None:
    gold = {"code": "gold", "name": "Gold", "rank": 2, "threshold": 1000}
    first = await client.post(f"/programs/{program}/tiers", json=gold)
    assert first.status_code == 201, first.text
    same_code = await client.post(f"/programs/{program}/tiers", json=gold | {"rank": 3})
    assert_taken(same_code, "code")
    same_rank = await client.post(f"/programs/{program}/tiers", json=gold | {"code": "platinum"})
    assert_taken(same_rank, "rank")


async def test_a_taken_threshold_code_is_already_exists(client: Client, program: str) -> None:
    threshold = {"code": "big-spender", "amount_minor": 1000, "bonus_points": 50}
    first = await client.post(f"/programs/{program}/thresholds", json=threshold)
    assert first.status_code == 201, first.text
    again = await client.post(
        f"/programs/{program}/thresholds", json=threshold | {"bonus_points": 60}
    )
    assert_taken(again, "code")


def _violation(constraint: str) -> IntegrityError:
    cause = asyncpg.UniqueViolationError.new(
        {"C": "23505", "M": "duplicate key value", "n": constraint}
    )
    return IntegrityError("INSERT ...", {}, cause)


def test_a_lost_race_on_a_looked_up_key_is_concurrent_change() -> None:
    answer = from_database_error(_violation("uq_purchases_program_id"))
    assert answer.status_code == 409
    assert answer.type_ == "https://coalition.dev/problems/concurrent-change"
    assert answer.headers == {"Retry-After": "1"}


def test_an_undeclared_constraint_promises_no_retry() -> None:
    answer = from_database_error(_violation("uq_something_new"))
    assert answer.status_code == 409
    assert answer.type_ == "https://coalition.dev/problems/already-exists"
    assert not answer.headers
    assert "retry" not in (answer.detail or "").lower()


@pytest.mark.parametrize("constraint", sorted(CONSTRAINTS))
def test_every_declared_meaning_maps(constraint: str) -> None:
    answer = from_database_error(_violation(constraint))
    assert answer.status_code == 409
    retryable = CONSTRAINTS[constraint].retryable
    assert bool(answer.headers) == retryable
    assert ("retry" in (answer.detail or "").lower()) == retryable


async def test_every_unique_constraint_of_the_domains_is_declared(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            """SELECT c.relname AS table_name, i.relname AS name, x.indisprimary AS primary_key
            FROM pg_index x
            JOIN pg_class i ON i.oid = x.indexrelid
            JOIN pg_class c ON c.oid = x.indrelid
            WHERE x.indisunique AND c.relnamespace = 'public'::regnamespace"""
        )
    finally:
        await connection.close()
    undeclared = {
        r["name"]
        for r in rows
        # Primary keys of random ids (UUIDv7) cannot collide; those of ids
        # derived from a request are declared like any other key.
        if r["table_name"] not in NOT_DOMAIN_TABLES
        and not r["primary_key"]
        and r["name"] not in CONSTRAINTS
    }
    assert not undeclared
    declared_but_missing = set(CONSTRAINTS) - {r["name"] for r in rows}
    assert not declared_but_missing
