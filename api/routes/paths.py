"""The program of a ``/programs/{slug}`` path, the member of a
``/programs/{slug}/members/{external_id}`` path and the partner firm of a
``/programs/{slug}/partners/{partner}`` path: their parameters, bounded like
the columns they are looked up in, and the dependencies that look them up
for the caller. Every controller under the paths provides ``program`` with
``path_program``, and ``firm`` with ``path_partner`` (not ``partner``:
Litestar refuses a dependency named like a path parameter):

    dependencies = {"program": Provide(path_program), "firm": Provide(path_partner)}
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request
from litestar.di import NamedDependency
from litestar.params import Parameter, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import operator
from core.members import get_member
from core.models import Member, Program
from core.programs import get_program
from ledger.bounds import NO_NUL
from partners.firms import get_partner
from partners.models import Partner
from rewards.programs import SLUG_PATTERN

SlugPath = Annotated[str, PathParameter(pattern=SLUG_PATTERN, description="The program's slug.")]


async def path_program(
    request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession], slug: SlugPath
) -> Program:
    """The program of the path, looked up within the caller's tenant: one
    outside it is not found, exactly as a missing one."""
    return await get_program(db_session, operator(request), slug)


ExternalIdPath = Annotated[
    str,
    Parameter(
        min_length=1, max_length=200, pattern=NO_NUL, description="The member's external id."
    ),
]


async def path_member(
    db_session: NamedDependency[AsyncSession],
    program: NamedDependency[Program],
    external_id: ExternalIdPath,
) -> Member:
    """The member of the path, in the program of the path."""
    return await get_member(db_session, program, external_id)


PartnerPath = Annotated[
    str, PathParameter(pattern=SLUG_PATTERN, description="The partner firm's slug.")
]


async def path_partner(
    request: Request[Any, Any, Any],
    db_session: NamedDependency[AsyncSession],
    program: NamedDependency[Program],
    partner: PartnerPath,
) -> Partner:
    """The partner firm of the path, in the program of the path, looked up
    within the caller's tenant: one outside it is not found (404 ``no
    partner 'x'``), exactly as a missing one."""
    return await get_partner(db_session, operator(request), program, partner)
