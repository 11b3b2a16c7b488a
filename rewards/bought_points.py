"""Points a member buys with money: credited once the payment has
succeeded, never beyond what it paid, and taken back in proportion when it
is refunded (what the wallet no longer holds becomes the member's debt).

Nothing here knows who took the payment. A payment provider's integration
(today ``api.stripe``) turns what the provider reports into these calls,
naming the payment by the provider's id for it (a Stripe PaymentIntent's
id). Each payment is kept as a row (``points_purchases``) when its points
are credited: a refund names only the payment, and it is resolved against
that row, so the program and the member are the ones recorded when the
payment succeeded, whatever the refund carries.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.codes import TransferCode, derived_id
from core.errors import DomainError
from core.models import Member, Program
from core.principal import Principal
from ledger import Ledger, Transfer
from rewards.end_of_earning import check_earning_in
from rewards.errors import ProgramSunsetting
from rewards.programs import record_transfers, take_back_points
from rewards.rules import points_for_return


class PaymentShort(DomainError):
    """The payment does not cover the points it names (or is in another
    currency than the program's): nothing is credited."""

    type_slug = "payment-short"


def price_of_points(program: Program, points: int) -> int:
    """What ``points`` cost, in minor units: their redemption value, rounded up."""
    return math.ceil(Decimal(points) * program.point_value_minor)


class PointsPaid(msgspec.Struct, kw_only=True, frozen=True):
    """A succeeded payment for points, as the provider reports it."""

    payment_id: Annotated[str, msgspec.Meta(description="The provider's id of the payment.")]
    points: int
    #: What was paid, in minor units of ``currency`` (the provider's own case).
    paid_minor: int
    currency: str
    #: When the member started the payment: points paid for before the end
    #: of earning are credited when the payment succeeds after it (until
    #: the sunset). None: when it is credited.
    started_at: datetime | None = None


class BoughtPoints(msgspec.Struct, kw_only=True, frozen=True):
    payment_id: str
    points: int
    paid_minor: int
    #: The payment's points were credited before: nothing moved twice.
    replayed: bool


class BoughtPointsRefund(msgspec.Struct, kw_only=True, frozen=True):
    payment_id: str
    #: The refunded total so far (at most what was paid).
    refunded_minor: int
    #: Points taken back by this refund, and of those the debt recorded.
    points: int
    debt_points: int
    #: Nothing new was refunded (the same total reported again).
    replayed: bool


def bought_lot(program: Program, payment_id: str) -> uuid.UUID:
    """The credit of a payment's points, and so the id of their lot."""
    return derived_id(program.id, "bought", payment_id)


#: A payment for points was refused after the end of earning: the money was
#: taken and no points credited, so it goes back to the member. The payment
#: provider's integration subscribes to it and refunds the payment in full
#: (today ``api.stripe.refunds``), recording it with
#: ``record_refused_payment_refund``; operators' webhooks take it too, to
#: know of it. Emitted in the refusing transaction: a caller that rolls it
#: back (nothing recorded) sends nothing; the Stripe inbox, which records
#: the refusal, sends it.
PAYMENT_REFUSED = "rewards.points_payment_refused"

#: The audit action of a refused payment's refund.
REFUSED_PAYMENT_REFUND = "points.refused_payment_refund"


async def _check_earning(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    paid: PointsPaid,
    now: datetime,
) -> None:
    """Refuse a new payment's points after the end of earning, unless they
    were credited already (a retry whose row was rolled back)."""
    try:
        await check_earning_in(session, program, min(paid.started_at or now, now), now)
    except ProgramSunsetting:
        if not await ledger.lookup_transfers([bought_lot(program, paid.payment_id)]):
            # The row just inserted goes too: a caller that records the
            # refusal (the Stripe inbox) commits its transaction.
            await session.execute(
                text("DELETE FROM points_purchases WHERE payment_intent = :payment"),
                {"payment": paid.payment_id},
            )
            await outbox.emit(
                session,
                PAYMENT_REFUSED,
                f"program:{program.id}",
                {
                    "payment_id": paid.payment_id,
                    "member": member.external_id,
                    "points": paid.points,
                    "paid_minor": paid.paid_minor,
                    "currency": paid.currency.upper(),
                    "reason": "the program's earning has ended (sunset)",
                },
            )
            raise


def _subject(program: Program, member: Member) -> str:
    return _member_subject(program, member.external_id)


def _member_subject(program: Program, member: str) -> str:
    return f"program:{program.slug}:member:{member}"


class RefusedPaymentRefund(msgspec.Struct, kw_only=True, frozen=True):
    """The money of a refused payment (``PAYMENT_REFUSED``) given back, as
    the payment provider reports it."""

    payment_id: str
    #: The member the refused payment named (its external id).
    member: str
    #: The provider's id of the refund made for the refusal; None when the
    #: payment had been refunded in full before (by hand, say), so none was.
    refund_id: str | None
    #: What the refund gives back, in minor units (of all refunds, when
    #: none was made).
    refunded_minor: int
    #: The provider's state of the refund (``succeeded``, ``pending``...).
    status: str


async def record_refused_payment_refund(
    session: AsyncSession,
    program_id: uuid.UUID,
    refund: RefusedPaymentRefund,
    *,
    principal: Principal,
) -> bool:
    """The audit line of a refused payment's refund, once per payment:
    False if it was written before (the refusal reported twice, each
    refunded by the one refund). No points move: none were credited."""
    program = await session.get_one(Program, program_id)
    subject = _member_subject(program, refund.member)
    if await audit.recorded(
        session, REFUSED_PAYMENT_REFUND, subject, payment_intent=refund.payment_id
    ):
        return False
    await audit.record(
        session,
        principal,
        REFUSED_PAYMENT_REFUND,
        subject,
        {
            "payment_intent": refund.payment_id,
            "refund": refund.refund_id,
            "refunded_minor": refund.refunded_minor,
            "status": refund.status,
        },
    )
    return True


async def credit_bought_points(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    paid: PointsPaid,
    *,
    principal: Principal,
    now: datetime | None = None,
) -> BoughtPoints:
    """Credit the points a payment bought, once per payment, with the row a
    refund will be resolved against and the audit line.

    The transfer goes through the ledger's writer (so that a refund later in
    the same transaction can post through it too) and commits before the
    session: a retry after a failure between the two finds it (``exists``)
    and writes the row and the audit line that are missing.

    The points named travel with the payment, but the amount is what was
    paid: a payment that does not cover its points is ``PaymentShort``.

    From a sunset's end of earning a new payment's points are refused
    (``ProgramSunsetting``, ``rewards.end_of_earning``); a payment credited
    before is answered as ever."""
    price = price_of_points(program, paid.points)
    if (
        paid.points <= 0
        or paid.paid_minor <= 0
        or paid.currency.upper() != program.currency
        or paid.paid_minor < price
    ):
        raise PaymentShort(f"paid {paid.paid_minor} {paid.currency} for {paid.points} points")
    inserted = await session.execute(
        text(
            "INSERT INTO points_purchases (payment_intent, program_id, member_id, points,"
            " amount_minor) VALUES (:payment, :program, :member, :points, :paid)"
            " ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {
            "payment": paid.payment_id,
            "program": program.id,
            "member": member.id,
            "points": paid.points,
            "paid": paid.paid_minor,
        },
    )
    if inserted.first() is not None:
        await _check_earning(session, ledger, program, member, paid, now or datetime.now(UTC))
    [outcome] = await record_transfers(
        ledger,
        [
            Transfer(
                id=bought_lot(program, paid.payment_id),
                debit_account_id=program.issuance_account_id,
                credit_account_id=member.wallet_account_id,
                amount=paid.points,
                ledger=program.ledger_id,
                code=TransferCode.BOUGHT_POINTS,
                metadata={"payment_intent": paid.payment_id},
            )
        ],
    )
    subject = _subject(program, member)
    made = outcome.result == "exists" and await audit.recorded(
        session, "points.buy", subject, payment_intent=paid.payment_id
    )
    if not made:
        await audit.record(
            session,
            principal,
            "points.buy",
            subject,
            {
                "payment_intent": paid.payment_id,
                "points": paid.points,
                "amount_minor": paid.paid_minor,
            },
        )
    return BoughtPoints(
        payment_id=paid.payment_id, points=paid.points, paid_minor=paid.paid_minor, replayed=made
    )


async def refund_bought_points(
    session: AsyncSession,
    ledger: Ledger,
    payment_id: str,
    refunded_minor: int,
    *,
    principal: Principal,
) -> BoughtPointsRefund | None:
    """Take back the share of bought points that the refunded total so far
    pays back (cumulative, like returns: each refund takes only what is
    new); None if the payment bought no points (that ``principal`` sees).

    The reversal goes through the ledger's writer before the session
    commits; a retry after a failure between the two reuses it (its ids
    derive from the payment and the total), then records the row's new
    totals and the audit line together."""
    # The tenant in the query: a principal of another program neither sees
    # nor locks the row.
    row = (
        await session.execute(
            text(
                "SELECT program_id, member_id, points, amount_minor, refunded_minor,"
                " points_reversed FROM points_purchases WHERE payment_intent = :payment"
                " AND (CAST(:program AS uuid) IS NULL OR program_id = CAST(:program AS uuid))"
                " FOR UPDATE"
            ),
            {"payment": payment_id, "program": principal.program_id},
        )
    ).first()
    if row is None:
        return None
    program = await session.get_one(Program, row.program_id)
    member = await session.get_one(Member, row.member_id)
    refunded = min(refunded_minor, row.amount_minor)
    if refunded <= row.refunded_minor:
        return BoughtPointsRefund(
            payment_id=payment_id,
            refunded_minor=row.refunded_minor,
            points=0,
            debt_points=0,
            replayed=True,
        )
    reversed_after = points_for_return(row.points, row.amount_minor, refunded)
    points = reversed_after - row.points_reversed
    debt = 0
    if points:
        debt = await take_back_points(
            session,
            ledger,
            program,
            member,
            ("refund", payment_id, f"refunded-to-{refunded}"),
            points,
            {"payment_intent": payment_id, "refunded_minor": refunded},
            code=TransferCode.BOUGHT_POINTS_REFUND,
            # The refunded points are the payment's own: its lot gives
            # first, wherever it still is, before the wallet's oldest.
            lots=[bought_lot(program, payment_id)],
        )
    await session.execute(
        text(
            "UPDATE points_purchases SET refunded_minor = :refunded, points_reversed = :reversed,"
            " debt_points = debt_points + :debt WHERE payment_intent = :payment"
        ),
        {"refunded": refunded, "reversed": reversed_after, "debt": debt, "payment": payment_id},
    )
    # With the new totals: a refund seen again finds them and writes nothing.
    await audit.record(
        session,
        principal,
        "points.refund",
        _subject(program, member),
        {
            "payment_intent": payment_id,
            "refunded_minor": refunded,
            "points": points,
            "debt": debt,
        },
    )
    return BoughtPointsRefund(
        payment_id=payment_id,
        refunded_minor=refunded,
        points=points,
        debt_points=debt,
        replayed=False,
    )
