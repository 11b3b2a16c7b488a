"""Looking programs up: by the ORM session, or on a pool for the reads that
need no session (the member app's hot path)."""

from __future__ import annotations

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import NotFound
from core.models import Program


async def get_program(session: AsyncSession, slug: str) -> Program:
    program = await session.scalar(select(Program).where(Program.slug == slug))
    if program is None:
        raise NotFound(f"no program {slug!r}")
    return program


_PROGRAM_COLUMNS = (
    "id, slug, name, ledger_id, currency, minor_per_major, point_value_minor,"
    " return_window_days, gift_daily_limit, tier_basis, tier_window, tier_grace_days,"
    " expiry_policy, expiry_months, issuance_account_id, redemption_account_id,"
    " breakage_account_id, created_at, updated_at"
)


async def read_program(pool: asyncpg.Pool, slug: str) -> Program:
    """The program as a detached object (for reads that need no session)."""
    row = await pool.fetchrow(f"SELECT {_PROGRAM_COLUMNS} FROM programs WHERE slug = $1", slug)
    if row is None:
        raise NotFound(f"no program {slug!r}")
    return Program(**dict(row))
