"""Each use case writes its own audit line, under the principal it is given,
whatever door it was called through (here: none, a direct call), once: a
replay writes no second line, and a retry after the business rows failed
to commit (the ledger having posted already) writes the one line."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from core.principal import ALL_SCOPES, Principal, PrincipalKind
from core.programs import get_program
from ledger import Ledger
from rewards.events import BehaviourEvent, record_event
from rewards.holds import Capture, HoldRequest, capture_hold, hold_points, release_hold
from rewards.privacy import erase_member, export_member
from rewards.programs import Enrolment, ProgramSpec, enrol_member, open_program
from rewards.redeeming import RewardSpec, add_reward
from rewards.rule_versions import draft_rules, publish_rules
from rewards.rules import EarnRules
from rewards.tiers import ThresholdSpec, TierSpec, define_threshold, define_tier
from tests.conftest import NewProgram
from tests.rewards.test_redeeming import funded


def operator_key() -> Principal:
    return Principal(
        kind=PrincipalKind.OPERATOR,
        actor=f"key:auditor-{uuid.uuid4().hex[:8]}",
        scopes=frozenset({ALL_SCOPES}),
    )


async def trail(pool: asyncpg.Pool, principal: Principal) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT action, subject FROM audit_events WHERE actor = $1 ORDER BY occurred_at, id",
        principal.actor,
    )
    return [(row["action"], row["subject"]) for row in rows]


async def test_every_use_case_audits_itself_once(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool
) -> None:
    by = operator_key()
    now = datetime.now(UTC)
    slug = f"audited-{uuid.uuid4().hex[:8]}"
    spec = ProgramSpec(slug=slug, name="Audited", currency="ZAR", point_value_minor=Decimal(1))
    program, _ = await open_program(session, ledger, spec, principal=by)
    version = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(1)), principal=by
    )
    start = now + timedelta(days=1)
    await publish_rules(session, program, version.version, start, now=now, principal=by)
    await add_reward(
        session, program, RewardSpec(sku="MUG", name="Mug", points_price=5), principal=by
    )
    await define_tier(
        session, program, TierSpec(code="gold", name="Gold", rank=1, threshold=1), principal=by
    )
    threshold = ThresholdSpec(code="big", amount_minor=1000, bonus_points=5)
    await define_threshold(session, program, threshold, principal=by)
    enrolment = Enrolment(external_id="ann")
    await enrol_member(session, ledger, program, enrolment, principal=by)
    await session.commit()
    member = await funded(session, ledger, program, "payer", 100)
    event = BehaviourEvent(member="payer", event_id="E-1", event="gym", occurred_at=now)
    await record_event(session, ledger, program, event, now, principal=by)
    # Sent again (before the member is erased below): no second line.
    assert (await record_event(session, ledger, program, event, now, principal=by)).replayed
    holds = [
        await hold_points(
            session,
            ledger,
            program,
            member,
            f"h-{n}",
            HoldRequest(order_ref="o", amount_minor=10),
            now,
        )
        for n in range(2)
    ]
    await capture_hold(session, ledger, program, holds[0].id, Capture(), now, principal=by)
    await release_hold(session, ledger, program, holds[1].id, now, principal=by)
    await export_member(session, ledger, program, member, now, principal=by, others=())
    alias = await erase_member(session, program, member, principal=by, others=())
    await session.commit()
    expected = [
        ("program.open", f"program:{slug}"),
        ("rules.draft", f"program:{slug}:rules:1"),
        ("rules.publish", f"program:{slug}:rules:1"),
        ("catalog.add", f"program:{slug}:reward:MUG"),
        ("tier.define", f"program:{slug}:tier:gold"),
        ("threshold.define", f"program:{slug}:threshold:big"),
        ("member.enrol", f"program:{slug}:member:ann"),
        ("event.record", f"program:{slug}:event:E-1"),
        ("hold.capture", f"program:{slug}:hold:{holds[0].id}"),
        ("hold.release", f"program:{slug}:hold:{holds[1].id}"),
        ("member.export", f"program:{slug}:member:payer"),
        ("member.erase", f"program:{slug}:member:{alias}"),
    ]
    assert await trail(pool, by) == expected

    # Replays answer the first outcome and write no second line.
    await open_program(session, ledger, spec, principal=by)
    await publish_rules(session, program, version.version, start, now=now, principal=by)
    await enrol_member(session, ledger, program, enrolment, principal=by)
    await capture_hold(session, ledger, program, holds[0].id, Capture(), now, principal=by)
    await release_hold(session, ledger, program, holds[1].id, now, principal=by)
    assert await erase_member(session, program, member, principal=by, others=()) == alias
    await session.commit()
    assert await trail(pool, by) == expected


async def test_a_capture_whose_row_did_not_commit_is_audited_once_by_its_retry(
    session: AsyncSession, ledger: Ledger, pool: asyncpg.Pool, new_program: NewProgram
) -> None:
    by = operator_key()
    now = datetime.now(UTC)
    program = await new_program()
    member = await funded(session, ledger, program, "cap", 50)
    hold = await hold_points(
        session, ledger, program, member, "h", HoldRequest(order_ref="o", amount_minor=20), now
    )
    await session.commit()
    slug = program.slug
    await capture_hold(session, ledger, program, hold.id, Capture(), now, principal=by)
    # The capture posted through the ledger's writer; the hold's row and the
    # audit line are lost with the session's transaction.
    await session.rollback()
    assert await trail(pool, by) == []
    program = await get_program(session, by, slug)

    retried = await capture_hold(session, ledger, program, hold.id, Capture(), now, principal=by)
    await session.commit()

    assert (retried.status, retried.captured_points, retried.replayed) == ("captured", 20, False)
    assert await trail(pool, by) == [("hold.capture", f"program:{slug}:hold:{hold.id}")]
