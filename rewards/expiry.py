"""Points expiry, and what is about to expire.

Policies: "fixed" (points expire a number of months after they were
credited) and "inactivity" (every point expires once the wallet has not
moved for that long). Spends consume the soonest-expiring points first.

Under the fixed policy the soonest-expiring points are the oldest, and a
debit can only consume points credited before it (a wallet never goes
negative), so the points still unspent among those credited before the
cut-off are exactly ``credits up to the cut-off - all posted debits``: no
per-lot bookkeeping is needed. Each expiry is a ledger transfer from the
wallet to the program's breakage account, which is itself a debit: a second
run finds nothing more to expire.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import calendar
from core.codes import TransferCode, derived_id
from core.models import Member, Program
from ledger import AccountState, Ledger, Transfer
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


async def due_at(
    ledger: Ledger, program: Program, members: list[Member], at: datetime
) -> dict[Member, int]:
    """Points of each member that have expired by ``at`` and not been spent."""
    return {member: amount for member, amount, _ in await _due(ledger, program, members, at)}


async def _due(
    ledger: Ledger, program: Program, members: list[Member], at: datetime
) -> list[tuple[Member, int, AccountState]]:
    """(member, points due, the wallet as read): amounts and the ids derived
    from them come from one read of each wallet."""
    if program.expiry_policy == "none" or not members:
        return []
    wallets = [m.wallet_account_id for m in members]
    states = {s.id: s for s in await ledger.lookup_accounts(wallets)}
    before = cutoff(program, at)
    due: list[tuple[Member, int, AccountState]] = []
    if program.expiry_policy == "fixed":
        credits = await ledger.posted_credits_up_to(wallets, before)
        for member in members:
            state = states[member.wallet_account_id]
            amount = min(credits[member.wallet_account_id] - state.debits_posted, spendable(state))
            if amount > 0:
                due.append((member, amount, state))
    else:
        last = await ledger.last_activity(wallets)
        for member in members:
            moved = last[member.wallet_account_id]
            state = states[member.wallet_account_id]
            if moved is not None and moved <= before and spendable(state) > 0:
                due.append((member, spendable(state), state))
    return due


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


async def _expire(
    ledger: Ledger, program: Program, due: list[tuple[Member, int, AccountState]]
) -> int:
    expired = 0
    if not due:
        return 0
    transfers = [
        Transfer(
            # Derived from the wallet's state as read: a rerun of the same
            # expiry is the same transfer, a later one a new transfer. From
            # the member's id: one enrolled again under an erased member's
            # external id has a wallet, and expiries, of their own.
            id=derived_id(program.id, "expire", str(member.id), str(state.debits_posted)),
            debit_account_id=member.wallet_account_id,
            credit_account_id=program.breakage_account_id,
            amount=points,
            ledger=program.ledger_id,
            code=TransferCode.EXPIRY,
            metadata={"policy": program.expiry_policy},
        )
        for member, points, state in due
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
