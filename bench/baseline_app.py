"""Bare baseline endpoints for ``bench/member_api.py``: the same server
(Granian), the same database and driver, no auth, no domain logic.

    GET  /read/{id}   one row by primary key
    POST /write/{id}  insert one row and update one row, in one transaction
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from litestar import Litestar, get, post
from litestar.datastructures import State


@asynccontextmanager
async def _pool(app: Litestar) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=2, max_size=10)
    try:
        yield
    finally:
        await app.state.pool.close()


@get("/read/{row_id:int}")
async def read(row_id: int, state: State) -> dict[str, int]:
    value = await state.pool.fetchval("SELECT v FROM bench_rows WHERE id = $1", row_id)
    return {"id": row_id, "v": value}


@post("/write/{row_id:int}", status_code=201)
async def write(row_id: int, state: State) -> dict[str, int]:
    async with state.pool.acquire() as connection, connection.transaction():
        await connection.execute("INSERT INTO bench_log (row_id) VALUES ($1)", row_id)
        await connection.execute("UPDATE bench_rows SET v = v + 1 WHERE id = $1", row_id)
    return {"id": row_id}


def create_app() -> Litestar:
    return Litestar(route_handlers=[read, write], lifespan=[_pool])
