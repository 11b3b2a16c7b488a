"""Earning from purchases: pending until the return window ends, then posted;
returns reverse proportionally, before or after posting.

Policy when a return reverses more than the wallet holds (the points were
spent): the wallet gives what it has, and the rest is recorded as the
member's debt, a debit of the member's debt account in the ledger. A balance
never goes negative and nothing is forgiven silently; later earnings can
repay the debt (``repay_debt``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ledger import Ledger, Transfer, TransferFlags
from rewards.budgets import take_from_budget
from rewards.codes import TransferCode, derived_id
from rewards.errors import (
    Conflict,
    LedgerRefused,
    NotFound,
    ReturnExceedsPurchase,
    RewardsError,
)
from rewards.models import Member, Program, Purchase, PurchaseReturn
from rewards.programs import (
    get_member,
    open_debt_account,
    record_transfers,
    require_active,
    spendable,
)
from rewards.rule_versions import parse_rules, rules_in_force
from rewards.rules import Basket, Item, Moment, points_for_return, quote_purchase
from rewards.tiers import after_purchase

OrderId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class InvalidPurchase(RewardsError):
    type_slug = "invalid-purchase"


class PurchaseEvent(msgspec.Struct, kw_only=True, frozen=True):
    member: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    order_id: OrderId
    amount_minor: Annotated[int, msgspec.Meta(ge=0)]
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
    occurred_at: Moment
    items: tuple[Item, ...] = ()


class ReturnEvent(msgspec.Struct, kw_only=True, frozen=True):
    return_id: OrderId
    amount_minor: Annotated[int, msgspec.Meta(gt=0)]


class PurchaseOutcome(msgspec.Struct, kw_only=True, frozen=True):
    order_id: str
    points: int
    rule_version: int | None
    matures_at: datetime
    #: True when this order id was recorded before (a replay).
    replayed: bool


class ReturnOutcome(msgspec.Struct, kw_only=True, frozen=True):
    return_id: str
    points_reversed: int
    debt_points: int
    replayed: bool


async def record_purchase(
    session: AsyncSession, ledger: Ledger, program: Program, event: PurchaseEvent, now: datetime
) -> PurchaseOutcome:
    """Price a purchase with the rules in force at its time and hold the
    points as a pending ledger transfer. The order id makes it idempotent."""
    existing = await session.scalar(
        select(Purchase).where(
            Purchase.program_id == program.id, Purchase.order_id == event.order_id
        )
    )
    member = await get_member(session, program, event.member)
    if existing is not None:
        return _replay_purchase(existing, member, event)
    require_active(member)
    if event.currency != program.currency:
        raise InvalidPurchase(f"currency {event.currency} is not the program's {program.currency}")
    if event.occurred_at > now + timedelta(minutes=5):
        raise InvalidPurchase("occurred_at is in the future")
    if event.items and sum(i.amount_minor for i in event.items) != event.amount_minor:
        raise InvalidPurchase("the items do not add up to amount_minor")

    version = await rules_in_force(session, program, event.occurred_at)
    points = 0
    if version is not None:
        basket = Basket(
            amount_minor=event.amount_minor,
            occurred_at=event.occurred_at,
            items=event.items,
            minor_per_major=program.minor_per_major,
        )
        rules = parse_rules(version.rules)
        quote = quote_purchase(rules, basket, member.tier_code)
        points = quote.base_points
        budgets = {b.name: b.budget_points for b in rules.bonuses}
        for grant in quote.bonuses:
            budget = budgets.get(grant.name)
            if budget is None:
                points += grant.points
            else:
                # A bonus never grants more than its budget, whatever the race.
                points += await take_from_budget(
                    session, program, version.version, f"bonus:{grant.name}", budget, grant.points
                )
    earn_id = None
    if points > 0:
        earn_id = derived_id(program.id, "earn", event.order_id)
        await record_transfers(
            ledger,
            [
                Transfer(
                    id=earn_id,
                    debit_account_id=program.issuance_account_id,
                    credit_account_id=member.wallet_account_id,
                    amount=points,
                    ledger=program.ledger_id,
                    code=TransferCode.EARN,
                    flags=TransferFlags.PENDING,
                    metadata={"order_id": event.order_id},
                )
            ],
        )
    purchase = Purchase(
        program_id=program.id,
        member_id=member.id,
        order_id=event.order_id,
        occurred_at=event.occurred_at,
        amount_minor=event.amount_minor,
        currency=event.currency,
        items=msgspec.to_builtins(list(event.items)),
        rule_version=version.version if version else None,
        points=points,
        earn_transfer_id=earn_id,
        matures_at=event.occurred_at + timedelta(days=program.return_window_days),
        returned_minor=0,
        points_reversed=0,
    )
    session.add(purchase)
    await session.flush()
    await after_purchase(session, ledger, program, member, event.occurred_at)
    return _outcome(purchase, replayed=False)


async def settle_matured_earnings(
    session: AsyncSession,
    ledger: Ledger,
    now: datetime,
    limit: int = 1000,
    program: Program | None = None,
) -> int:
    """Post the pending earnings whose return window has ended: what returns
    left of them is posted, a fully returned one is voided. Safe to run twice
    and from several workers at once (rows are claimed with SKIP LOCKED)."""
    query = select(Purchase).where(
        Purchase.posted_at.is_(None),
        Purchase.earn_transfer_id.is_not(None),
        Purchase.matures_at <= now,
    )
    if program is not None:
        query = query.where(Purchase.program_id == program.id)
    due = list(
        await session.scalars(
            query.order_by(Purchase.matures_at).limit(limit).with_for_update(skip_locked=True)
        )
    )
    if not due:
        return 0
    transfers = []
    for purchase in due:
        assert purchase.earn_transfer_id is not None
        remaining = purchase.points - purchase.points_reversed
        transfers.append(
            Transfer(
                id=derived_id(purchase.program_id, "settle", purchase.order_id),
                pending_id=purchase.earn_transfer_id,
                amount=remaining,
                flags=TransferFlags.POST_PENDING if remaining else TransferFlags.VOID_PENDING,
            )
        )
    # A settlement already in the ledger (its batch committed there, but not
    # here) is taken as done, whatever returns changed since: re-posting it
    # with another amount would be refused forever and block the batch.
    recorded = {t.id for t in await ledger.lookup_transfers([t.id for t in transfers])}
    await record_transfers(ledger, [t for t in transfers if t.id not in recorded])
    for purchase in due:
        purchase.posted_at = now
    await _repay_debts(session, ledger, due)
    await session.flush()
    return len(due)


async def _repay_debts(session: AsyncSession, ledger: Ledger, settled: list[Purchase]) -> None:
    """Newly posted earnings first repay what their member owes (from returns
    the wallet could not cover): wallet to debt account, up to the debt.
    The debt account refuses any credit beyond its debt."""
    member_ids = {p.member_id for p in settled if p.points > p.points_reversed}
    if not member_ids:
        return
    indebted = list(
        await session.scalars(
            select(Member).where(Member.id.in_(member_ids), Member.debt_account_id.is_not(None))
        )
    )
    for member in indebted:
        assert member.debt_account_id is not None
        program = await session.get_one(Program, member.program_id)
        [debt, wallet] = await ledger.lookup_accounts(
            [member.debt_account_id, member.wallet_account_id]
        )
        owed = debt.debits_posted - debt.credits_posted
        available = spendable(wallet)
        earned = sum(p.points - p.points_reversed for p in settled if p.member_id == member.id)
        repay = min(owed, available, earned)
        if repay <= 0:
            continue
        last = max((p for p in settled if p.member_id == member.id), key=lambda p: p.order_id)
        [outcome] = await ledger.create_transfers(
            [
                Transfer(
                    id=derived_id(program.id, "repay", last.order_id),
                    debit_account_id=member.wallet_account_id,
                    credit_account_id=member.debt_account_id,
                    amount=repay,
                    ledger=program.ledger_id,
                    code=TransferCode.DEBT_REPAYMENT,
                    metadata={"order_id": last.order_id},
                )
            ]
        )
        if outcome.result not in ("ok", "exists", "exceeds_credits", "exceeds_debits"):
            raise LedgerRefused(f"debt repayment refused: {outcome.result}")


async def return_purchase(
    session: AsyncSession, ledger: Ledger, program: Program, order_id: str, event: ReturnEvent
) -> ReturnOutcome:
    """Reverse the points of (part of) a purchase, in proportion to the amount
    returned. Before the earning is posted this only shrinks what will be
    posted; after, it takes the points back from the wallet, and what the
    wallet cannot cover becomes the member's debt."""
    purchase = await session.scalar(
        select(Purchase)
        .where(Purchase.program_id == program.id, Purchase.order_id == order_id)
        .with_for_update()
    )
    if purchase is None:
        raise NotFound(f"no purchase {order_id!r} in program {program.slug!r}")
    earlier = await session.scalar(
        select(PurchaseReturn).where(
            PurchaseReturn.purchase_id == purchase.id, PurchaseReturn.return_id == event.return_id
        )
    )
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
        debt = await _take_back(session, ledger, program, member, purchase, event, points)
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
    await session.flush()
    return ReturnOutcome(
        return_id=event.return_id, points_reversed=points, debt_points=debt, replayed=False
    )


async def _take_back(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    member: Member,
    purchase: Purchase,
    event: ReturnEvent,
    points: int,
) -> int:
    """Debit ``points`` from the wallet, the shortfall from the debt account;
    returns the debt recorded. Each attempt has ids of its own, since a
    refused id stays refused; an attempt already recorded is reused."""
    key = ("return", purchase.order_id, event.return_id)
    for attempt in range(5):
        wallet_leg = derived_id(program.id, *key, str(attempt), "wallet")
        debt_leg = derived_id(program.id, *key, str(attempt), "debt")
        recorded = await ledger.lookup_transfers([wallet_leg, debt_leg])
        if recorded:
            return sum(t.amount for t in recorded if t.id == debt_leg)
        [wallet] = await ledger.lookup_accounts([member.wallet_account_id])
        available = spendable(wallet)
        take = max(0, min(points, available))
        legs = []
        if take:
            legs.append(
                Transfer(
                    id=wallet_leg,
                    debit_account_id=member.wallet_account_id,
                    credit_account_id=program.issuance_account_id,
                    amount=take,
                    ledger=program.ledger_id,
                    code=TransferCode.RETURN_REVERSAL,
                    metadata={"order_id": purchase.order_id, "return_id": event.return_id},
                )
            )
        if points - take:
            debt_account = await open_debt_account(session, ledger, program, member)
            legs.append(
                Transfer(
                    id=debt_leg,
                    debit_account_id=debt_account,
                    credit_account_id=program.issuance_account_id,
                    amount=points - take,
                    ledger=program.ledger_id,
                    code=TransferCode.DEBT,
                    metadata={"order_id": purchase.order_id, "return_id": event.return_id},
                )
            )
        if len(legs) == 2:
            legs[0] = msgspec.structs.replace(legs[0], flags=TransferFlags.LINKED)
        outcomes = await ledger.create_transfers(legs)
        if all(o.result in ("ok", "exists") for o in outcomes):
            return points - take
        if not any(o.result == "exceeds_credits" for o in outcomes):
            raise LedgerRefused(f"return refused by the ledger: {outcomes[-1].result}")
        # The wallet was spent meanwhile: read it again and retry.
    raise LedgerRefused("the wallet kept changing; retry the return")


def _replay_purchase(existing: Purchase, member: Member, event: PurchaseEvent) -> PurchaseOutcome:
    same = (
        existing.member_id == member.id
        and existing.amount_minor == event.amount_minor
        and existing.occurred_at == event.occurred_at
        and existing.items == msgspec.to_builtins(list(event.items))
    )
    if not same:
        raise Conflict(f"order {event.order_id!r} was recorded with other fields")
    return _outcome(existing, replayed=True)


def _outcome(purchase: Purchase, *, replayed: bool) -> PurchaseOutcome:
    return PurchaseOutcome(
        order_id=purchase.order_id,
        points=purchase.points,
        rule_version=purchase.rule_version,
        matures_at=purchase.matures_at,
        replayed=replayed,
    )
