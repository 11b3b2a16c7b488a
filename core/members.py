"""Looking members up, locking them, and the rule every movement of their
points obeys (only active members earn and spend)."""

from __future__ import annotations

import uuid
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import MemberNotActive, NotFound
from core.models import Member, MemberStatus, Program


async def find_member(session: AsyncSession, program: Program, external_id: str) -> Member | None:
    return await session.scalar(
        select(Member).where(Member.program_id == program.id, Member.external_id == external_id)
    )


async def get_member(session: AsyncSession, program: Program, external_id: str) -> Member:
    member = await find_member(session, program, external_id)
    if member is None:
        raise NotFound(f"no member {external_id!r} in program {program.slug!r}")
    return member


async def lock_member(session: AsyncSession, member_id: uuid.UUID) -> None:
    """Lock the member's row to the end of the transaction. Every movement
    out of a wallet happens under it, and so does expiry, which reads a
    wallet and then debits it: no spend can land between the two."""
    await session.execute(select(Member.id).where(Member.id == member_id).with_for_update())


class HasStatus(Protocol):
    external_id: str
    status: str


def require_active(member: HasStatus) -> None:
    """Frozen and closed members neither earn nor spend."""
    if member.status != MemberStatus.ACTIVE:
        raise MemberNotActive(f"member {member.external_id!r} is {member.status}")
