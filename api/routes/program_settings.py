"""A program's settings over HTTP: read them, change them later than the
open (``rewards.program_settings``, which audits each change and says what
a change affects: later evaluations only, never what was posted before)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get, patch
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_READ, OPERATOR_WRITE
from core.programs import get_program
from rewards.program_settings import ProgramSettings, SettingsChange, change_settings
from rewards.programs import SLUG_PATTERN

SlugPath = Annotated[str, PathParameter(pattern=SLUG_PATTERN, description="The program's slug.")]


class ProgramSettingsController(Controller):
    path = "/programs"
    tags = ["programs"]

    @get(
        "/{slug:str}/settings",
        guards=[require_scope("programs:read")],
        summary="A program's settings",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show_settings(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        slug: SlugPath,
    ) -> ProgramSettings:
        return ProgramSettings.of(await get_program(db_session, operator(request), slug))

    @patch(
        "/{slug:str}/settings",
        guards=[require_scope("programs:write")],
        summary="Change a program's settings",
        description="Sets each setting the body gives and keeps the others; answers them"
        " all. A change applies to what is evaluated after it (purchases recorded, gifts"
        " given, windows, days and months counted, tiers evaluated from then on), never"
        " to points already earned, settled, given or expired. `started_at` can move only"
        " while no rule version is published (409 program-start-fixed). Audited.",
        responses=problem_responses(*OPERATOR_WRITE),
    )
    async def change_settings(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        slug: SlugPath,
        data: JSONBody[SettingsChange],
    ) -> ProgramSettings:
        principal = operator(request)
        program = await get_program(db_session, principal, slug)
        return await change_settings(db_session, program, data, principal=principal)
