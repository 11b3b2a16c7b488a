"""Points for behaviour: events the program values (a gym visit, a survey, an
e-statement sign-up), priced by the rule version in force at the event's
time, within the rule's caps per member per day and month, and within the
rule's budget, which is never overspent.

Caps are counted under the member's row lock and budgets under their
counter's row lock, so concurrent events cannot both take the last points.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, calendar
from core.codes import TransferCode, derived_id
from core.errors import Conflict
from core.members import get_member, require_active
from core.models import Member, Program
from core.principal import Principal
from ledger import Ledger, Transfer
from ledger.bounds import MOMENT_RULE, ExternalId, NonEmpty, Text100, check_moment
from rewards.budgets import take_from_budget
from rewards.connections import session_connection
from rewards.end_of_earning import check_earning_in
from rewards.errors import InvalidPurchase
from rewards.programs import record_transfers
from rewards.rule_versions import parse_rules, rules_in_force
from rewards.rules import Moment


class BehaviourEvent(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    member: Annotated[ExternalId, msgspec.Meta(description="The member's external id.")]
    event_id: Annotated[
        ExternalId,
        msgspec.Meta(
            description="The operator's id of the event, its idempotency key: sent again, it"
            " answers the first outcome."
        ),
    ]
    event: Annotated[
        Text100,
        NonEmpty,
        msgspec.Meta(
            description="The behaviour (e.g. gym_visit), as the earn rules' `events` name it."
        ),
    ]
    occurred_at: Annotated[
        Moment,
        msgspec.Meta(
            description="When it happened (not in the future): it picks the rules in force"
            " and the day and month (of the program's time zone) the caps count in."
            f" {MOMENT_RULE}"
        ),
    ]

    def __post_init__(self) -> None:
        check_moment("occurred_at", self.occurred_at)


class EventOutcome(msgspec.Struct, kw_only=True, frozen=True):
    event_id: Annotated[str, msgspec.Meta(description="The event's id, as sent.")]
    points: Annotated[int, msgspec.Meta(description="Points granted (0 or more).")]
    limited_by: Annotated[
        str | None,
        msgspec.Meta(
            description="Why fewer points than the rule's were granted: `no_rule` (no rule"
            " for the event), `day_cap` or `month_cap` (the member's cap per day or month),"
            " `budget` (the rule's budget ran out); none when the rule's points were granted."
        ),
    ]
    replayed: Annotated[
        bool,
        msgspec.Meta(
            description="True when this event id was recorded before: the first outcome"
            " again, nothing granted twice."
        ),
    ]


#: First key of the advisory lock on one event id (the ledger writer's lock
#: and the opening of a program have keys of their own).
_EVENT_ID_LOCK = 1702260340


async def record_event(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    event: BehaviourEvent,
    now: datetime,
    *,
    principal: Principal,
) -> EventOutcome:
    """Grant the event's points and record it, audited. The points commit
    through the ledger's writer first; a retry after a failure before the
    event's row committed finds the transfer (``exists``) and writes the row
    and its audit line, which commit together: one line per event."""
    member = await get_member(session, program, event.member)
    # The id is looked up under a lock of its own: a duplicate sent at the
    # same moment waits for the first to commit, then answers its outcome.
    # The id is the program's, not the member's, so the member's lock would
    # let two members' events under one id both miss the other.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(:key, hashtext(:id))"),
        {"key": _EVENT_ID_LOCK, "id": f"{program.id}:{event.event_id}"},
    )
    earlier = (
        await session.execute(
            text(
                "SELECT member_id, event, occurred_at, points, limited_by FROM behaviour_events"
                " WHERE program_id = :program AND event_id = :id"
            ),
            {"program": program.id, "id": event.event_id},
        )
    ).first()
    if earlier is not None:
        if (earlier.member_id, earlier.event, earlier.occurred_at) != (
            member.id,
            event.event,
            event.occurred_at,
        ):
            raise Conflict(f"event {event.event_id!r} was recorded with other fields")
        return EventOutcome(
            event_id=event.event_id,
            points=earlier.points,
            limited_by=earlier.limited_by,
            replayed=True,
        )
    require_active(member)
    if event.occurred_at > now + timedelta(minutes=5):
        raise InvalidPurchase("occurred_at is in the future")
    await check_earning_in(session, program, event.occurred_at, now)

    version = await rules_in_force(session, program, event.occurred_at)
    rule = parse_rules(version.rules).events.get(event.event) if version else None
    points, limited_by = (rule.points, None) if rule else (0, "no_rule")
    if rule is not None and points:
        await session.execute(
            text("SELECT 1 FROM members WHERE id = :id FOR UPDATE"), {"id": member.id}
        )
        # The program's days and months, not UTC's.
        day = calendar.local_day(event.occurred_at, program.time_zone)
        month = calendar.local_month(event.occurred_at, program.time_zone)
        for cap, (start, end), name in (
            (rule.per_member_per_day, day, "day_cap"),
            (rule.per_member_per_month, month, "month_cap"),
        ):
            if cap is None:
                continue
            used = await _granted_between(session, member, event.event, start, end)
            if points > cap - used:
                points, limited_by = max(0, cap - used), name
        if rule.budget_points is not None and points:
            assert version is not None
            granted = await take_from_budget(
                await session_connection(session),
                program.id,
                version.version,
                event.event,
                rule.budget_points,
                points,
            )
            if granted < points:
                points, limited_by = granted, "budget"
    transfer_id = None
    if points:
        transfer_id = derived_id(program.id, "event", event.event_id)
        await record_transfers(
            ledger,
            [
                Transfer(
                    id=transfer_id,
                    debit_account_id=program.issuance_account_id,
                    credit_account_id=member.wallet_account_id,
                    amount=points,
                    ledger=program.ledger_id,
                    code=TransferCode.EVENT_EARN,
                    metadata={"event": event.event, "event_id": event.event_id},
                )
            ],
        )
    await session.execute(
        text(
            "INSERT INTO behaviour_events (id, program_id, member_id, event_id, event,"
            " occurred_at, rule_version, points, limited_by, transfer_id) VALUES (:id,"
            " :program, :member, :event_id, :event, :at, :version, :points, :limited,"
            " :transfer)"
        ),
        {
            "id": derived_id(program.id, "event-row", event.event_id),
            "program": program.id,
            "member": member.id,
            "event_id": event.event_id,
            "event": event.event,
            "at": event.occurred_at,
            "version": version.version if version else None,
            "points": points,
            "limited": limited_by,
            "transfer": transfer_id,
        },
    )
    outcome = EventOutcome(
        event_id=event.event_id, points=points, limited_by=limited_by, replayed=False
    )
    await audit.record(
        session,
        principal,
        "event.record",
        f"program:{program.slug}:event:{event.event_id}",
        outcome,
    )
    return outcome


async def _granted_between(
    session: AsyncSession, member: Member, event: str, start: datetime, end: datetime
) -> int:
    used = await session.scalar(
        text(
            "SELECT coalesce(sum(points), 0) FROM behaviour_events WHERE member_id = :member"
            " AND event = :event AND occurred_at >= :start AND occurred_at < :end"
        ),
        {"member": member.id, "event": event, "start": start, "end": end},
    )
    return int(used or 0)
