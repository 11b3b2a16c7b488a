"""Revenue deferral (IFRS 15) and the journal, the operator's routes under
``/programs/{slug}/finance``: the program's revenue settings, its
allocations, breakage estimates and recognition runs
(``finance.revenue``), and a period's journal streamed as CSV or Parquet
(``finance.journal``). Reads take ``finance:read``, the rest ``finance:write``."""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal, TypeAlias

import asyncpg
from litestar import Controller, Litestar, Request, Response, get, post, put
from litestar.background_tasks import BackgroundTask, BackgroundTasks
from litestar.datastructures import Cookie
from litestar.di import NamedDependency, Provide
from litestar.enums import MediaType
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse
from litestar.types import Receive, Scope, Send, TypeEncodersMap
from litestar.utils.helpers import get_enum_string_value
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_READ, OPERATOR_WRITE, created_or_replayed, replayed
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_program
from core.exports import MEDIA_TYPES, ExportFormat
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT
from finance.journal import JournalProgram, export_journal
from finance.revenue.reads import breakage_estimates, list_allocations, recognition_run
from finance.revenue.runs import recognise_period
from finance.revenue.schemas import (
    PERIOD_PATTERN,
    BreakageEstimateView,
    RevenueAllocationPage,
    RevenueRunRequest,
    RevenueRunView,
    RevenueSettingsBody,
    RevenueSettingsView,
    period_start,
)
from finance.revenue.settings import revenue_settings, store_revenue_settings

#: Opens the journal's chunks for as long as its answer is being sent.
JournalChunks: TypeAlias = Callable[[], AbstractAsyncContextManager[AsyncIterator[bytes]]]

GUARD = require_scope("finance:write", reading="finance:read")

PeriodQuery = Annotated[
    str,
    QueryParameter(pattern=PERIOD_PATTERN, description="The month, YYYY-MM (1900-01 to 9998-12)."),
]
OptionalPeriodQuery = Annotated[
    str | None,
    QueryParameter(
        pattern=PERIOD_PATTERN,
        description="Only this month (YYYY-MM); left out: every period.",
    ),
]
JournalFormat = Annotated[
    Literal["csv", "parquet"],
    QueryParameter(name="format", description="`csv` (the default) or `parquet`."),
]

RUN_DESCRIPTION = (
    "Recognise a period that has ended (in the program's time zone), once: re-estimate the"
    " breakage of every cohort from the program's redemption curves (chain ladder), allocate"
    " the sales whose points were posted and the partner fees billed before the period's end"
    " (relative stand-alone selling prices; allocations are never changed later), and"
    " recognise each cohort's deferral in proportion to its points redeemed over those"
    " expected, with a cumulative catch-up (a period's revenue can be negative). Audited."
    " The same period again answers the stored run (200) and writes nothing. 422"
    " revenue-period-not-ended; 409 revenue-later-period-recognised (periods run in order);"
    " 409 exchange-rate-missing when a partner fee billed in another currency has no rate in"
    " force on its statement's issue day (`/finance/exchange-rates`)."
)
JOURNAL_DESCRIPTION = (
    "The period's journal as the general ledger takes it, streamed: one row per line, with"
    " its journal (a stable id from program, period, source and category; accounting date the"
    " period's last day), GL account, side, currency and amount in minor units, functional"
    " amount, exchange rate and its date, memo, and what is behind it: the ledger transfer id"
    " of a money ledger line, a drill-down reference of an aggregated revenue line. Journals:"
    " the revenue run's deferral and recognition (nothing before the period is recognised)"
    " and every posted movement of the program's money ledgers. Lines in another currency"
    " than the program's are converted with the exchange rate in force on the accounting date"
    " (`/finance/exchange-rates`; half to even to the minor unit); 409 exchange-rate-missing"
    " when a currency has none. Every journal balances; the same period gives the same bytes."
)


@dataclass
class JournalOperation(Operation):
    """The journal's 200: a CSV or a Parquet file."""

    def __post_init__(self) -> None:
        answer = (self.responses or {}).get("200")
        if isinstance(answer, OpenAPIResponse):
            answer.content = {
                "text/csv": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING)),
                MEDIA_TYPES[ExportFormat.PARQUET]: OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING, format="binary")  # type: ignore[arg-type]
                ),
            }


def _period(text: str) -> date:
    return period_start(text)


@asynccontextmanager
async def _journal_chunks(
    pool: asyncpg.Pool, program: JournalProgram, period: date, export_format: ExportFormat
) -> AsyncIterator[AsyncIterator[bytes]]:
    """The journal's chunks from a connection of ``pool`` held for exactly
    this context. The first is read on entering: what refuses an export (a
    missing exchange rate) raises here, before the answer starts, and
    answers a problem instead of a cut stream."""
    async with (
        pool.acquire() as connection,
        contextlib.aclosing(export_journal(connection, program, period, export_format)) as chunks,
    ):
        first = await anext(chunks)

        async def body() -> AsyncGenerator[bytes, None]:
            yield first
            async for chunk in chunks:
                yield chunk

        async with contextlib.aclosing(body()) as streamed:
            yield streamed


class _JournalAnswer(ASGIStreamingResponse):
    """Takes the journal's connection when it is sent and gives it back
    when sending ends, whichever way (done, the client gone, cancelled): an
    answer never sent holds none, whoever keeps it or its failure."""

    __slots__ = ("_chunks",)

    def __init__(self, *, chunks: JournalChunks, **kwargs: Any) -> None:
        super().__init__(iterator=(), **kwargs)
        self._chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self._chunks() as chunks:
            self.iterator = chunks
            await super().__call__(scope, receive, send)


class JournalStream(Stream):
    """A ``Stream`` of the journal's chunks, opened by ``_JournalAnswer``."""

    __slots__ = ("_chunks",)

    def __init__(self, chunks: JournalChunks, **kwargs: Any) -> None:
        super().__init__((), **kwargs)
        self._chunks = chunks

    def to_asgi_response(
        self,
        app: Litestar | None,
        request: Request[Any, Any, Any],
        *,
        background: BackgroundTask | BackgroundTasks | None = None,
        cookies: Iterable[Cookie] | None = None,
        encoded_headers: Iterable[tuple[bytes, bytes]] | None = None,
        headers: dict[str, str] | None = None,
        is_head_response: bool = False,
        media_type: MediaType | str | None = None,
        status_code: int | None = None,
        type_encoders: TypeEncodersMap | None = None,
    ) -> ASGIResponse:
        # As Stream.to_asgi_response, with the answer that opens the chunks.
        return _JournalAnswer(
            chunks=self._chunks,
            background=self.background or background,
            content_length=0,
            cookies=self.cookies if cookies is None else itertools.chain(self.cookies, cookies),
            encoded_headers=encoded_headers,
            encoding=self.encoding,
            headers=self.headers if headers is None else {**headers, **self.headers},
            is_head_response=is_head_response,
            media_type=get_enum_string_value(media_type or self.media_type or MediaType.JSON),
            status_code=self.status_code or status_code,
        )


class FinanceRevenueController(Controller):
    path = "/programs/{slug:str}/finance"
    tags = ["finance"]
    guards = [GUARD]
    dependencies = {"program": Provide(path_program)}

    @get(
        "/revenue/settings",
        summary="The program's revenue settings (the defaults until some are stored)",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show_settings(
        self, db_session: NamedDependency[AsyncSession], program: NamedDependency[Program]
    ) -> RevenueSettingsView:
        return (await revenue_settings(db_session, program)).view()

    @put(
        "/revenue/settings",
        summary="Store the program's revenue settings",
        description="All of them (a field left out takes its default). They apply to the runs"
        " after: allocations already made keep the policy they were made with. Audited; the"
        " same settings again write nothing.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def store_settings(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[RevenueSettingsBody],
    ) -> RevenueSettingsView:
        stored = await store_revenue_settings(
            db_session, program, data, principal=operator(request)
        )
        return stored.view()

    @get(
        "/revenue/allocations",
        summary="The sales and partner fees allocated, newest first",
        responses=problem_responses(*LIST_READ),
    )
    async def allocations(
        self,
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
        period: OptionalPeriodQuery = None,
    ) -> RevenueAllocationPage:
        return await list_allocations(
            db_session,
            program,
            limit=limit,
            cursor=cursor,
            period=_period(period) if period is not None else None,
        )

    @get(
        "/revenue/breakage-estimates",
        summary="The breakage estimates of a period, per cohort, with their inputs",
        description="Each cohort's expected redemption rate as of the period's end, with its"
        " method (mature, chain_ladder or default), the points issued, redeemed and expired"
        " to date and the development factors applied. Without `period`: the latest estimated.",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def estimates(
        self,
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        period: OptionalPeriodQuery = None,
    ) -> list[BreakageEstimateView]:
        return await breakage_estimates(
            db_session, program, _period(period) if period is not None else None
        )

    @post(
        "/revenue/recognitions",
        status_code=HTTPStatus.CREATED,
        summary="Recognise a period's revenue (allocate, re-estimate, recognise)",
        description=RUN_DESCRIPTION,
        responses={**problem_responses(*OPERATOR_WRITE), **replayed(RevenueRunView, "run")},
    )
    async def recognise(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[RevenueRunRequest],
    ) -> Response[RevenueRunView]:
        run = await recognise_period(
            db_session,
            program,
            _period(data.period),
            datetime.now(UTC),
            principal=operator(request),
            preview=data.preview,
        )
        if run.preview:
            return Response(run, status_code=HTTPStatus.OK)
        return created_or_replayed(run)

    @get(
        "/revenue/recognitions/{period:str}",
        summary="A period's recognition run, per cohort and element",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def recognition(
        self,
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        period: Annotated[
            str,
            PathParameter(pattern=PERIOD_PATTERN, description="The month recognised, YYYY-MM."),
        ],
    ) -> RevenueRunView:
        return await recognition_run(db_session, program, _period(period))

    @get(
        "/journal",
        summary="The period's journal, streamed as CSV or Parquet",
        description=JOURNAL_DESCRIPTION,
        operation_class=JournalOperation,
        responses=problem_responses(*OPERATOR_READ, HTTPStatus.CONFLICT),
    )
    async def journal(
        self,
        request: Request[Any, Any, Any],
        program: NamedDependency[Program],
        period: PeriodQuery,
        format_: JournalFormat = "csv",
    ) -> Stream:
        export_format = ExportFormat(format_)
        facts = JournalProgram(program.id, program.slug, program.currency, program.time_zone)
        pool: asyncpg.Pool = request.app.state.pool
        return JournalStream(
            functools.partial(_journal_chunks, pool, facts, _period(period), export_format),
            media_type=MEDIA_TYPES[export_format],
            headers={
                "Content-Disposition": f'attachment; filename="journal-{program.slug}-{period}.'
                f'{export_format.value}"'
            },
        )
