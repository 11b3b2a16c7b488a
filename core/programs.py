"""Looking programs up: by the ORM session, or on a pool for the reads that
need no session (the member app's hot path).

Every look-up takes the acting principal and filters by its program tenant
in the query: a program of another tenant is not found, with the very
answer a missing one gets, so a caller learns nothing of other programs.
"""

from __future__ import annotations

import uuid

import asyncpg
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import derived_id
from core.errors import NotFound
from core.models import Program
from core.principal import Principal

#: Where programs' own ids are derived (``derived_id`` keys ids by a program).
_PROGRAMS = uuid.UUID(int=0)


def program_id_for(slug: str) -> uuid.UUID:
    """The id of the program with this slug, derived from it: a program
    opened again after a failure gets the same id (and accounts), and a
    member token's program claim names its tenant without a query."""
    return derived_id(_PROGRAMS, "program", slug)


def readable_programs(principal: Principal) -> Select[Program]:
    """The programs ``principal`` may read: its own, or every one."""
    query = select(Program)
    if principal.program_id is not None:
        query = query.where(Program.id == principal.program_id)
    return query


async def get_program(session: AsyncSession, principal: Principal, slug: str) -> Program:
    program = await session.scalar(readable_programs(principal).where(Program.slug == slug))
    if program is None:
        raise NotFound(f"no program {slug!r}")
    return program


_PROGRAM_COLUMNS = (
    "id, slug, name, ledger_id, currency, minor_per_major, point_value_minor,"
    " return_window_days, gift_daily_limit, tier_basis, tier_window, tier_grace_days,"
    " expiry_policy, expiry_months, time_zone, started_at, issuance_account_id,"
    " redemption_account_id, breakage_account_id, created_at, updated_at"
)


async def read_program(
    db: asyncpg.Pool | asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    principal: Principal,
    slug: str,
) -> Program:
    """The program as a detached object (for reads that need no session)."""
    row = await db.fetchrow(
        f"SELECT {_PROGRAM_COLUMNS} FROM programs"
        " WHERE slug = $1 AND ($2::uuid IS NULL OR id = $2::uuid)",
        slug,
        principal.program_id,
    )
    if row is None:
        raise NotFound(f"no program {slug!r}")
    return Program(**dict(row))


async def lock_program(session: AsyncSession, program: Program) -> Program:
    """Lock the program's row to the end of the transaction, for a change to
    what the program defines (its settings, rule versions, catalog, tiers,
    thresholds): of two such changes at once the second waits and sees the
    first's, and an idempotent one finds the first's record instead of
    losing a race on a unique key. Answers the program as locked (the
    session's object, refreshed: not as it was loaded before the lock).
    ``FOR NO KEY UPDATE``: rows that only refer to the program (members,
    purchases) are written meanwhile as ever."""
    locked = await session.scalar(
        select(Program)
        .where(Program.id == program.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    assert locked is not None  # programs are never deleted
    return locked
