"""The operator's saved segments under ``/programs/{slug}/segments``: save,
read, change and delete them, count their members and export them (CSV or
Parquet, streamed from a server-side cursor). Each handler parses, calls
one use case (``partners.segments``) and renders."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import JSONBody, PathParameter, QueryParameter
from litestar.response import Stream
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_DELETE, OPERATOR_READ, OPERATOR_WRITE
from api.routes.pagination import LIST_READ, Cursor, Limit
from api.routes.paths import path_program
from core.exports import MEDIA_TYPES, ExportFormat, export_chunks
from core.models import Program
from core.pagination import PAGE_LIMIT_DEFAULT
from partners.segments.compiler import ResolvedSegment
from partners.segments.definition import (
    SegmentChange,
    SegmentCount,
    SegmentPage,
    SegmentSpec,
    SegmentView,
)
from partners.segments.members import (
    EXPORT_SCHEMA,
    count_members,
    export_rows,
    moment_of,
)
from partners.segments.saved import (
    change_segment,
    delete_segment,
    get_segment,
    list_segments,
    resolved_segment,
    save_segment,
)

SegmentNamePath = Annotated[
    str,
    PathParameter(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$", description="The saved segment's name."),
]
AsOfQuery = Annotated[
    str | None,
    QueryParameter(
        max_length=64,
        description="The moment (ISO 8601 with its offset, years 1900 to 9998) the segment"
        " is taken at; left out: now. Anything else: 422 invalid-segment.",
    ),
]
ExportFormatQuery = Annotated[
    Literal["csv", "parquet"],
    QueryParameter(name="format", description="`csv` (the default) or `parquet`."),
]
#: A read that compiles a saved definition: one that no longer holds (a tier
#: removed since) or a bad `as_of` is a 422.
SEGMENT_READ = (*OPERATOR_READ, 422)

SAVE_DESCRIPTION = (
    "Saves a segment under its name: every criterion given must hold (tier, recency,"
    " frequency and monetary value over `window_days`, RFM quintile scores, partner"
    " activity, cohort, a custom filter; docs/segments.md). Checked against the program"
    " first: 422 invalid-segment (a filter that does not parse, says where; a tier or"
    " partner the program does not have; a minimum above its maximum), nothing written."
    " The name taken: 409 already-exists."
)


@dataclass
class FileOperation(Operation):
    """An export's 200: a CSV or a Parquet file."""

    def __post_init__(self) -> None:
        answer = (self.responses or {}).get("200")
        if isinstance(answer, OpenAPIResponse):
            answer.content = {
                "text/csv": OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING)),
                MEDIA_TYPES[ExportFormat.PARQUET]: OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.STRING, format="binary")  # type: ignore[arg-type]
                ),
            }


async def _rows(
    engine: AsyncEngine, program: Program, resolved: ResolvedSegment, as_of: datetime
) -> AsyncIterator[Sequence[object]]:
    # A connection of its own: the request's session is done once the
    # answer starts, the cursor lives until the last row is sent.
    async with engine.connect() as connection, connection.begin():
        async for row in export_rows(connection, program, resolved, as_of):
            yield row


class SegmentController(Controller):
    path = "/programs/{slug:str}/segments"
    tags = ["segments"]
    guards = [require_scope("segments:write", reading="segments:read")]
    dependencies = {"program": Provide(path_program)}

    @post(
        "/",
        status_code=HTTPStatus.CREATED,
        summary="Save a segment of the program's members",
        description=SAVE_DESCRIPTION,
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def save(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        data: JSONBody[SegmentSpec],
    ) -> SegmentView:
        return await save_segment(db_session, program, data, principal=operator(request))

    @get(
        "/",
        summary="The program's saved segments, the oldest first",
        responses=problem_responses(*LIST_READ),
    )
    async def list_all(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        limit: Limit = PAGE_LIMIT_DEFAULT,
        cursor: Cursor = None,
    ) -> SegmentPage:
        page = await list_segments(
            db_session, program, principal=operator(request), limit=limit, cursor=cursor
        )
        return SegmentPage(items=page.items, next_cursor=page.next_cursor)

    @get("/{name:str}", summary="A saved segment", responses=problem_responses(*OPERATOR_READ))
    async def show(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        name: SegmentNamePath,
    ) -> SegmentView:
        return await get_segment(db_session, program, name, principal=operator(request))

    @put(
        "/{name:str}",
        summary="Change a saved segment",
        description="Its description, definition and offer to partners, checked as a new"
        " one is (422 invalid-segment, nothing written). Joint campaigns proposed on it keep"
        " the definition they were proposed with.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def change(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        name: SegmentNamePath,
        data: JSONBody[SegmentChange],
    ) -> SegmentView:
        return await change_segment(db_session, program, name, data, principal=operator(request))

    @delete(
        "/{name:str}",
        status_code=HTTPStatus.NO_CONTENT,
        summary="Delete a saved segment",
        description="Joint campaigns proposed on it keep their copy of its definition.",
        responses=problem_responses(*OPERATOR_DELETE),
    )
    async def remove(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        name: SegmentNamePath,
    ) -> None:
        await delete_segment(db_session, program, name, principal=operator(request))

    @get(
        "/{name:str}/count",
        summary="How many members a saved segment holds, as of a moment",
        description="One query. A definition that no longer holds against the program, or a"
        " bad `as_of`: 422 invalid-segment.",
        responses=problem_responses(*SEGMENT_READ),
    )
    async def count(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        name: SegmentNamePath,
        as_of: AsOfQuery = None,
    ) -> SegmentCount:
        moment = moment_of(as_of, datetime.now(UTC))
        resolved = await resolved_segment(db_session, program, name, principal=operator(request))
        members = await count_members(db_session, program, resolved, moment)
        return SegmentCount(segment=name, as_of=moment.isoformat(), members=members)

    @get(
        "/{name:str}/export",
        summary="A saved segment's members as a CSV or Parquet file",
        description="One row per member (member, status, tier, enrolled_on,"
        " days_since_last_purchase, purchases, spend_minor), in a stable order, streamed from"
        " a server-side cursor. No e-mail or phone: the member's id is enough to target them.",
        operation_class=FileOperation,
        responses=problem_responses(*SEGMENT_READ),
    )
    async def export(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        name: SegmentNamePath,
        as_of: AsOfQuery = None,
        format_: ExportFormatQuery = "csv",
    ) -> Stream:
        moment = moment_of(as_of, datetime.now(UTC))
        resolved = await resolved_segment(db_session, program, name, principal=operator(request))
        engine = db_session.bind
        assert isinstance(engine, AsyncEngine)
        export_format = ExportFormat(format_)
        return Stream(
            export_chunks(export_format, EXPORT_SCHEMA, _rows(engine, program, resolved, moment)),
            media_type=MEDIA_TYPES[export_format],
            headers={
                "Content-Disposition": f'attachment; filename="{program.slug}-{name}.{format_}"'
            },
        )
