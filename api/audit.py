"""The audit trail of operator actions, written in the action's own
transaction: an action that fails leaves no audit line, and one that
succeeds always has one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec
from sqlalchemy import Column, DateTime, MetaData, String, Table, func, insert
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import Caller
from ledger import new_id

audit_events = Table(
    "audit_events",
    MetaData(),
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("occurred_at", DateTime(timezone=True), server_default=func.now()),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("details", JSONB, nullable=False),
)


async def record(
    session: AsyncSession, caller: Caller, action: str, subject: str, details: Any = None
) -> None:
    await session.execute(
        insert(audit_events).values(
            id=new_id(),
            actor=caller.actor,
            action=action,
            subject=subject,
            details=msgspec.to_builtins(details) if details is not None else {},
        )
    )


class Line(msgspec.Struct, kw_only=True, frozen=True):
    actor: str
    action: str
    subject: str
    details: Any = None


_INSERT_LINES = """INSERT INTO audit_events (id, actor, action, subject, details)
SELECT l.id, l.actor, l.action, l.subject, l.details::jsonb
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
    AS l(id, actor, action, subject, details)"""


async def record_lines(
    connection: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy, lines: Sequence[Line]
) -> None:
    """Audit lines of a batch, in the batch's transaction (one statement)."""
    if not lines:
        return
    await connection.execute(
        _INSERT_LINES,
        [new_id() for _ in lines],
        [line.actor for line in lines],
        [line.action for line in lines],
        [line.subject for line in lines],
        [
            msgspec.json.encode(line.details if line.details is not None else {}).decode()
            for line in lines
        ],
    )
