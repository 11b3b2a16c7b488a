"""One-statement writes of concurrent requests, committed a batch at a time.

A use case whose whole write is one statement (it checks, writes and
audits in data-modifying CTEs, and answers why it wrote nothing) needs no
ORM session: over HTTP, the session's checkout ping, BEGIN and COMMIT cost
more round trips than the statement itself. ``StatementBatch`` runs such
statements, submitted by concurrent requests, on one pooled asyncpg
connection in one transaction: each statement in submission order (so
two requests on one row see each other's writes, as they would one after
the other), one BEGIN and one COMMIT for all.

A statement that fails for a reason of its own request (data the database
refuses, a constraint) is that request's answer alone: the batch is split
until it is alone (``ledger.batching.MicroBatcher``'s ``is_item_fault``) and the others are
written again. The same use case runs on an ``AsyncSession`` as well
(``fetch_one`` takes either), for callers that write more in one
transaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

import asyncpg
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import TextClause

from ledger.batching import MicroBatcher
from ledger.errors import is_input_fault

_DIALECT = asyncpg_dialect.dialect()  # type: ignore[no-untyped-call]

Row = Mapping[str, Any]


class _Compiled:
    """A text statement as asyncpg takes it: ``$n`` placeholders and the
    names of its parameters in their order."""

    __slots__ = ("names", "sql")

    def __init__(self, statement: TextClause) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        self.sql = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] for name in self.names]


_compiled: dict[int, tuple[TextClause, _Compiled]] = {}


def _compile(statement: TextClause) -> _Compiled:
    # Statements are module constants: compile each once.
    found = _compiled.get(id(statement))
    if found is None or found[0] is not statement:
        found = (statement, _Compiled(statement))
        _compiled[id(statement)] = found
    return found[1]


def of_one_request(error: Exception) -> bool:
    """Whether a failed batch may owe its failure to one request's own data
    (a constraint, a value the database refuses): worth splitting."""
    return isinstance(error, asyncpg.IntegrityConstraintViolationError) or is_input_fault(error)


_Submitted = tuple[_Compiled, list[Any]]


class StatementBatch:
    """Concurrent one-statement writes in shared transactions on ``pool``."""

    def __init__(self, pool: asyncpg.Pool, *, name: str, max_batch: int = 200) -> None:
        self._pool = pool
        # One batch in flight, as the purchase intake measured best on two
        # cores: the requests that arrive meanwhile make the next batch.
        self._batcher: MicroBatcher[_Submitted, Row | None] = MicroBatcher(
            self._write,
            name=name,
            max_batch=max_batch,
            max_in_flight=1,
            is_item_fault=of_one_request,
            on_closed=lambda: RuntimeError(f"{name} is closed"),
        )

    async def fetch_one(self, statement: TextClause, params: Mapping[str, Any]) -> Row | None:
        """The statement's first row (or None), once its batch committed."""
        compiled = _compile(statement)
        return await self._batcher.submit((compiled, compiled.arguments(params)))

    async def close(self) -> None:
        await self._batcher.close()

    async def _write(self, batch: list[_Submitted]) -> list[Row | None]:
        rows: list[Row | None] = []
        async with self._pool.acquire() as connection, connection.transaction():
            for compiled, arguments in batch:
                record = await connection.fetchrow(compiled.sql, *arguments)
                rows.append(None if record is None else dict(record.items()))
        return rows


async def fetch_one(
    writer: AsyncSession | StatementBatch, statement: TextClause, params: Mapping[str, Any]
) -> Row | None:
    """``statement``'s first row as a mapping, on a session (in its
    transaction) or through a batch (committed when this returns)."""
    if isinstance(writer, StatementBatch):
        return await writer.fetch_one(statement, params)
    row = (await writer.execute(statement, params)).one_or_none()
    return None if row is None else cast(Row, row._mapping)
