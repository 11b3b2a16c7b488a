"""Liveness of the service and its database."""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus

import asyncpg
from litestar import get
from litestar.datastructures import State
from litestar.di import NamedDependency

from api.problems import database_unavailable, problem_responses
from api.schemas import Health
from ledger import Ledger

log = logging.getLogger(__name__)

#: Seconds the database has to answer the health check.
HEALTH_TIMEOUT = 2.0


@get(
    "/health",
    summary="Health of the service",
    description="200 when the service can reach its database on both its pools.",
    tags=["operations"],
    responses=problem_responses(HTTPStatus.SERVICE_UNAVAILABLE),
)
async def health(state: State, ledger: NamedDependency[Ledger]) -> Health:
    # The app's pool serves keys, programs and the intake; the ledger's its
    # writer and reads: either one exhausted or cut off fails the service.
    pool: asyncpg.Pool = state.pool
    try:
        # Bounded: a frozen database must make the check fail fast, not hang.
        async with asyncio.timeout(HEALTH_TIMEOUT):
            await pool.fetchval("SELECT 1")
            await ledger.pool.fetchval("SELECT 1")
    except Exception as error:  # any failure means the database is not there for us
        log.warning("health check failed: %r", error)
        raise database_unavailable("the database does not answer") from None
    return Health()
