"""Returns: a returned share of a purchase takes back the same share of its
points, before or after they were posted.

Policy when a return reverses more than the wallet holds (the points were
spent): the wallet gives what it has, and the rest is recorded as the
member's debt, a debit of the member's debt account in the ledger. A balance
never goes negative and nothing is forgiven silently; the member's next
settled earnings repay the debt first (``rewards.settlement``).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.codes import TransferCode, derived_id
from core.errors import Conflict, NotFound
from core.models import Member, Program
from core.principal import Principal
from ledger import Ledger
from rewards.errors import ReturnExceedsPurchase
from rewards.models import PurchaseReturn
from rewards.programs import take_back_points
from rewards.purchase_repository import find_return, lock_purchase
from rewards.purchases import ReturnEvent, ReturnOutcome
from rewards.rules import points_for_return


async def return_purchase(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    order_id: str,
    event: ReturnEvent,
    *,
    principal: Principal,
) -> ReturnOutcome:
    """Reverse the points of (part of) a purchase, in proportion to the amount
    returned, and audit it. Before the earning is posted this only shrinks
    what will be posted; after, it takes the points back from the wallet, and
    what the wallet cannot cover becomes the member's debt.

    The take-back commits through the ledger's writer, before the session: a
    retry after a failure between the two finds it recorded (``exists``) and
    writes the return's row and its audit line then, together, so every
    return ends with exactly one line; ``replayed`` is for a return whose
    row (and line) were committed before."""
    purchase = await lock_purchase(session, program.id, order_id)
    if purchase is None:
        raise NotFound(f"no purchase {order_id!r} in program {program.slug!r}")
    earlier = await find_return(session, purchase.id, event.return_id)
    if earlier is not None:
        if earlier.amount_minor != event.amount_minor:
            raise Conflict(f"return {event.return_id!r} was recorded with another amount")
        return ReturnOutcome(
            return_id=earlier.return_id,
            points_reversed=earlier.points_reversed,
            debt_points=earlier.debt_points,
            replayed=True,
        )
    returned = purchase.returned_minor + event.amount_minor
    if returned > purchase.amount_minor:
        raise ReturnExceedsPurchase(
            f"returns would total {returned}, more than the purchase's {purchase.amount_minor}"
        )
    # Cumulative, so partial returns add up to exactly the points earned.
    reversed_after = points_for_return(purchase.points, purchase.amount_minor, returned)
    points = reversed_after - purchase.points_reversed
    debt = 0
    if points and purchase.posted_at is not None:
        member = await session.get_one(Member, purchase.member_id)
        debt = await take_back_points(
            session,
            ledger,
            program,
            member,
            ("return", purchase.order_id, event.return_id),
            points,
            {"order_id": purchase.order_id, "return_id": event.return_id},
            code=TransferCode.RETURN_REVERSAL,
            # The purchase's own points first, wherever they are: its lot is
            # the settlement that posted them (``rewards.settlement``).
            lots=[derived_id(program.id, "settle", purchase.order_id)],
        )
    purchase.returned_minor = returned
    purchase.points_reversed = reversed_after
    session.add(
        PurchaseReturn(
            purchase_id=purchase.id,
            return_id=event.return_id,
            amount_minor=event.amount_minor,
            points_reversed=points,
            debt_points=debt,
        )
    )
    outcome = ReturnOutcome(
        return_id=event.return_id, points_reversed=points, debt_points=debt, replayed=False
    )
    # With the return's row, in the same transaction: the row's unique key
    # lets only one of two racing retries commit, and its line with it.
    await audit.record(
        session, principal, "purchase.return", f"program:{program.slug}:order:{order_id}", outcome
    )
    await session.flush()
    return outcome
