"""Refunds of purchases that a payment provider reports, as returns.

A provider reports a refund as the total refunded so far on a payment, and
names only the payment: the purchase it paid for is the one recorded under
the payment's id as its order id when the payment succeeded, in whichever
program recorded it. Nothing the refund carries besides (a Stripe Charge's
metadata, which Stripe does not copy from the PaymentIntent) is needed.
"""

from __future__ import annotations

import msgspec
from sqlalchemy import exists
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import Conflict
from core.models import Program
from core.principal import Principal
from core.programs import readable_programs
from ledger import Ledger
from rewards.models import Purchase
from rewards.purchase_repository import lock_purchase
from rewards.purchases import ReturnEvent, ReturnOutcome
from rewards.returns import return_purchase


class PaymentInSeveralPrograms(Conflict):
    """Two programs recorded a purchase under the payment's id: which one a
    refund returns cannot be told from the payment alone."""

    type_slug = "payment-in-several-programs"


class RefundedPurchase(msgspec.Struct, kw_only=True, frozen=True):
    program: str
    order_id: str
    #: The return this refund made; None when nothing new was refunded.
    returned: ReturnOutcome | None


async def return_refunded_part(
    session: AsyncSession,
    ledger: Ledger,
    payment_id: str,
    refunded_minor: int,
    *,
    principal: Principal,
) -> RefundedPurchase | None:
    """Return the part of the purchase paid by ``payment_id`` refunded since
    the last refund seen (the return's id is the refunded total, so a
    refund reported twice returns nothing twice), audited by
    ``return_purchase``; None if no purchase was recorded under that id."""
    # Per program, so that each probe is one of the (program_id, order_id)
    # unique index (order ids are unique only within a program).
    query = (
        readable_programs(principal)
        .where(exists().where(Purchase.program_id == Program.id, Purchase.order_id == payment_id))
        .limit(2)
    )
    found = (await session.scalars(query)).all()
    if not found:
        return None
    if len(found) > 1:
        raise PaymentInSeveralPrograms(f"payment {payment_id!r} is an order of several programs")
    [program] = found
    # Locked before the refunded total is compared, so that two refunds of
    # one payment processed at once cannot both return the same part.
    purchase = await lock_purchase(session, program.id, payment_id)
    assert purchase is not None  # found above; purchases are never deleted
    already = purchase.returned_minor
    if refunded_minor <= already:
        return RefundedPurchase(program=program.slug, order_id=payment_id, returned=None)
    returned = await return_purchase(
        session,
        ledger,
        program,
        payment_id,
        ReturnEvent(
            return_id=f"refunded-to-{refunded_minor}", amount_minor=refunded_minor - already
        ),
        principal=principal,
    )
    return RefundedPurchase(program=program.slug, order_id=payment_id, returned=returned)
