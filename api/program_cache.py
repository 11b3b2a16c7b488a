"""Programs by slug for the hot paths (member reads, purchase intake), kept
in the process for a short while."""

from __future__ import annotations

import time

import asyncpg

from core.errors import NotFound
from core.models import Program
from core.principal import Principal
from core.programs import read_program


class ProgramCache:
    """Programs by slug, kept ``ttl`` seconds: they change rarely, and a
    member read should not pay a query for them. One cache serves every
    principal: a program outside the caller's tenant is not found, as a
    missing one is, whether it is cached or read."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = 30.0) -> None:
        self._pool = pool
        self._ttl = ttl
        self._programs: dict[str, tuple[float, Program]] = {}

    async def get(self, slug: str, *, principal: Principal) -> Program:
        now = time.monotonic()
        cached = self._programs.get(slug)
        if cached is not None and cached[0] > now:
            if not principal.sees_program(cached[1].id):
                raise NotFound(f"no program {slug!r}")
            return cached[1]
        program = await read_program(self._pool, principal, slug)
        self._programs[slug] = (now + self._ttl, program)
        return program
