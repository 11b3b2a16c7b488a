"""The audit trail, written by the use case itself in its own transaction,
whatever door the request came through (HTTP, a Stripe webhook, the CLI, a
worker job): an action that fails leaves no line, and one that succeeds
always has one."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec
from sqlalchemy import Column, DateTime, Index, MetaData, String, Table, func, insert, select
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from core.principal import Principal
from ledger import new_id

audit_events = Table(
    "audit_events",
    MetaData(),
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("details", JSONB, nullable=False),
    Index("ix_audit_events_subject", "subject", "occurred_at"),
)


class Line(msgspec.Struct, kw_only=True, frozen=True):
    """One line of the trail, for use cases that write many in one statement."""

    actor: str
    action: str
    subject: str
    details: Any = None


async def record(
    session: AsyncSession,
    principal: Principal,
    action: str,
    subject: str,
    details: Any = None,
) -> None:
    await session.execute(
        insert(audit_events).values(
            id=new_id(),
            actor=principal.actor,
            action=action,
            subject=subject,
            details=msgspec.to_builtins(details) if details is not None else {},
        )
    )


class Executes(Protocol):
    """A raw connection (asyncpg's, or a pool's proxy of one)."""

    async def execute(self, query: str, *args: Any) -> str: ...


async def record_on(
    connection: Executes,
    principal: Principal,
    action: str,
    subject: str,
    details: Any = None,
) -> None:
    """``record`` for use cases that run on a raw connection rather than a
    session (API keys): in the connection's transaction."""
    await connection.execute(
        # Sent as text and cast by the server, whatever codec the connection has.
        "INSERT INTO audit_events (id, actor, action, subject, details)"
        " VALUES ($1, $2, $3, $4, $5::text::jsonb)",
        new_id(),
        principal.actor,
        action,
        subject,
        msgspec.json.encode(details if details is not None else {}).decode(),
    )


async def recorded(session: AsyncSession, action: str, subject: str, **details: Any) -> bool:
    """Whether the trail has a line of ``action`` on ``subject`` whose
    details hold ``details``: a use case whose change committed elsewhere
    first (through the ledger's writer) writes its line on the retry that
    finds none, so a failure between the two leaves no change unaudited."""
    found = await session.scalar(
        select(audit_events.c.id)
        .where(
            audit_events.c.action == action,
            audit_events.c.subject == subject,
            audit_events.c.details.contains(details),
        )
        .limit(1)
    )
    return found is not None
