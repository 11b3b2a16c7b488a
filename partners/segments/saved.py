"""Saved segments: save one under a name, change it, delete it, read them.
Each write is audited in its transaction. A saved definition is checked
against the program when it is saved (``InvalidSegment``, nothing written).

Tenancy: the program comes from the caller's tenant (``sees_program``); a
segment of another program is not found, exactly as a missing one.
"""

from __future__ import annotations

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import AlreadyExists, NotFound
from core.models import Program
from core.pagination import Page, decode_cursor, encode_cursor
from core.principal import Principal
from partners.segments.compiler import ResolvedSegment, resolve
from partners.segments.definition import (
    SegmentChange,
    SegmentDefinition,
    SegmentSpec,
    SegmentView,
)
from partners.segments.models import SavedSegment


def _check_program(program: Program, principal: Principal) -> None:
    if not principal.sees_program(program.id):
        raise NotFound("no program")


def _subject(program: Program, name: str) -> str:
    return f"program:{program.slug}:segment:{name}"


def view_of(segment: SavedSegment) -> SegmentView:
    return SegmentView(
        id=str(segment.id),
        name=segment.name,
        description=segment.description,
        definition=definition_of(segment),
        offered_to_partners=segment.offered_to_partners,
        created_by=segment.created_by,
        updated_by=segment.updated_by,
    )


def definition_of(segment: SavedSegment) -> SegmentDefinition:
    return msgspec.convert(segment.definition, SegmentDefinition)


async def find_segment(
    session: AsyncSession,
    program: Program,
    name: str,
    *,
    principal: Principal,
    lock: bool = False,
) -> SavedSegment:
    _check_program(program, principal)
    query = select(SavedSegment).where(
        SavedSegment.program_id == program.id, SavedSegment.name == name
    )
    if lock:
        query = query.with_for_update()
    found = await session.scalar(query)
    if found is None:
        raise NotFound(f"no segment {name!r}")
    return found


async def resolved_segment(
    session: AsyncSession, program: Program, name: str, *, principal: Principal
) -> ResolvedSegment:
    """The saved segment ready to compile, checked again against the
    program (a tier or partner removed since it was saved: 422)."""
    segment = await find_segment(session, program, name, principal=principal)
    return await resolve(session, program, definition_of(segment))


async def save_segment(
    session: AsyncSession, program: Program, spec: SegmentSpec, *, principal: Principal
) -> SegmentView:
    """Save a new segment; its name taken: 409 ``already-exists``."""
    _check_program(program, principal)
    await resolve(session, program, spec.definition)
    taken = await session.scalar(
        select(SavedSegment.id).where(
            SavedSegment.program_id == program.id, SavedSegment.name == spec.name
        )
    )
    if taken is not None:
        raise AlreadyExists(f"a segment named {spec.name!r} exists", field="name")
    segment = SavedSegment(
        program_id=program.id,
        name=spec.name,
        description=spec.description,
        definition=msgspec.to_builtins(spec.definition),
        offered_to_partners=spec.offered_to_partners,
        created_by=principal.actor,
        updated_by=principal.actor,
    )
    session.add(segment)
    await session.flush()
    await audit.record(
        session,
        principal,
        "segment.save",
        _subject(program, spec.name),
        {"definition": segment.definition, "offered_to_partners": spec.offered_to_partners},
    )
    return view_of(segment)


async def change_segment(
    session: AsyncSession,
    program: Program,
    name: str,
    change: SegmentChange,
    *,
    principal: Principal,
) -> SegmentView:
    """Replace a saved segment's description, definition and offer. Joint
    campaigns that target it keep the definition they were proposed with."""
    segment = await find_segment(session, program, name, principal=principal, lock=True)
    await resolve(session, program, change.definition)
    segment.description = change.description
    segment.definition = msgspec.to_builtins(change.definition)
    segment.offered_to_partners = change.offered_to_partners
    segment.updated_by = principal.actor
    await session.flush()
    await audit.record(
        session,
        principal,
        "segment.change",
        _subject(program, name),
        {"definition": segment.definition, "offered_to_partners": change.offered_to_partners},
    )
    return view_of(segment)


async def delete_segment(
    session: AsyncSession, program: Program, name: str, *, principal: Principal
) -> None:
    segment = await find_segment(session, program, name, principal=principal, lock=True)
    await session.execute(delete(SavedSegment).where(SavedSegment.id == segment.id))
    await audit.record(session, principal, "segment.delete", _subject(program, name), {})


async def get_segment(
    session: AsyncSession, program: Program, name: str, *, principal: Principal
) -> SegmentView:
    return view_of(await find_segment(session, program, name, principal=principal))


async def list_segments(
    session: AsyncSession,
    program: Program,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
) -> Page[SegmentView]:
    """The program's saved segments, the oldest first."""
    _check_program(program, principal)
    query = select(SavedSegment).where(SavedSegment.program_id == program.id)
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(SavedSegment.id > after)
    rows = list(await session.scalars(query.order_by(SavedSegment.id).limit(limit + 1)))
    views = [view_of(s) for s in rows[:limit]]
    if len(rows) > limit:
        return Page(items=views, next_cursor=encode_cursor(rows[limit - 1].id))
    return Page(items=views)
