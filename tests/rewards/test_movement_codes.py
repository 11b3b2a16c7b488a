"""Each kind of movement is posted under a transfer code of its own
(``core.codes``), so that finance reads it from the ledger: threshold
bonuses, bought points and their refunds, and points paid at a checkout no
longer pass for adjustments or catalog redemptions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from api.stripe.events import handle_event
from api.stripe.gateway import POINTS_PURCHASE
from core.codes import TransferCode
from core.models import Member, Program
from core.principal import system
from ledger import Ledger, Transfer, TransferFlags
from rewards.bought_points import price_of_points
from rewards.holds import Capture, HoldRequest, capture_hold, hold_points
from rewards.programs import Enrolment, enrol_member
from rewards.purchase_recording import record_purchase
from rewards.purchases import PurchaseEvent
from rewards.rule_versions import draft_rules, publish_rules
from rewards.rules import EarnRules
from rewards.settlement import settle_matured_earnings
from rewards.tiers import ThresholdSpec, define_threshold
from tests.conftest import NewProgram


async def wallet_codes(ledger: Ledger, member: Member) -> list[tuple[TransferCode, str]]:
    """The wallet's movements, oldest first, by code and phase."""
    page = await ledger.history(member.wallet_account_id, limit=50)
    phase = {0: "posted", TransferFlags.PENDING: "pending", TransferFlags.POST_PENDING: "post"}
    return [(TransferCode(t.code), phase[t.flags & 6]) for t in reversed(page.transfers)]


async def enrol(session: AsyncSession, ledger: Ledger, program: Program, name: str) -> Member:
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id=name), principal=system("test")
    )
    await session.commit()
    return member


async def test_a_threshold_bonus_is_earned_and_settled_as_one(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program(return_window_days=30)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    version = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(1)), principal=system("test")
    )
    await publish_rules(
        session, program, version.version, start, now=start, principal=system("test")
    )
    await define_threshold(
        session,
        program,
        ThresholdSpec(code="spend-5k", amount_minor=5_000, bonus_points=500),
        principal=system("test"),
    )
    member = await enrol(session, ledger, program, "eve")
    day = start + timedelta(days=1)
    event = PurchaseEvent(
        member="eve", order_id="E-1", amount_minor=6_000, currency="ZAR", occurred_at=day
    )
    await record_purchase(session, ledger, program, event, now=day, principal=system("test"))
    await session.commit()
    await settle_matured_earnings(session, ledger, day + timedelta(days=31), program=program)
    await session.commit()
    assert sorted(await wallet_codes(ledger, member)) == sorted(
        [
            (TransferCode.PURCHASE_EARN, "pending"),
            (TransferCode.THRESHOLD_BONUS, "pending"),
            (TransferCode.PURCHASE_EARN, "post"),
            (TransferCode.THRESHOLD_BONUS, "post"),
        ]
    )


async def test_a_captured_hold_is_a_points_payment(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    member = await enrol(session, ledger, program, "payer")
    [funding] = await ledger.create_transfers(
        [
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=program.issuance_account_id,
                credit_account_id=member.wallet_account_id,
                amount=500,
                ledger=program.ledger_id,
                code=TransferCode.ADJUSTMENT,
            )
        ]
    )
    assert funding.result == "ok"
    now = datetime.now(UTC)
    hold = await hold_points(
        session, ledger, program, member, "k-1", HoldRequest(order_ref="O-1", amount_minor=300), now
    )
    await session.commit()
    await capture_hold(
        session, ledger, program, hold.id, Capture(points=200), now, principal=system("test")
    )
    await session.commit()
    assert await wallet_codes(ledger, member) == [
        (TransferCode.ADJUSTMENT, "posted"),
        (TransferCode.POINTS_PAYMENT, "pending"),
        (TransferCode.POINTS_PAYMENT, "post"),
    ]


async def test_bought_points_and_their_refund_have_codes_of_their_own(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram
) -> None:
    program = await new_program()
    member = await enrol(session, ledger, program, "payer")
    intent = f"pi_{uuid.uuid4().hex[:12]}"
    metadata = {
        "kind": POINTS_PURCHASE,
        "program": program.slug,
        "member": "payer",
        "points": "400",
    }
    price = price_of_points(program, 400)
    paid = {"id": intent, "amount_received": price, "currency": "zar", "metadata": metadata}
    outcome = await handle_event(
        session, ledger, {"type": "payment_intent.succeeded", "data": {"object": paid}}
    )
    assert outcome == "points bought: 400"
    refund = {
        "id": f"ch_{intent}",
        "payment_intent": intent,
        "amount_refunded": price // 2,
        "metadata": metadata,
    }
    await handle_event(session, ledger, {"type": "charge.refunded", "data": {"object": refund}})
    await session.commit()
    assert await wallet_codes(ledger, member) == [
        (TransferCode.BOUGHT_POINTS, "posted"),
        (TransferCode.BOUGHT_POINTS_REFUND, "posted"),
    ]
