"""The program of a ``/programs/{slug}`` path: its parameter, bounded like
the column it is looked up in, and the dependency that looks it up for the
caller (every controller under the path provides ``program`` with it)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request
from litestar.di import NamedDependency
from litestar.params import PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator
from core.models import Program
from core.programs import get_program
from rewards.programs import SLUG_PATTERN

SlugPath = Annotated[str, PathParameter(pattern=SLUG_PATTERN, description="The program's slug.")]


async def path_program(
    request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession], slug: SlugPath
) -> Program:
    """The program of the path, looked up within the caller's tenant: one
    outside it is not found, exactly as a missing one."""
    return await get_program(db_session, operator(request), slug)
