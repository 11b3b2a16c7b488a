"""Recording what the sender's attempts gave, for any number of them, in one
transaction of set-based statements: each delivery moves (delivered, due
again on the retry schedule, or dead-lettered), each attempt joins the log,
each endpoint's run of failures starts, goes on or ends.

An endpoint failing for ``FAILING_LIMIT`` (five days) without a success is
disabled, once: the move from enabled happens under the row's lock, so one
notice is left for the partner (``partner_notices``, an e-mail to send) and
one audit line, not one per failure. Its due deliveries are dead-lettered,
to replay once it is enabled again. A program's own endpoint (its
operators') has no partner to leave a notice for: a WARNING line says it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, DateTime, Integer, SmallInteger, String, bindparam, insert, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.principal import system
from ledger import new_id
from partners.webhook_endpoints import dead_letter_pending
from partners.webhook_models import FAILING_LIMIT, RETRY_DELAYS, DeliveryStatus, partner_notices

log = logging.getLogger(__name__)

#: Who the trail names for what the sender does on its own.
SENDER = system("deliver-webhooks")
NOTICE_KIND = "webhook-endpoint-disabled"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    lease: uuid.UUID
    number: int
    #: The delivery's retries left before this attempt.
    retries_left: int
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    succeeded: bool
    error: str | None
    response_head: str | None


@dataclass(frozen=True, kw_only=True)
class NextState:
    status: DeliveryStatus
    next_attempt_at: datetime | None
    retries_left: int


def next_state(outcome: Outcome) -> NextState:
    """Where an attempt leaves its delivery on the retry schedule."""
    if outcome.succeeded:
        return NextState(
            status=DeliveryStatus.SUCCEEDED, next_attempt_at=None, retries_left=outcome.retries_left
        )
    if outcome.retries_left <= 0:
        return NextState(status=DeliveryStatus.DEAD, next_attempt_at=None, retries_left=0)
    delay = RETRY_DELAYS[len(RETRY_DELAYS) - outcome.retries_left]
    return NextState(
        status=DeliveryStatus.PENDING,
        next_attempt_at=outcome.attempted_at + delay,
        retries_left=outcome.retries_left - 1,
    )


_UUIDS = ARRAY(UUID(as_uuid=True))
_MOMENTS = ARRAY(DateTime(timezone=True))

# Only the claim's lease may move a delivery: a delivery replayed, or
# claimed again after its lease ran out, is another attempt's to record. A
# delivery dead-lettered meanwhile (its endpoint disabled) stays dead unless
# this attempt delivered it.
_MOVE_DELIVERIES = text(
    "UPDATE webhook_deliveries d SET status = v.status, next_attempt_at = v.next_attempt_at,"
    " retries_left = v.retries_left, lease = NULL,"
    " delivered_at = CASE WHEN v.status = 'succeeded' THEN v.at END,"
    " dead_at = CASE WHEN v.status = 'dead' THEN v.at ELSE d.dead_at END"
    " FROM unnest(:ids, :leases, :statuses, :nexts, :retries, :ats)"
    " AS v(id, lease, status, next_attempt_at, retries_left, at)"
    " WHERE d.id = v.id AND d.lease = v.lease AND (d.status = 'pending' OR v.status = 'succeeded')"
).bindparams(
    bindparam("ids", type_=_UUIDS),
    bindparam("leases", type_=_UUIDS),
    bindparam("statuses", type_=ARRAY(String())),
    bindparam("nexts", type_=_MOMENTS),
    bindparam("retries", type_=ARRAY(SmallInteger())),
    bindparam("ats", type_=_MOMENTS),
)

# Every attempt made is logged, that of a delivery deleted meanwhile
# (with its endpoint) aside; the delivery's row is locked against that.
_LOG_ATTEMPTS = text(
    "INSERT INTO webhook_attempts (id, delivery_id, number, attempted_at, status_code,"
    " latency_ms, succeeded, error, response_head)"
    " SELECT v.id, v.delivery_id, v.number, v.attempted_at, v.status_code, v.latency_ms,"
    " v.succeeded, v.error, v.response_head"
    " FROM unnest(:ids, :deliveries, :numbers, :ats, :codes, :latencies, :succeeded, :errors,"
    " :heads) AS v(id, delivery_id, number, attempted_at, status_code, latency_ms, succeeded,"
    " error, response_head)"
    " JOIN webhook_deliveries d ON d.id = v.delivery_id FOR KEY SHARE OF d"
).bindparams(
    bindparam("ids", type_=_UUIDS),
    bindparam("deliveries", type_=_UUIDS),
    bindparam("numbers", type_=ARRAY(Integer())),
    bindparam("ats", type_=_MOMENTS),
    bindparam("codes", type_=ARRAY(SmallInteger())),
    bindparam("latencies", type_=ARRAY(Integer())),
    bindparam("succeeded", type_=ARRAY(Boolean())),
    bindparam("errors", type_=ARRAY(String())),
    bindparam("heads", type_=ARRAY(String())),
)

# ``restart``: a success came before this run of failures (or it is the
# last outcome: ``first_failure`` is then NULL). Rows that keep their
# value are not written: a healthy endpoint costs no update.
_FAILING = text(
    "UPDATE webhook_endpoints e SET failing_since = CASE WHEN v.restart THEN v.first_failure"
    " ELSE coalesce(e.failing_since, v.first_failure) END"
    " FROM unnest(:ids, :restarts, :firsts) AS v(id, restart, first_failure)"
    " WHERE e.id = v.id AND e.failing_since IS DISTINCT FROM (CASE WHEN v.restart"
    " THEN v.first_failure ELSE coalesce(e.failing_since, v.first_failure) END)"
).bindparams(
    bindparam("ids", type_=_UUIDS),
    bindparam("restarts", type_=ARRAY(Boolean())),
    bindparam("firsts", type_=_MOMENTS),
)

_DISABLE = text(
    "UPDATE webhook_endpoints SET status = 'disabled', disabled_at = :now,"
    " disabled_reason = :reason, updated_at = now()"
    " WHERE id = ANY(:ids) AND status = 'enabled' AND failing_since <= :cutoff"
    " RETURNING id, program_id, partner_id, url, failing_since"
).bindparams(bindparam("ids", type_=_UUIDS))


async def record_outcomes(
    session: AsyncSession, outcomes: Sequence[Outcome], now: datetime
) -> None:
    if not outcomes:
        return
    states = [next_state(o) for o in outcomes]
    await session.execute(
        _MOVE_DELIVERIES,
        {
            "ids": [o.delivery_id for o in outcomes],
            "leases": [o.lease for o in outcomes],
            "statuses": [s.status.value for s in states],
            "nexts": [s.next_attempt_at for s in states],
            "retries": [s.retries_left for s in states],
            "ats": [o.attempted_at for o in outcomes],
        },
    )
    await session.execute(
        _LOG_ATTEMPTS,
        {
            "ids": [new_id() for _ in outcomes],
            "deliveries": [o.delivery_id for o in outcomes],
            "numbers": [o.number for o in outcomes],
            "ats": [o.attempted_at for o in outcomes],
            "codes": [o.status_code for o in outcomes],
            "latencies": [o.latency_ms for o in outcomes],
            "succeeded": [o.succeeded for o in outcomes],
            "errors": [o.error for o in outcomes],
            "heads": [o.response_head for o in outcomes],
        },
    )
    await _note_failures(session, outcomes, now)


async def _note_failures(session: AsyncSession, outcomes: Sequence[Outcome], now: datetime) -> None:
    by_endpoint: dict[uuid.UUID, list[Outcome]] = {}
    for outcome in sorted(outcomes, key=lambda o: o.attempted_at):
        by_endpoint.setdefault(outcome.endpoint_id, []).append(outcome)
    ids, restarts, firsts = [], [], []
    for endpoint, found in by_endpoint.items():
        successes = [o.attempted_at for o in found if o.succeeded]
        after = [
            o.attempted_at
            for o in found
            if not o.succeeded and (not successes or o.attempted_at > successes[-1])
        ]
        ids.append(endpoint)
        restarts.append(bool(successes))
        firsts.append(after[0] if after else None)
    await session.execute(_FAILING, {"ids": ids, "restarts": restarts, "firsts": firsts})
    failing = [e for e, first in zip(ids, firsts, strict=True) if first is not None]
    if failing:
        await _disable_long_failing(session, failing, now)


async def _disable_long_failing(
    session: AsyncSession, endpoint_ids: list[uuid.UUID], now: datetime
) -> None:
    days = FAILING_LIMIT.days
    disabled = (
        await session.execute(
            _DISABLE,
            {
                "ids": endpoint_ids,
                "now": now,
                "cutoff": now - FAILING_LIMIT,
                "reason": f"disabled after {days} days of failed deliveries",
            },
        )
    ).all()
    if not disabled:
        return
    await dead_letter_pending(session, [row.id for row in disabled], now)
    for row in disabled:
        if row.partner_id is None:
            log.warning(
                "webhook endpoint %s of program %s (%s) disabled: every delivery failed since %s",
                row.id,
                row.program_id,
                row.url,
                row.failing_since.isoformat(),
            )
    notified = [row for row in disabled if row.partner_id is not None]
    if notified:
        await _notify(session, notified, now)
    for row in disabled:
        await audit.record(
            session,
            SENDER,
            "webhook-endpoint.disable",
            f"{_owner(row)}:webhook-endpoint:{row.id}",
            {"reason": "failing", "failing_since": row.failing_since.isoformat()},
        )


def _owner(row: Any) -> str:
    if row.partner_id is None:
        return f"program:{row.program_id}"
    return f"partner:{row.partner_id}"


async def _notify(session: AsyncSession, disabled: Sequence[Any], now: datetime) -> None:
    days = FAILING_LIMIT.days
    await session.execute(
        insert(partner_notices),
        [
            {
                "id": new_id(),
                "program_id": row.program_id,
                "partner_id": row.partner_id,
                "kind": NOTICE_KIND,
                "subject": "Your webhook endpoint was disabled",
                "body": (
                    f"Every delivery to {row.url} has failed since"
                    f" {row.failing_since.isoformat()}, so after {days} days the endpoint"
                    f" {row.id} was disabled at {now.isoformat()}. Its deliveries not yet"
                    " made are kept: fix the endpoint, enable it again (PATCH"
                    " /partner/webhook-endpoints/{id} with status enabled) and replay them"
                    " (POST /partner/webhook-endpoints/{id}/replays)."
                ),
            }
            for row in disabled
        ],
    )
