"""Payments reported by Stripe, as rewards events.

The webhook endpoint (``api``) verifies signatures and stores each event once
in the ``stripe_events`` inbox; the worker hands each stored event to
``process_inbox``, which turns it into domain use cases:

- ``payment_intent.succeeded`` paying for points (metadata ``kind`` =
  ``points_purchase``) credits the points bought;
- ``payment_intent.succeeded`` for an order, or ``charge.succeeded`` of a
  charge without a payment intent, is a purchase (the order id is the payment
  intent's or the charge's id);
- ``charge.refunded`` returns the refunded part of that purchase, or takes
  back the refunded share of points bought (as debt if they were spent).

Payments name their member with metadata ``program`` and ``member``. Every
step is idempotent (order, return and transfer ids derive from Stripe's ids),
so an event processed twice changes nothing. Each change is audited as
``system:stripe``, once: atomic steps write their line in their own
transaction, and bought points (posted through the ledger's writer) get
theirs from whichever run finds none.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit
from core.codes import TransferCode, derived_id
from core.errors import DomainError
from core.members import get_member
from core.models import Member, Program
from core.principal import system
from core.programs import get_program
from ledger import Ledger, Transfer
from rewards.programs import record_transfers, take_back_points
from rewards.purchases import PurchaseEvent, ReturnEvent, record_purchase, return_purchase
from rewards.rules import points_for_return

log = logging.getLogger(__name__)

POINTS_PURCHASE = "points_purchase"
#: Who acts, in the audit trail, for what Stripe reports.
STRIPE = system("stripe")


def price_of_points(program: Program, points: int) -> int:
    """What ``points`` cost, in minor units: their redemption value, rounded up."""
    return math.ceil(Decimal(points) * program.point_value_minor)


async def process_inbox(
    sessions: async_sessionmaker[AsyncSession], ledger: Ledger, limit: int = 100
) -> int:
    """Process stored, unprocessed events one at a time, each in its own
    transaction (claimed with SKIP LOCKED, so workers share the inbox)."""
    processed = 0
    for _ in range(limit):
        async with sessions() as session, session.begin():
            row = (
                await session.execute(
                    text(
                        "SELECT id, payload FROM stripe_events WHERE processed_at IS NULL"
                        " ORDER BY received_at LIMIT 1 FOR UPDATE SKIP LOCKED"
                    )
                )
            ).first()
            if row is None:
                return processed
            try:
                async with session.begin_nested():
                    outcome = await handle_event(session, ledger, row.payload)
            except DomainError as error:
                # A business refusal is final: keep it visible, do not retry.
                outcome = f"refused: {error.type_slug}: {error}"[:200]
                log.warning("stripe event %s refused: %s", row.id, error)
            await session.execute(
                text(
                    "UPDATE stripe_events SET processed_at = now(), outcome = :outcome"
                    " WHERE id = :id"
                ),
                {"outcome": outcome, "id": row.id},
            )
            processed += 1
    return processed


async def handle_event(session: AsyncSession, ledger: Ledger, event: dict[str, Any]) -> str:
    kind = event.get("type")
    data = event.get("data", {}).get("object", {})
    metadata = data.get("metadata") or {}
    if not metadata.get("program") or not metadata.get("member"):
        return "ignored: no member in metadata"
    program = await get_program(session, metadata["program"])
    member = await get_member(session, program, metadata["member"])
    now = datetime.now(UTC)
    at = datetime.fromtimestamp(int(data.get("created") or now.timestamp()), UTC)

    if kind == "payment_intent.succeeded" and metadata.get("kind") == POINTS_PURCHASE:
        points = int(metadata["points"])
        paid = int(data.get("amount_received") or data.get("amount") or 0)
        price = price_of_points(program, points)
        if str(data.get("currency", "")).upper() != program.currency or paid < price:
            # The metadata is ours, but the amount is what was paid: never
            # credit more points than the payment covers.
            return f"refused: paid {paid} {data.get('currency')} for {points} points"
        # Kept as a row, so that a refund can take its share back.
        await session.execute(
            text(
                "INSERT INTO points_purchases (payment_intent, program_id, member_id, points,"
                " amount_minor) VALUES (:pi, :program, :member, :points, :paid)"
                " ON CONFLICT DO NOTHING"
            ),
            {
                "pi": data["id"],
                "program": program.id,
                "member": member.id,
                "points": points,
                "paid": paid,
            },
        )
        await record_transfers(
            ledger,
            [
                Transfer(
                    id=derived_id(program.id, "bought", data["id"]),
                    debit_account_id=program.issuance_account_id,
                    credit_account_id=member.wallet_account_id,
                    amount=points,
                    ledger=program.ledger_id,
                    code=TransferCode.BOUGHT_POINTS,
                    metadata={"payment_intent": data["id"]},
                )
            ],
        )
        subject = f"program:{program.slug}:member:{member.external_id}"
        if not await audit.recorded(session, "points.buy", subject, payment_intent=data["id"]):
            await audit.record(
                session,
                STRIPE,
                "points.buy",
                subject,
                {"payment_intent": data["id"], "points": points, "amount_minor": paid},
            )
        return f"points bought: {points}"
    if kind == "payment_intent.succeeded" or (
        kind == "charge.succeeded" and not data.get("payment_intent")
    ):
        result = await record_purchase(
            session,
            ledger,
            program,
            PurchaseEvent(
                member=member.external_id,
                order_id=data["id"],
                amount_minor=int(data.get("amount_received") or data["amount"]),
                currency=str(data["currency"]).upper(),
                occurred_at=min(at, now),
            ),
            now,
            # The event's transaction only marks the inbox row after this:
            # the purchase, its ledger transfers and that mark commit together.
            atomic=True,
        )
        if not result.replayed:
            await audit.record(
                session,
                STRIPE,
                "purchase.record",
                f"program:{program.slug}:order:{result.order_id}",
                {
                    "points": result.points,
                    "amount_minor": int(data.get("amount_received") or data["amount"]),
                },
            )
        return f"purchase: {result.points} points"
    if kind == "charge.refunded":
        order = data.get("payment_intent") or data["id"]
        refunded = int(data.get("amount_refunded") or 0)
        bought = await _refund_bought_points(session, ledger, program, order, refunded)
        if bought is not None:
            return bought
        # Cumulative refunds: the return id is the refunded total so far, so
        # each new refund returns only what is new.
        already = await session.scalar(
            text("SELECT returned_minor FROM purchases WHERE program_id = :p AND order_id = :o"),
            {"p": program.id, "o": order},
        )
        if already is None:
            return "ignored: no such purchase"
        if refunded <= already:
            return "ignored: nothing new refunded"
        returned = await return_purchase(
            session,
            ledger,
            program,
            order,
            ReturnEvent(return_id=f"refunded-to-{refunded}", amount_minor=refunded - int(already)),
        )
        if not returned.replayed:
            await audit.record(
                session,
                STRIPE,
                "purchase.return",
                f"program:{program.slug}:order:{order}",
                returned,
            )
        return f"return: {returned.points_reversed} points"
    return f"ignored: {kind}"


async def _refund_bought_points(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    payment_intent: str,
    refunded: int,
) -> str | None:
    """Take back the share of bought points a refund pays back (cumulative,
    like returns); None if the payment bought no points."""
    row = (
        await session.execute(
            text(
                "SELECT member_id, points, amount_minor, refunded_minor, points_reversed FROM"
                " points_purchases WHERE payment_intent = :pi AND program_id = :program"
                " FOR UPDATE"
            ),
            {"pi": payment_intent, "program": program.id},
        )
    ).first()
    if row is None:
        return None
    # The member who bought them, whatever the refund's metadata says.
    member = await session.get_one(Member, row.member_id)
    refunded = min(refunded, row.amount_minor)
    if refunded <= row.refunded_minor:
        return "ignored: nothing new refunded"
    reversed_after = points_for_return(row.points, row.amount_minor, refunded)
    points = reversed_after - row.points_reversed
    debt = 0
    if points:
        debt = await take_back_points(
            session,
            ledger,
            program,
            member,
            ("refund", payment_intent, f"refunded-to-{refunded}"),
            points,
            {"payment_intent": payment_intent, "refunded_minor": refunded},
            code=TransferCode.BOUGHT_POINTS_REFUND,
        )
    await session.execute(
        text(
            "UPDATE points_purchases SET refunded_minor = :refunded, points_reversed = :reversed,"
            " debt_points = debt_points + :debt WHERE payment_intent = :pi"
        ),
        {"refunded": refunded, "reversed": reversed_after, "debt": debt, "pi": payment_intent},
    )
    # In the transaction that records the refund: written once with it.
    await audit.record(
        session,
        STRIPE,
        "points.refund",
        f"program:{program.slug}:member:{member.external_id}",
        {
            "payment_intent": payment_intent,
            "refunded_minor": refunded,
            "points": points,
            "debt": debt,
        },
    )
    return f"refund of bought points: {points} points back ({debt} as debt)"
