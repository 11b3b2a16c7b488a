"""Erased members' pseudonyms, and how many times an external id was erased.

The n-th erasure of an external id (counting from 0) names the member
``pseudonym(program, external_id, n)``, so the erasures of an id are the run
of its pseudonyms taken from 0 on: no column remembers the id, and nothing
but the operator's id (which the operator already holds) leads back to it.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Member, Program

PREFIX = "erased-"
#: Pseudonyms looked up per round trip: an id is rarely erased more often.
_PER_LOOK_UP = 8


def pseudonym(program: Program, external_id: str, erasure: int = 0) -> str:
    # The first erasure keeps the name it had before erasures were counted.
    key = f"{program.id}:{external_id}" + (f":{erasure}" if erasure else "")
    return PREFIX + hashlib.sha256(key.encode()).hexdigest()[:24]


async def erasures(session: AsyncSession, program: Program, external_id: str) -> int:
    """How many members enrolled under ``external_id`` were erased."""
    start = 0
    while True:
        names = [pseudonym(program, external_id, n) for n in range(start, start + _PER_LOOK_UP)]
        taken = set(
            await session.scalars(
                select(Member.external_id).where(
                    Member.program_id == program.id, Member.external_id.in_(names)
                )
            )
        )
        for name in names:
            if name not in taken:
                return start
            start += 1


async def last_erased(session: AsyncSession, program: Program, external_id: str) -> str | None:
    """The pseudonym of the last member erased under ``external_id``; None
    if none ever was."""
    count = await erasures(session, program, external_id)
    return pseudonym(program, external_id, count - 1) if count else None
