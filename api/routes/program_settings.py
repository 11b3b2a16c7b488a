"""A program's settings over HTTP: read them, change them later than the
open (``rewards.program_settings``, which audits each change and says what
a change affects: later evaluations only, never what was posted before)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, patch
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator, require_scope
from api.problems import problem_responses
from api.routes import OPERATOR_READ, OPERATOR_WRITE
from api.routes.paths import path_program
from core.models import Program
from rewards.program_settings import ProgramSettings, SettingsChange, change_settings


class ProgramSettingsController(Controller):
    path = "/programs"
    tags = ["programs"]
    dependencies = {"program": Provide(path_program)}

    @get(
        "/{slug:str}/settings",
        guards=[require_scope("programs:read")],
        summary="A program's settings",
        responses=problem_responses(*OPERATOR_READ),
    )
    async def show_settings(self, program: NamedDependency[Program]) -> ProgramSettings:
        return ProgramSettings.of(program)

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
        program: NamedDependency[Program],
        data: JSONBody[SettingsChange],
    ) -> ProgramSettings:
        return await change_settings(db_session, program, data, principal=operator(request))
