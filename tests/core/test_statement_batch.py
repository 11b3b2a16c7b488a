"""One-statement writes of concurrent callers share a transaction, in
submission order, and a statement refused for its own data fails alone."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from sqlalchemy import text

from core.statement_batch import StatementBatch

_SPEND = text("""
WITH spent AS (
    UPDATE probe.budget SET left_over = left_over - :amount
    WHERE name = :name AND left_over >= :amount
    RETURNING left_over
), noted AS (
    INSERT INTO probe.budget_notes (id, name, amount) SELECT :id, :name, :amount FROM spent
)
SELECT (SELECT left_over FROM spent) AS left_over
""")


@pytest.fixture
async def budget(pool: asyncpg.Pool) -> str:
    name = f"budget-{uuid.uuid4()}"
    await pool.execute(
        # A schema of its own: the schema drift test reads every table of public.
        """CREATE SCHEMA IF NOT EXISTS probe;
           CREATE TABLE IF NOT EXISTS probe.budget (name text PRIMARY KEY, left_over int);
           CREATE TABLE IF NOT EXISTS probe.budget_notes (
               id uuid PRIMARY KEY, name text, amount int CHECK (amount < 1000))"""
    )
    await pool.execute("INSERT INTO probe.budget VALUES ($1, 100)", name)
    return name


async def test_concurrent_writes_see_each_other_in_order_and_commit(
    pool: asyncpg.Pool, budget: str
) -> None:
    batch = StatementBatch(pool, name="probe")
    try:
        rows = await asyncio.gather(
            *(
                batch.fetch_one(_SPEND, {"amount": 30, "name": budget, "id": uuid.uuid4()})
                for _ in range(5)
            )
        )
    finally:
        await batch.close()
    # 100 buys three spends of 30; the fourth and fifth find 10 left.
    assert [row["left_over"] if row else None for row in rows] == [70, 40, 10, None, None]
    assert await pool.fetchval("SELECT left_over FROM probe.budget WHERE name = $1", budget) == 10
    notes = await pool.fetchval("SELECT count(*) FROM probe.budget_notes WHERE name = $1", budget)
    assert notes == 3


async def test_a_statement_refused_for_its_own_data_fails_alone(
    pool: asyncpg.Pool, budget: str
) -> None:
    batch = StatementBatch(pool, name="probe")
    amounts = [10, 20, 5000, 30]  # 5000 breaks the notes' CHECK, and would pass the budget
    await pool.execute("UPDATE probe.budget SET left_over = 10000 WHERE name = $1", budget)
    try:
        answers = await asyncio.gather(
            *(
                batch.fetch_one(_SPEND, {"amount": a, "name": budget, "id": uuid.uuid4()})
                for a in amounts
            ),
            return_exceptions=True,
        )
    finally:
        await batch.close()
    assert isinstance(answers[2], asyncpg.CheckViolationError)
    assert [a["left_over"] for a in answers if isinstance(a, dict)] == [9990, 9970, 9940]
    left = await pool.fetchval("SELECT left_over FROM probe.budget WHERE name = $1", budget)
    assert left == 9940
