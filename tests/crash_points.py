"""Crash points for ``tests/test_crash_between_writes.py``: the process dies
right after its n-th write, on whichever connection that write ran.

The interception sits under every way the app talks to PostgreSQL, so it
does not depend on how the use cases are built: asyncpg's ``Connection``
(its pools' connections, the ledger writer's, the intake's, raw ones) and
asyncpg's prepared statements (through which SQLAlchemy's asyncpg dialect
runs every ORM statement; its COMMIT is a ``Connection.execute``).

A write is a COMMIT, a statement inside a transaction that changed rows
(PostgreSQL's own per-transaction counters, ``pg_stat_xact_user_tables``,
tell: that sees rows written by functions such as the ledger's too), or any
statement outside a transaction that is not a known read (such a statement
commits on its own, and its text cannot tell whether it wrote).

The crash: every backend of the app that holds a transaction, and the one
that just wrote, is terminated (their open transactions roll back, what
committed stays), the statement's caller gets ``ConnectionDoesNotExistError``
and, until the request ends, every further statement of the app dies the
same way, as if the process were gone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
from asyncpg.connection import Connection
from asyncpg.prepared_stmt import PreparedStatement

#: Rows the current transaction changed so far, on this backend.
_CHANGED_ROWS = (
    "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint"
    " FROM pg_stat_xact_user_tables"
)
_COMMIT = re.compile(r"^\s*(COMMIT|END)\b", re.IGNORECASE)
_BEGIN = re.compile(r"^\s*(BEGIN|START\s+TRANSACTION)\b", re.IGNORECASE)
_ROLLBACK = re.compile(r"^\s*ROLLBACK\s*;?\s*$", re.IGNORECASE)
#: Statements that never write, in or out of a transaction.
_NEVER_WRITES = re.compile(
    r"^\s*(;|$|SELECT\s+1\s*;?\s*$|SHOW\b|SET\b|RESET\b|SAVEPOINT\b|RELEASE\b|ROLLBACK\b"
    r"|BEGIN\b|START\s+TRANSACTION\b|SELECT\s+pg_advisory_unlock_all\b"
    r"|select\s+pg_catalog\.version\(\)|select\s+current_schema\(\))",
    re.IGNORECASE,
)


class Crashed(asyncpg.exceptions.ConnectionDoesNotExistError):
    """What the app's code sees at the crash, and after it: its connection
    is gone (the server terminated the backend)."""

    def __init__(self) -> None:
        super().__init__("connection is closed: the process was killed by the crash test")


class CrashPoints:
    """Counts the app's writes while armed; crashes after the ``crash_at``-th."""

    def __init__(self, side: Connection) -> None:
        #: The test's own connection: never counted, it terminates backends.
        self._side = side
        self.armed = False
        self.crash_at: int | None = None
        self.writes = 0
        self.crashed = False
        #: (connection kind, statement) of each write counted, for messages.
        self.log: list[str] = []
        self._dead = False
        self._seen: dict[int, Connection] = {}
        self._changed: dict[int, int] = {}
        self._inside: set[int] = set()

    @contextlib.contextmanager
    def arm(self, crash_at: int | None) -> Iterator[None]:
        """Count (and crash after write ``crash_at``, if given) in the block;
        the crash's death ends with it."""
        self.armed, self.crash_at, self.writes, self.crashed = True, crash_at, 0, False
        self.log, self._dead, self._changed = [], False, {}
        try:
            yield
        finally:
            self.armed, self._dead, self._seen = False, False, {}

    async def around(
        self, connection: Connection, query: str, run: Callable[[], Awaitable[Any]]
    ) -> Any:
        key = id(connection)
        if not self.armed or connection is self._side or key in self._inside:
            return await run()
        if self._dead:
            await self._terminate([connection])
            raise Crashed()
        self._seen[key] = connection
        result = await run()
        if await self._wrote(connection, query):
            self.writes += 1
            self.log.append(" ".join(query.split())[:120])
            if self.writes == self.crash_at:
                self.crashed = self._dead = True
                doomed = [c for c in self._seen.values() if c.is_in_transaction()]
                await self._terminate([connection, *doomed])
                raise Crashed()
        return result

    async def _wrote(self, connection: Connection, query: str) -> bool:
        key = id(connection)
        if _COMMIT.match(query):
            self._changed.pop(key, None)
            return True
        if _BEGIN.match(query):
            # The counters hold what earlier transactions changed, until
            # the backend reports them: a transaction counts from its start.
            self._changed[key] = await self._changed_rows(connection)
            return False
        if _ROLLBACK.match(query):
            self._changed.pop(key, None)
            return False
        if _NEVER_WRITES.match(query):
            return False
        if not connection.is_in_transaction():
            return True
        changed = await self._changed_rows(connection)
        before = self._changed.get(key, 0)
        self._changed[key] = changed
        return changed > before

    async def _changed_rows(self, connection: Connection) -> int:
        key = id(connection)
        self._inside.add(key)
        try:
            return int(await connection.fetchval(_CHANGED_ROWS))
        finally:
            self._inside.discard(key)

    async def _terminate(self, connections: list[Connection]) -> None:
        pids = sorted({c.get_server_pid() for c in connections if not c.is_closed()})
        if pids:
            await self._side.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM unnest($1::int[]) AS pid", pids
            )


@contextlib.contextmanager
def intercepted(points: CrashPoints) -> Iterator[None]:
    """asyncpg's statement paths routed through ``points.around``."""
    originals: dict[tuple[type, str], Any] = {}

    def patch(owner: type, name: str, wrapper: Callable[[Any], Any]) -> None:
        originals[owner, name] = getattr(owner, name)
        setattr(owner, name, wrapper(getattr(owner, name)))

    def simple_query(original: Any) -> Any:
        # Without arguments ``execute`` sends a simple query (BEGIN, COMMIT,
        # scripts); with them it goes through ``_execute``, counted there.
        async def execute(self: Connection, query: str, *args: Any, **kwargs: Any) -> Any:
            if args:
                return await original(self, query, *args, **kwargs)
            return await points.around(self, query, lambda: original(self, query, **kwargs))

        return execute

    def by_query(original: Any) -> Any:
        async def run(self: Connection, query: str, *args: Any, **kwargs: Any) -> Any:
            return await points.around(self, query, lambda: original(self, query, *args, **kwargs))

        return run

    def copy(original: Any) -> Any:
        async def run(self: Connection, table_name: str, *args: Any, **kwargs: Any) -> Any:
            return await points.around(
                self, f"COPY {table_name}", lambda: original(self, table_name, *args, **kwargs)
            )

        return run

    def prepared(original: Any) -> Any:
        async def run(self: PreparedStatement, executor: Any) -> Any:
            connection: Connection = self._connection  # type: ignore[attr-defined]
            return await points.around(
                connection, self.get_query(), lambda: original(self, executor)
            )

        return run

    patch(Connection, "execute", simple_query)
    patch(Connection, "_execute", by_query)
    patch(Connection, "_executemany", by_query)
    patch(Connection, "copy_records_to_table", copy)
    patch(Connection, "copy_to_table", copy)
    patch(PreparedStatement, "_PreparedStatement__do_execute", prepared)
    try:
        yield
    finally:
        for (owner, name), original in originals.items():
            setattr(owner, name, original)


# -- The state a use case leaves -------------------------------------------

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_MOMENT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
_PSEUDONYM = re.compile(r"erased-[0-9a-f]{16,}")
#: Integer columns that hold ids which differ from one program to the next
#: (a tier's ledger class comes from a sequence, which a retry advances).
_INTEGER_IDS = {
    "id",
    "ledger",
    "ledger_id",
    "position",
    "ledger_class",
    "account_class",
    "previous_class",
    "seq",
}
#: Columns that change from run to run without meaning anything: clocks
#: (the ledger's ``timestamp`` is nanoseconds, and the lots' settlement marks
#: are such timestamps), random secrets.
_NOISE = {
    "timestamp",
    "lots_through",
    "lots_settled_through",
    "secret_sha256",
    "prefix",
    "sa_orm_sentinel",
}
_CLOCK_TYPES = ("timestamp", "date", "time", "interval")

Snapshot = dict[str, list[str]]


async def changed_since(connection: Connection, marker: int, slug: str) -> Snapshot:
    """Every row of every table written since ``marker`` (``mark()``), with
    ids numbered in order of appearance and clocks left out, so that two
    equal runs on two programs give equal snapshots."""
    columns: dict[str, list[tuple[str, str]]] = {}
    for row in await connection.fetch(
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c"
        " JOIN information_schema.tables t USING (table_schema, table_name)"
        " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'"
        " AND c.table_name <> 'alembic_version' ORDER BY c.table_name, c.ordinal_position"
    ):
        columns.setdefault(row["table_name"], []).append((row["column_name"], row["data_type"]))
    raw: dict[str, list[dict[str, Any]]] = {}
    for table, fields in sorted(columns.items()):
        kept = [
            (name, kind)
            for name, kind in fields
            if name not in _NOISE and not kind.startswith(_CLOCK_TYPES)
        ]
        select = ", ".join(f'"{name}"' for name, _ in kept)
        # In the order written: rows alike but for their ids (a lot's
        # creation and its restoration) are then named alike in two runs. A
        # plain scan's order is not that on a large table (a synchronised
        # scan starts where another one is).
        rows = await connection.fetch(
            f'SELECT {select} FROM "{table}" WHERE xmin::text::bigint > $1'
            " ORDER BY xmin::text::bigint, ctid",
            marker,
        )
        raw[table] = [
            {name: _decoded(row[name], kind, name in _INTEGER_IDS, slug) for name, kind in kept}
            for row in rows
        ]
    return _numbered(raw)


async def mark(connection: Connection) -> int:
    """A point in the database's history: rows written after it are newer."""
    xid = await connection.fetchval("SELECT pg_current_xact_id()::text::bigint")
    return int(xid) % 2**32


class _Id(str):
    """A value that is an id: numbered, not compared."""


def _decoded(value: Any, kind: str, integer_id: bool, slug: str) -> Any:
    if value is None:
        return None
    if isinstance(value, uuid.UUID):
        return _Id(value)
    if integer_id:
        return _Id(f"int:{value}")
    if kind in ("json", "jsonb") and isinstance(value, str):
        return _plain(json.loads(value), slug)
    return _plain(value, slug)


def _plain(value: Any, slug: str) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v, slug) for k, v in value.items() if k not in _NOISE}
    if isinstance(value, list | tuple):
        return [_plain(v, slug) for v in value]
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return "<moment>"
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str):
        if _UUID.fullmatch(value) or _PSEUDONYM.fullmatch(value):
            return _Id(value.lower())
        text = value.replace(slug, "<slug>")
        return _MOMENT.sub("<moment>", text)
    return value


def _render(value: Any, name: Callable[[str], str]) -> Any:
    if isinstance(value, _Id):
        return name(str(value))
    if isinstance(value, dict):
        return {k: _render(v, name) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, name) for v in value]
    if isinstance(value, str):
        text = _UUID.sub(lambda m: name(m.group(0).lower()), value)
        return _PSEUDONYM.sub(lambda m: name(m.group(0)), text)
    return value


def _numbered(raw: dict[str, list[dict[str, Any]]]) -> Snapshot:
    """Ids named after the row that holds them as its key (``<members#1>``),
    else after the first column they appear in: a row more or less in one
    table leaves the names of the other tables' rows as they were."""

    def shape(row: dict[str, Any]) -> str:
        return json.dumps(_render(row, lambda _: "<id>"), sort_keys=True)

    ordered = {table: sorted(rows, key=shape) for table, rows in sorted(raw.items())}
    names: dict[str, str] = {}
    counts: dict[str, int] = {}

    def named(value: str, where: str) -> str:
        if value not in names:
            counts[where] = counts.get(where, 0) + 1
            names[value] = f"<{where}#{counts[where]}>"
        return names[value]

    for table, rows in ordered.items():
        for row in rows:
            key = next(iter(row.values()), None) if "id" not in row else row["id"]
            if isinstance(key, _Id):
                # Named by what the row says: the names of a table's other
                # rows do not move when a row more is written.
                digest = hashlib.sha256(shape(row).encode()).hexdigest()[:6]
                named(str(key), f"{table} {digest}")

    def in_column(table: str, column: str) -> Callable[[str], str]:
        return lambda value: named(value, f"{table}.{column}")

    snapshot: Snapshot = {}
    for table, rows in ordered.items():
        rendered = [
            json.dumps({c: _render(v, in_column(table, c)) for c, v in row.items()}, sort_keys=True)
            for row in rows
        ]
        if rendered:
            snapshot[table] = sorted(rendered)
    return snapshot


def difference(expected: Snapshot, actual: Snapshot) -> str:
    """The rows one snapshot has and the other lacks, table by table."""
    lines = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table, []), actual.get(table, [])
        missing = [r for r in want if r not in got]
        extra = [r for r in got if r not in want]
        lines += [f"  {table}: missing {r}" for r in missing]
        lines += [f"  {table}: extra   {r}" for r in extra]
    return "\n".join(lines) or "  (no difference)"
