"""Points expiry, and what is about to expire.

Policies: "fixed" (points expire a number of months after they were
credited) and "inactivity" (every point expires once the wallet has not
moved for that long).

Under the fixed policy each lot (a credit of the wallet, ``ledger.lots``)
expires on its own: at its ``expires_at`` when a reinstatement gave it
one, else ``expiry_months`` after it was earned. An expiry takes what the
expired lots still hold and names them (``{"lots": [...]}``), soonest
expiring first, so that exactly those points go. Each expiry is a ledger
transfer from the wallet to the program's breakage account, which is
itself a debit: a second run finds nothing more to expire.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import calendar
from core.codes import TransferCode, derived_id
from core.models import Member, Program
from ledger import AccountState, Ledger, Transfer
from ledger.lots import Lot, open_lots_of
from ledger.reads import spendable
from rewards.errors import LedgerRefused

PAGE = 1000


class Expiring(msgspec.Struct, kw_only=True, frozen=True):
    points: Annotated[
        int,
        msgspec.Meta(description="Points that will expire by `by` unless they are spent first."),
    ]
    by: Annotated[
        datetime, msgspec.Meta(description="The end of the period looked at (30 days from now).")
    ]


def cutoff(program: Program, at: datetime) -> datetime:
    """Points credited (or a wallet last moved) up to this instant have
    expired by ``at``: ``expiry_months`` before it on the program's local
    calendar. So a lot credited late on 31 January, local time, under a
    1-month term expires at the local end of February (month ends clamp),
    not at the end of February in UTC."""
    return calendar.add_months(at, -program.expiry_months, program.time_zone)


def lot_expiry(program: Program, lot: Lot) -> datetime | None:
    """When the lot expires under the fixed policy; None: never."""
    if lot.expires_at is None:
        return calendar.add_months(lot.earned_at, program.expiry_months, program.time_zone)
    # PostgreSQL's infinity, as asyncpg reads it: a naive datetime.max.
    return None if lot.expires_at.tzinfo is None else lot.expires_at


def expired(program: Program, lot: Lot, at: datetime) -> bool:
    """Whether the lot has expired by ``at``: its own expiry, or by the
    program's policy if it has none (earned up to the cut-off)."""
    if lot.expires_at is None:
        return lot.earned_at <= cutoff(program, at)
    expiry = lot_expiry(program, lot)
    return expiry is not None and expiry <= at


class _Due(msgspec.Struct, frozen=True):
    member: Member
    points: int
    #: The wallet as read: the expiry's id derives from it.
    state: AccountState
    #: The expired lots, soonest expiring first (fixed policy only).
    lots: list[uuid.UUID] = []


async def due_at(
    ledger: Ledger, program: Program, members: list[Member], at: datetime
) -> dict[Member, int]:
    """Points of each member that have expired by ``at`` and not been spent."""
    return {due.member: due.points for due in await _due(ledger, program, members, at)}


async def _due(ledger: Ledger, program: Program, members: list[Member], at: datetime) -> list[_Due]:
    """What is due of each member: amounts, lots and the ids derived from
    them come from one read of each wallet."""
    if program.expiry_policy == "none" or not members:
        return []
    wallets = [m.wallet_account_id for m in members]
    states = {s.id: s for s in await ledger.lookup_accounts(wallets)}
    due: list[_Due] = []
    if program.expiry_policy == "fixed":
        holding = [m for m in members if spendable(states[m.wallet_account_id]) > 0]
        lots = await _open_lots(ledger, [m.wallet_account_id for m in holding])
        for member in holding:
            state = states[member.wallet_account_id]
            gone = sorted(
                (lot for lot in lots[member.wallet_account_id] if expired(program, lot, at)),
                key=lambda lot: (lot_expiry(program, lot), lot.earned_at, lot.timestamp),
            )
            # Points held by a checkout stay until it is resolved.
            amount = min(sum(lot.remaining for lot in gone), spendable(state))
            if amount > 0:
                due.append(_Due(member, amount, state, [lot.id for lot in gone]))
    else:
        before = cutoff(program, at)
        last = await ledger.last_activity(wallets)
        for member in members:
            moved = last[member.wallet_account_id]
            state = states[member.wallet_account_id]
            if moved is not None and moved <= before and spendable(state) > 0:
                due.append(_Due(member, spendable(state), state))
    return due


async def _open_lots(ledger: Ledger, wallets: list[uuid.UUID]) -> dict[uuid.UUID, list[Lot]]:
    """Each wallet's lots with points left: the page's wallets in one read."""
    return await open_lots_of(ledger.pool, wallets)


async def expire_points(
    session: AsyncSession, ledger: Ledger, program: Program, now: datetime
) -> int:
    """Move every expired, unspent point to breakage; returns how many.

    Each page of members is locked (``lock_member``'s lock) from the read of
    their wallets to the expiry transfers, so no spend lands in between and
    takes points the expiry counted as unspent; members locked by a spend
    in progress are skipped and looked at on the next run. The session is
    committed after each page, so a page's locks are held only while it is
    expired (the session must not expire its objects on commit).
    """
    if program.expiry_policy == "none":
        return 0
    expired = 0
    after = None
    while True:
        query = select(Member).where(Member.program_id == program.id).order_by(Member.id)
        if after is not None:
            query = query.where(Member.id > after)
        members = list(await session.scalars(query.limit(PAGE).with_for_update(skip_locked=True)))
        if not members:
            return expired
        after = members[-1].id
        expired += await _expire(ledger, program, await _due(ledger, program, members, now))
        await session.commit()


async def _expire(ledger: Ledger, program: Program, due: list[_Due]) -> int:
    expired = 0
    if not due:
        return 0
    transfers = [
        Transfer(
            # Derived from the wallet's state as read: a rerun of the same
            # expiry is the same transfer, a later one a new transfer. From
            # the member's id: one enrolled again under an erased member's
            # external id has a wallet, and expiries, of their own.
            id=derived_id(program.id, "expire", str(d.member.id), str(d.state.debits_posted)),
            debit_account_id=d.member.wallet_account_id,
            credit_account_id=program.breakage_account_id,
            amount=d.points,
            ledger=program.ledger_id,
            code=TransferCode.EXPIRY,
            metadata={"policy": program.expiry_policy}
            | ({"lots": [str(lot) for lot in d.lots]} if d.lots else {}),
        )
        for d in due
    ]
    for transfer, outcome in zip(transfers, await ledger.create_transfers(transfers), strict=True):
        if outcome.result == "ok":
            expired += transfer.amount
        elif outcome.result not in ("exists", "exceeds_credits"):
            # exceeds_credits: spent meanwhile, the next run looks again.
            raise LedgerRefused(f"expiry refused: {outcome.result}")
    return expired


async def expiring_soon(
    ledger: Ledger, program: Program, member: Member, now: datetime, days: int = 30
) -> Expiring:
    by = now + timedelta(days=days)
    due = await due_at(ledger, program, [member], by)
    return Expiring(points=due.get(member, 0), by=by)
