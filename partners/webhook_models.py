"""Tables of the webhooks to partners: endpoints, deliveries, their attempts,
and the notices the platform leaves for a partner (migration 0024).

An endpoint is a partner's (``partner_id``, within ``program_id``, its
tenant), or the program's own with ``partner_id`` NULL (migration 0046: its
operators', for program events, ``partners.program_webhooks``). A
delivery is one event for one endpoint: its ``id`` is the ``webhook-id`` of
every attempt (``msg_<hex>``), so a receiver drops duplicates. Deliveries
and attempts are written in batches by SQL (``partners.webhook_sending``),
so they are Core tables, not ORM classes.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, timedelta

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import race


class EndpointStatus(enum.StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class DeliveryStatus(enum.StrEnum):
    #: Due (``next_attempt_at``) or being sent.
    PENDING = "pending"
    #: A 2xx answer came within the timeout.
    SUCCEEDED = "succeeded"
    #: Every scheduled attempt failed, or its endpoint was disabled: only a
    #: replay sends it again.
    DEAD = "dead"


#: Waits after a failed attempt before the next one, like Svix's schedule:
#: the first attempt is immediate, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h
#: and 10 h; a delivery whose last attempt fails is dead-lettered.
RETRY_DELAYS: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)

#: How long an endpoint may fail without a success before it is disabled.
FAILING_LIMIT = timedelta(days=5)


class WebhookEndpoint(UUIDv7AuditBase):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        Index("ix_webhook_endpoints_partner_id", "partner_id", "id"),
        Index(
            "ix_webhook_endpoints_program_own",
            "program_id",
            "id",
            postgresql_where=text("partner_id IS NULL"),
        ),
    )

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    #: None: the program's own endpoint (its operators'), not a partner's.
    partner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("partners.id"))
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(500))
    #: The event types sent to it; None: every type, those added later too.
    event_types: Mapped[list[str] | None] = mapped_column(ARRAY(String(100)))
    status: Mapped[str] = mapped_column(String(16))
    #: ``whsec_`` + base64 of 32 random bytes (Standard Webhooks). Kept as
    #: is: signing needs it (see docs/partners.md, Webhooks).
    secret: Mapped[str] = mapped_column(String(100))
    #: The secret before the last rotation, still signing until
    #: ``previous_secret_expires_at`` (both signatures are sent meanwhile).
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The first failure since the last success; None while it succeeds.
    failing_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    disabled_reason: Mapped[str | None] = mapped_column(String(500))


_PENDING = text("status = 'pending'")

webhook_deliveries = Table(
    "webhook_deliveries",
    UUIDv7AuditBase.metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    # The endpoint's tenant, copied so that reads filter without a join
    # (``partner_id`` NULL: a delivery to the program's own endpoint).
    Column("program_id", UUID(as_uuid=True), nullable=False),
    Column("partner_id", UUID(as_uuid=True)),
    Column(
        "endpoint_id",
        UUID(as_uuid=True),
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    #: The outbox event it carries (or a test event's own id).
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("event_type", String(100), nullable=False),
    #: The JSON sent, rendered once: every attempt sends the same bytes.
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    #: Attempts left after the next one fails (a replay leaves none).
    Column("retries_left", SmallInteger, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True)),
    #: The sending run that holds it until ``next_attempt_at`` (its lease).
    Column("lease", UUID(as_uuid=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("delivered_at", DateTime(timezone=True)),
    Column("dead_at", DateTime(timezone=True)),
    # One delivery of an event per endpoint, however often the fan-out runs.
    UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_id"),
    # The sender's claim: endpoints with pending deliveries, and the due ones of each.
    Index(
        "ix_webhook_deliveries_pending",
        "endpoint_id",
        "next_attempt_at",
        postgresql_where=_PENDING,
    ),
    Index("ix_webhook_deliveries_endpoint_log", "endpoint_id", "id"),
)

webhook_attempts = Table(
    "webhook_attempts",
    UUIDv7AuditBase.metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column(
        "delivery_id",
        UUID(as_uuid=True),
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    #: 1 for the first attempt of its delivery, replays going on counting.
    Column("number", Integer, nullable=False),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
    #: The answer's status; None when none came (timeout, refused, reset).
    Column("status_code", SmallInteger),
    Column("latency_ms", Integer, nullable=False),
    Column("succeeded", Boolean, nullable=False),
    Column("error", String(500)),
    #: The first characters of the answer's body, for the log.
    Column("response_head", String(1000)),
    Index("ix_webhook_attempts_delivery_id", "delivery_id", "number"),
)

partner_notices = Table(
    "partner_notices",
    UUIDv7AuditBase.metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("program_id", UUID(as_uuid=True), ForeignKey("programs.id"), nullable=False),
    Column("partner_id", UUID(as_uuid=True), ForeignKey("partners.id"), nullable=False),
    #: What it is about (``webhook-endpoint-disabled``).
    Column("kind", String(64), nullable=False),
    #: An e-mail's subject and text: there is no mailer yet, a later one
    #: sends the rows whose ``sent_at`` is None.
    Column("subject", String(300), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("sent_at", DateTime(timezone=True)),
    Index("ix_partner_notices_partner_id", "partner_id", "created_at"),
)

CONSTRAINTS = (race("uq_webhook_deliveries_endpoint_id", "delivery of an event"),)
