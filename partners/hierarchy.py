"""The rules of a partner group (a firm and its member companies): walks
up and down the tree, its depth bound, and the lock under which it changes.

A group lives within one program: a walk never leaves the program of the
firm it starts from.
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError, ErrorKind
from core.models import Program
from partners.firm_schemas import DEPTH_MAX
from partners.models import Partner


class PartnerHierarchyRefused(DomainError):
    """The parent named is not one this firm can be a member company of: not
    a partner of the program, offboarded, the firm itself or a company
    below it (a cycle), or one that would make the group too deep."""

    type_slug = "partner-hierarchy-refused"
    kind = ErrorKind.INVALID


#: First key of the advisory lock under which one program's hierarchy
#: changes (a firm created, or moved under another parent): two moves at
#: once could otherwise each pass the cycle check and together make a
#: cycle, and two creates of one slug would race on its unique key.
_HIERARCHY_LOCK = 1886547816
#: Levels walked at most, up or down: past any depth the rules allow, so
#: that rows written around them (by hand) cannot make a walk endless.
_WALK_BOUND = 64

_ANCESTORS = text(
    """
    WITH RECURSIVE up (id, parent_id, program_id, level) AS (
        SELECT id, parent_id, program_id, 1 FROM partners WHERE id = :id
        UNION ALL
        SELECT p.id, p.parent_id, p.program_id, up.level + 1
        FROM partners p JOIN up ON p.id = up.parent_id AND p.program_id = up.program_id
        WHERE up.level < :bound
    )
    SELECT id FROM up ORDER BY level
    """
)
_DESCENDANTS = text(
    """
    WITH RECURSIVE down (id, program_id, level) AS (
        SELECT id, program_id, 1 FROM partners WHERE id = :id
        UNION ALL
        SELECT p.id, p.program_id, down.level + 1
        FROM partners p JOIN down ON p.parent_id = down.id AND p.program_id = down.program_id
        WHERE down.level < :bound
    )
    SELECT id, level FROM down
    """
)


async def lock_hierarchy(session: AsyncSession, program: Program) -> None:
    """Wait for the program's other hierarchy changes to commit, and hold
    theirs back until this transaction ends."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:key, hashtext(:program))"),
        {"key": _HIERARCHY_LOCK, "program": str(program.id)},
    )


async def ancestors(session: AsyncSession, partner_id: uuid.UUID) -> list[uuid.UUID]:
    """The firm, its parent, ... up to its top-level firm, in that order."""
    rows = await session.execute(_ANCESTORS, {"id": partner_id, "bound": _WALK_BOUND})
    found = [row.id for row in rows]
    return found or [partner_id]


async def descendants(session: AsyncSession, partner_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """The firm and every company below it, each with its level (the firm: 1)."""
    rows = await session.execute(_DESCENDANTS, {"id": partner_id, "bound": _WALK_BOUND})
    return {row.id: row.level for row in rows}


async def check_depth(session: AsyncSession, parent: Partner, *, height: int) -> None:
    """Refuse a subtree ``height`` levels tall under ``parent`` if the group
    would be deeper than ``DEPTH_MAX``."""
    depth = len(await ancestors(session, parent.id)) + height
    if depth > DEPTH_MAX:
        raise PartnerHierarchyRefused(
            f"parent: under {parent.slug!r} the group would be {depth} levels deep;"
            f" at most {DEPTH_MAX} are allowed"
        )
