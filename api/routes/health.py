"""Liveness of the service and its database."""

from __future__ import annotations

import logging
from http import HTTPStatus

from litestar import get
from litestar.di import NamedDependency

from api.problems import problem, problem_responses
from api.schemas import Health
from ledger import Ledger

log = logging.getLogger(__name__)


@get(
    "/health",
    summary="Health of the service",
    description="200 when the service can reach its database.",
    tags=["operations"],
    responses=problem_responses(HTTPStatus.SERVICE_UNAVAILABLE),
)
async def health(ledger: NamedDependency[Ledger]) -> Health:
    try:
        await ledger.pool.fetchval("SELECT 1")
    except Exception as error:  # any failure means the database is not there for us
        log.warning("health check failed: %s", error)
        raise problem(
            HTTPStatus.SERVICE_UNAVAILABLE, "database-unavailable", "the database does not answer"
        ) from None
    return Health()
