"""Settling earnings whose return window has ended: a purchase's pending
points are posted (what returns left of them; voided if nothing), a held
threshold reward is posted or voided, and what the newly posted points can
repay of the member's debt (from returns the wallet could not cover) goes
back to the debt account, all in one step.

One step: the settlements, the repayments and the rows marking them settled
are posted with one ``Ledger.create_transfers_within`` call inside the
caller's transaction, so that no reader ever sees the new points available
beside the debt they must repay, and a failure anywhere leaves nothing
behind (the next run settles the same rows again).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode, derived_id
from core.models import Program
from ledger import Ledger, Transfer, TransferFlags, TransferState
from ledger.reads import debit_balance
from rewards.connections import Connection, session_connection
from rewards.programs import record_transfers
from rewards.purchase_repository import (
    DueGrant,
    DuePurchase,
    claim_due_grants,
    claim_due_purchases,
    lock_indebted_members,
    mark_settled,
    window_totals,
)


class _Earned(msgspec.Struct):
    """What a member's settlements post in this run, and the key and
    metadata its debt repayment (if any) takes from them."""

    points: int = 0
    key: tuple[str, str] | None = None
    metadata: dict[str, Any] = {}


async def settle_matured_earnings(
    session: AsyncSession,
    ledger: Ledger,
    now: datetime,
    limit: int = 1000,
    program: Program | None = None,
) -> int:
    """Settle up to ``limit`` matured purchases and up to ``limit`` due
    threshold rewards (of ``program``, or of every program), with the debt
    repayments they allow; returns how many purchases and rewards were
    settled. Safe to run twice and from several workers at once (rows are
    claimed with SKIP LOCKED).

    The ledger's transfers are posted inside the session's transaction: the
    caller commits next, and must not wait on the ledger's writer before it
    does (``Ledger.create_transfers_within``)."""
    await session.flush()
    connection = await session_connection(session)
    program_id = program.id if program is not None else None
    purchases = await claim_due_purchases(connection, now, limit, program_id)
    grants = await claim_due_grants(connection, now, limit, program_id)
    if not purchases and not grants:
        return 0
    settle_ids = {p.id: derived_id(p.program_id, "settle", p.order_id) for p in purchases}
    grant_settle_ids = {
        g.id: derived_id(g.program_id, "settle-threshold", str(g.id)) for g in grants
    }
    # One look-up: settlements already in the ledger, and the grants'
    # pending transfers (they carry the order id of the crossing purchase).
    known = {
        t.id: t
        for t in await ledger.lookup_transfers(
            [*settle_ids.values(), *grant_settle_ids.values(), *(g.id for g in grants)]
        )
    }
    earned: defaultdict[uuid.UUID, _Earned] = defaultdict(_Earned)
    transfers = _purchase_settlements(purchases, settle_ids, known, earned)
    settled, voided = await _grant_settlements(connection, grants, grant_settle_ids, known, earned)
    transfers += settled
    transfers += await _repayments(connection, ledger, earned)
    if transfers:
        await record_transfers(ledger, transfers, within=connection)
    await mark_settled(connection, now, [p.id for p in purchases], [g.id for g in grants], voided)
    return len(purchases) + len(grants)


def _purchase_settlements(
    due: list[DuePurchase],
    settle_ids: dict[uuid.UUID, uuid.UUID],
    known: dict[uuid.UUID, TransferState],
    earned: defaultdict[uuid.UUID, _Earned],
) -> list[Transfer]:
    transfers = []
    for purchase in due:
        settle_id = settle_ids[purchase.id]
        if settle_id in known:
            # Recorded by a run before settlement and repayment were one
            # step (its ledger call committed, its rows did not): taken as
            # done, whatever returns changed since; re-posting it with
            # another amount would be refused forever and block the batch.
            continue
        transfers.append(
            Transfer(
                id=settle_id,
                pending_id=purchase.earn_transfer_id,
                amount=purchase.remaining,
                flags=TransferFlags.POST_PENDING
                if purchase.remaining
                else TransferFlags.VOID_PENDING,
                # The member app's history shows the post, not the pending.
                metadata={"order_id": purchase.order_id},
            )
        )
        member = earned[purchase.member_id]
        member.points += purchase.remaining
        if member.key is None or member.key[0] != "repay" or purchase.order_id > member.key[1]:
            member.key = ("repay", purchase.order_id)
            member.metadata = {"order_id": purchase.order_id}
    return transfers


async def _grant_settlements(
    connection: Connection,
    due: list[DueGrant],
    settle_ids: dict[uuid.UUID, uuid.UUID],
    known: dict[uuid.UUID, TransferState],
    earned: defaultdict[uuid.UUID, _Earned],
) -> tuple[list[Transfer], list[uuid.UUID]]:
    """Post a held threshold reward if the member's net spend in its window
    still reaches the threshold once the crossing purchase's return window
    has ended; void it if returns took the spend back under it (a later
    purchase crossing again earns it anew). Answers the transfers and the
    grants voided."""
    undecided = [g for g in due if settle_ids[g.id] not in known]
    spends = await window_totals(
        connection, [(g.member_id, g.window_start, g.window_end) for g in undecided]
    )
    spend = {g.id: s for g, (s, _) in zip(undecided, spends, strict=True)}
    transfers, voided = [], []
    for grant in due:
        recorded = known.get(settle_ids[grant.id])
        if recorded is not None:
            # Stands as recorded (see ``_purchase_settlements``).
            if recorded.flags & TransferFlags.VOID_PENDING:
                voided.append(grant.id)
            continue
        keep = spend[grant.id] >= grant.amount_minor
        metadata: dict[str, Any] = {"threshold": grant.code}
        held = known.get(grant.id)
        if held is not None and held.metadata and "order_id" in held.metadata:
            metadata["order_id"] = held.metadata["order_id"]
        transfers.append(
            Transfer(
                id=settle_ids[grant.id],
                pending_id=grant.id,
                flags=TransferFlags.POST_PENDING if keep else TransferFlags.VOID_PENDING,
                metadata=metadata,
            )
        )
        if not keep:
            voided.append(grant.id)
            continue
        member = earned[grant.member_id]
        member.points += grant.bonus_points
        if member.key is None or (member.key[0] != "repay" and str(grant.id) > member.key[1]):
            member.key = ("repay-threshold", str(grant.id))
            member.metadata = metadata
    return transfers, voided


async def _repayments(
    connection: Connection, ledger: Ledger, earned: dict[uuid.UUID, _Earned]
) -> list[Transfer]:
    """Newly posted points first repay what their member owes: wallet to
    debt account, up to the debt. They always can: the wallet holds at
    least what is posted beside the repayment, and the debt is read under
    the member's lock (only a settlement repays, so it cannot shrink)."""
    indebted = await lock_indebted_members(
        connection, sorted(m for m, e in earned.items() if e.points > 0)
    )
    if not indebted:
        return []
    debts = {a.id: a for a in await ledger.lookup_accounts([m.debt_account_id for m in indebted])}
    transfers = []
    for member in indebted:
        owed = debit_balance(debts[member.debt_account_id])
        gained = earned[member.id]
        repay = min(owed, gained.points)
        if repay <= 0:
            continue
        assert gained.key is not None
        transfers.append(
            Transfer(
                id=derived_id(member.program_id, *gained.key),
                debit_account_id=member.wallet_account_id,
                credit_account_id=member.debt_account_id,
                amount=repay,
                ledger=member.ledger_id,
                code=TransferCode.DEBT_REPAYMENT,
                metadata=gained.metadata,
            )
        )
    return transfers
