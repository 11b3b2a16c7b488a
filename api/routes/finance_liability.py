"""The point liability, its roll-forward and the trial balances, the
operator's reads under ``/programs/{slug}/finance`` (``finance.liability``,
``finance.rollforward``, ``finance.trial_balance``). Each answers JSON, or
with ``format=csv|parquet`` the same lines as a file streamed a chunk at a
time (``core.exports``). Dates are parsed by ``finance.report_dates``: a
malformed one answers 422 invalid-report-date, as the command line refuses it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import pyarrow as pa
from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, Schema
from litestar.params import QueryParameter
from litestar.response import Stream
from litestar.response.base import ASGIResponse
from sqlalchemy.ext.asyncio import AsyncSession

import finance.liability as liability_report
import finance.rollforward as rollforward_report
import finance.trial_balance as trial_balance_report
from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_READ
from api.routes.paths import path_program
from core.exports import MEDIA_TYPES, ExportFormat, export_chunks
from core.models import Program
from finance.liability import Liability, LiabilityBreakdown
from finance.report_dates import parse_day, parse_period
from finance.rollforward import RollForward
from finance.trial_balance import TrialBalance, TrialBalanceLedger
from ledger import Ledger
from rewards.programs import SLUG_PATTERN

#: A report's problems: a day or period that is not one (422) besides a read's.
REPORT_READ = (*OPERATOR_READ, 422)
_DATE_TEXT_MAX = 64

DayQuery = Annotated[
    str,
    QueryParameter(
        max_length=_DATE_TEXT_MAX,
        description="The accounting day (YYYY-MM-DD, in the ledger's time zone): as of its end."
        " Anything else: 422 invalid-report-date.",
    ),
]
Format = Annotated[
    Literal["json", "csv", "parquet"],
    QueryParameter(
        name="format",
        description="`json` (the default), or the lines as a `csv` or `parquet` file.",
    ),
]


@dataclass
class ExportableOperation(Operation):
    """An operation whose 200 is JSON or, by ``format``, a CSV or Parquet file:
    the document lists the three media types."""

    def __post_init__(self) -> None:
        answer = (self.responses or {}).get("200")
        content = getattr(answer, "content", None)
        if content is not None:
            content["text/csv"] = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
            content[MEDIA_TYPES[ExportFormat.PARQUET]] = OpenAPIMediaType(
                schema=Schema(type=OpenAPIType.STRING, format="binary")  # type: ignore[arg-type]
            )


class ExportStream(Stream):
    """A stream that answers its own media type: the handler's (JSON, from
    its return annotation) would otherwise take precedence."""

    def to_asgi_response(
        self, app: Any, request: Request[Any, Any, Any], **options: Any
    ) -> ASGIResponse:
        options["media_type"] = self.media_type
        return super().to_asgi_response(app, request, **options)


def _file(
    export_format: ExportFormat,
    schema: pa.Schema,
    rows: AsyncIterator[Sequence[Any]],
    name: str,
) -> Stream:
    return ExportStream(
        export_chunks(export_format, schema, rows),
        media_type=MEDIA_TYPES[export_format],
        headers={"Content-Disposition": f'attachment; filename="{name}.{export_format.value}"'},
    )


LIABILITY_DESCRIPTION = (
    "The points the program's members hold at the end of `as_of` (an accounting day of the"
    " ledger's time zone), from the ledger's daily aggregates of lots, by `by`: `partner` (who"
    " issued them), `cohort` (the month they were earned), `origin` (the kind of movement that"
    " created them), `tier` (the member's current tier: no tier history is kept) or the"
    " program as a whole; valued at the point value in force at the end of that day (the"
    " total rounded half to even, the lines sharing it by largest remainder). 422"
    " invalid-report-date for a day that is not YYYY-MM-DD."
)
ROLL_FORWARD_DESCRIPTION = (
    "Opening + earned + bonuses + bought + redeemed + expired + exchanged + transferred +"
    " adjustments = closing, one line per kind of movement (its signed change to the points"
    " members hold), for a calendar month (`period`, in the ledger's time zone) or any days"
    " (`first_day` and `last_day`, both included); tied to the ledger's own totals of the"
    " wallets, each difference shown. With `partner`, only the points that partner issued"
    " (no tie: the ledger does not know who issued what a wallet spends). 422"
    " invalid-report-date (a malformed period, both or neither of period and days, a first"
    " day after the last), 422 unknown-partner."
)
TRIAL_BALANCE_DESCRIPTION = (
    "Per account code of the program's points ledger (`ledger=points`) or of its money"
    " ledger in `currency` (`ledger=money`, the program's currency by default; no lines"
    " while no statement has used it): the debits and credits posted through the end of"
    " `as_of`, with their general ledger account where one is mapped. Debits equal credits"
    " (`balanced`). 422 invalid-report-date."
)


class FinanceLiabilityController(Controller):
    path = "/programs/{slug:str}/finance"
    tags = ["finance"]
    guards = [require_scope("finance:read")]
    dependencies = {"program": Provide(path_program)}

    @get(
        "/liability",
        summary="Outstanding points as of a day, valued, by partner, cohort, tier or origin",
        description=LIABILITY_DESCRIPTION,
        operation_class=ExportableOperation,
        responses=problem_responses(*REPORT_READ),
    )
    async def liability(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        as_of: DayQuery,
        by: Annotated[
            LiabilityBreakdown, QueryParameter(description="The breakdown of the lines.")
        ] = LiabilityBreakdown.PROGRAM,
        format_: Format = "json",
    ) -> Liability:
        day = parse_day("as_of", as_of)
        report = await liability_report.liability(
            db_session, program, day, by, principal=operator(request)
        )
        if format_ == "json":
            return report
        return _file(  # type: ignore[return-value]  # the same lines as a file
            ExportFormat(format_),
            liability_report.EXPORT_SCHEMA,
            liability_report.export_rows(report),
            f"liability-{program.slug}-{day.isoformat()}-{by.value}",
        )

    @get(
        "/roll-forward",
        summary="The roll-forward of the outstanding points over a period, tied to the ledger",
        description=ROLL_FORWARD_DESCRIPTION,
        operation_class=ExportableOperation,
        responses=problem_responses(*REPORT_READ),
    )
    async def roll_forward(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        program: NamedDependency[Program],
        period: Annotated[
            str | None,
            QueryParameter(
                max_length=_DATE_TEXT_MAX,
                description="A calendar month, YYYY-MM (or give first_day and last_day).",
            ),
        ] = None,
        first_day: Annotated[
            str | None,
            QueryParameter(
                max_length=_DATE_TEXT_MAX, description="The first day, YYYY-MM-DD (included)."
            ),
        ] = None,
        last_day: Annotated[
            str | None,
            QueryParameter(
                max_length=_DATE_TEXT_MAX, description="The last day, YYYY-MM-DD (included)."
            ),
        ] = None,
        partner: Annotated[
            str | None,
            QueryParameter(
                pattern=SLUG_PATTERN,
                description="A partner's slug: only the points it issued.",
            ),
        ] = None,
        format_: Format = "json",
    ) -> RollForward:
        days = parse_period(period, first_day, last_day)
        report = await rollforward_report.roll_forward(
            db_session, program, days, partner=partner, principal=operator(request)
        )
        if format_ == "json":
            return report
        return _file(  # type: ignore[return-value]  # the same lines as a file
            ExportFormat(format_),
            rollforward_report.EXPORT_SCHEMA,
            rollforward_report.export_rows(report),
            f"roll-forward-{program.slug}-{days.label.replace('..', '-')}",
        )

    @get(
        "/trial-balance",
        summary="The trial balance of the program's points or money ledger as of a day",
        description=TRIAL_BALANCE_DESCRIPTION,
        operation_class=ExportableOperation,
        responses=problem_responses(*REPORT_READ),
    )
    async def trial_balance(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        ledger: NamedDependency[Ledger],
        program: NamedDependency[Program],
        as_of: DayQuery,
        ledger_kind: Annotated[
            TrialBalanceLedger,
            QueryParameter(name="ledger", description="`points` or `money`."),
        ] = TrialBalanceLedger.POINTS,
        currency: Annotated[
            str | None,
            QueryParameter(
                pattern=r"^[A-Z]{3}$",
                description="With `ledger=money`: the money ledger's currency (ISO 4217);"
                " the program's by default.",
            ),
        ] = None,
        format_: Format = "json",
    ) -> TrialBalance:
        day = parse_day("as_of", as_of)
        report = await trial_balance_report.trial_balance(
            db_session,
            ledger,
            program,
            day,
            ledger_kind,
            currency=currency,
            principal=operator(request),
        )
        if format_ == "json":
            return report
        return _file(  # type: ignore[return-value]  # the same lines as a file
            ExportFormat(format_),
            trial_balance_report.EXPORT_SCHEMA,
            trial_balance_report.export_rows(report),
            f"trial-balance-{program.slug}-{ledger_kind.value}-{day.isoformat()}",
        )
