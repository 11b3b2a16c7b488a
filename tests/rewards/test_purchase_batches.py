"""A batch of purchase events gives what the same events give one at a time.

``record_purchases`` prices, counts tiers and thresholds for a whole batch
with set-based statements; the reference is ``record_purchase`` called once
per event in the same order, on a twin program.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict, DomainError, MemberNotActive, NotFound
from core.members import get_member
from core.models import MemberStatus, Program
from core.principal import system
from ledger import Ledger
from rewards.connections import session_connection
from rewards.programs import Enrolment, enrol_member, member_balance
from rewards.purchase_recording import record_purchase, record_purchases
from rewards.purchases import PurchaseEvent, PurchaseOutcome
from rewards.rule_versions import draft_rules, publish_rules
from rewards.rules import Bonus, EarnRules, Item
from rewards.tiers import ThresholdSpec, TierSpec, define_threshold, define_tier
from tests.conftest import NewProgram

YEAR = datetime(2026, 1, 1, tzinfo=UTC)
MEMBERS = ["ann", "bob", "cy", "dee"]


async def twin(session: AsyncSession, ledger: Ledger, new_program: NewProgram) -> Program:
    """A program with a ladder, a threshold reward, tier multipliers and a
    budgeted bonus: everything a batch must get right in order."""
    program = await new_program(return_window_days=30)
    for rank, (code, threshold) in enumerate((("blue", 0), ("silver", 5_000), ("gold", 12_000))):
        spec = TierSpec(code=code, name=code, rank=rank + 1, threshold=threshold)
        await define_tier(session, program, spec, principal=system("test"))
    await define_threshold(
        session,
        program,
        ThresholdSpec(code="spend-8k", amount_minor=8_000, bonus_points=300),
        principal=system("test"),
    )
    rules = EarnRules(
        points_per_unit=Decimal(1),
        tier_multipliers={"silver": Decimal("1.5"), "gold": Decimal(2)},
        bonuses=(
            Bonus(
                name="launch",
                multiplier=Decimal(2),
                starts_at=YEAR,
                ends_at=YEAR + timedelta(days=60),
                budget_points=250,
            ),
        ),
    )
    version = await draft_rules(session, program, rules, principal=system("test"))
    start = YEAR - timedelta(days=1)
    await publish_rules(
        session, program, version.version, start, now=start, principal=system("test")
    )
    for name in MEMBERS:
        await enrol_member(
            session, ledger, program, Enrolment(external_id=name), principal=system("test")
        )
    member = await get_member(session, program, "dee")
    member.status = MemberStatus.FROZEN
    await session.commit()
    return program


def events() -> list[PurchaseEvent]:
    """Purchases spread over members and months, with replays, a conflict,
    an unknown member and a frozen one."""
    chosen = random.Random(7)
    made: list[PurchaseEvent] = []
    for n in range(40):
        member = chosen.choice(MEMBERS)
        at = YEAR + timedelta(days=chosen.randrange(0, 90), seconds=n)
        amount = chosen.choice([500, 1_000, 2_500, 4_000])
        items: tuple[Item, ...] = ()
        if n % 5 == 0:
            items = (Item(sku="a", amount_minor=amount - 100), Item(sku="b", amount_minor=100))
        made.append(
            PurchaseEvent(
                member=member,
                order_id=f"O-{n}",
                amount_minor=amount,
                currency="ZAR",
                occurred_at=at,
                items=items,
            )
        )
    active = [e for e in made if e.member != "dee"]
    made.append(active[0])  # a replay inside the batch
    made.append(PurchaseEvent(**{**_fields(active[1]), "amount_minor": 999}))  # a conflict
    made.append(PurchaseEvent(**{**_fields(active[2]), "member": "nobody", "order_id": "X-1"}))
    return made


def _fields(event: PurchaseEvent) -> dict[str, object]:
    return {f: getattr(event, f) for f in event.__struct_fields__}


def describe(answer: PurchaseOutcome | DomainError) -> object:
    if isinstance(answer, DomainError):
        return type(answer).__name__
    return (answer.order_id, answer.points, answer.rule_version, answer.replayed)


async def test_a_batch_gives_what_single_events_give(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    now = YEAR + timedelta(days=100)
    one_by_one = await twin(session, ledger, new_program)
    singles: list[object] = []
    for event in events():
        try:
            singles.append(
                describe(
                    await record_purchase(
                        session, ledger, one_by_one, event, now, principal=system("test")
                    )
                )
            )
            await session.commit()
        except DomainError as error:  # refused before anything was written
            singles.append(describe(error))

    batched = await twin(session, ledger, new_program)
    batch = events()
    answers = await record_purchases(
        await session_connection(session),
        ledger,
        batched,
        batch,
        now,
        principals=[system("test")] * len(batch),
    )
    await session.commit()
    assert [describe(a) for a in answers] == singles
    # The batch saw the same error types the singles raised.
    kinds = {type(a) for a in answers if isinstance(a, DomainError)}
    assert kinds == {Conflict, NotFound, MemberNotActive}
    # Some purchases were priced at an upgraded tier, and the bonus budget ran out.
    assert any(isinstance(a, PurchaseOutcome) and a.points > 2 * 40 for a in answers)

    for name in MEMBERS:
        single = await get_member(session, one_by_one, name)
        batch = await get_member(session, batched, name)
        assert (batch.tier_code, batch.tier_since) == (single.tier_code, single.tier_since)
        mine = await member_balance(ledger, batched, batch)
        theirs = await member_balance(ledger, one_by_one, single)
        assert (mine.available, mine.pending) == (theirs.available, theirs.pending)
    # Each active member crossed 8,000 of spend: one threshold reward each,
    # held (pending) until the crossing purchase's return window ends.
    for name in ("ann", "bob", "cy"):
        member = await get_member(session, batched, name)
        grants = await session.scalar(
            text("SELECT count(*) FROM threshold_grants WHERE member_id = :m"), {"m": member.id}
        )
        assert grants == 1, name
