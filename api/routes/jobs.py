"""Run a registered job once, now, on demand (the worker runs the same jobs
on its schedule). Each run is audited under the operator who asked.

Jobs run over every program, so a key bound to one program may not run
them (403, see ``api.access.platform_only``)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import PathParameter
from sqlalchemy.exc import StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.access import operator, platform_only, require_scope
from api.modules import JOBS, UnknownJob, job
from api.problems import MEDIA_TYPE, Problem, from_database_error, problem, problem_responses
from api.routes import JOB_RUN
from core import audit
from core.modules import JobContext
from ledger import Ledger
from ledger.errors import LedgerUnavailable

log = logging.getLogger(__name__)

_DATABASE_ERRORS = (
    StatementError,
    PoolTimeout,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
)

JobNamePath = Annotated[
    str,
    PathParameter(
        description="The job's name (`coalition jobs list`): "
        + " ".join(f"`{name}`: {each.summary}" for name, each in sorted(JOBS.items())),
        max_length=100,
    ),
]


class JobRun(msgspec.Struct, kw_only=True, frozen=True):
    job: Annotated[str, msgspec.Meta(description="The job's name.")]
    done: Annotated[
        int,
        msgspec.Meta(
            description="How many things the run did (earnings settled, transfers voided,"
            " events handed on...): 0 when nothing was due."
        ),
    ]
    ran_at: Annotated[datetime, msgspec.Meta(description="The clock the run read what was due by.")]


class JobController(Controller):
    path = "/jobs"
    tags = ["operations"]

    @post(
        "/{name:str}/runs",
        guards=[require_scope("jobs:run"), platform_only],
        summary="Run a job once, now",
        description="Runs the job as the worker would, by the server's clock, and answers"
        " how many things it did. Jobs are safe to run at any time and more than once:"
        " each run does what is due, and nothing twice. A job runs over every program:"
        " a key bound to one program is refused (403).",
        status_code=HTTPStatus.OK,
        responses={
            **problem_responses(*JOB_RUN),
            HTTPStatus.INTERNAL_SERVER_ERROR: ResponseSpec(
                data_container=Problem,
                media_type=MEDIA_TYPE,
                description="The job failed: job-failed. What it did before it failed stays"
                " done, and running it again is safe; the server's log has the cause.",
                generate_examples=False,
            ),
        },
    )
    async def run_job(
        self,
        request: Request[Any, Any, Any],
        name: JobNamePath,
        db_engine: NamedDependency[AsyncEngine],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
    ) -> JobRun:
        try:
            found = job(name)
        except UnknownJob as error:
            raise problem(HTTPStatus.NOT_FOUND, "not-found", str(error)) from None
        # The job's units commit on sessions of their own, as in the worker;
        # the request's session holds only the audit line.
        context = JobContext(
            sessions=async_sessionmaker(db_engine, expire_on_commit=False),
            ledger=ledger,
            now=datetime.now(UTC),
        )
        try:
            done = await found.run(context)
        except LedgerUnavailable:
            raise
        except Exception as error:
            if isinstance(error, _DATABASE_ERRORS):
                answer = from_database_error(error)
                # The database unreachable, or contention: the same run can succeed later.
                if answer.status_code in (HTTPStatus.CONFLICT, HTTPStatus.SERVICE_UNAVAILABLE):
                    raise answer from error
            log.error("job %s failed", name, exc_info=error)
            raise problem(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "job-failed",
                f"the job {name} failed; what it did before stays done, and running it"
                " again is safe",
            ) from None
        principal = operator(request)
        await audit.record(
            db_session, principal, "job.run", f"job:{name}", {"done": done, "ran_at": context.now}
        )
        return JobRun(job=name, done=done, ran_at=context.now)
