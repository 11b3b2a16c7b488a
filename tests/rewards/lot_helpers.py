"""Helpers of the tests of operations on lots: credit a lot, read what the
wallet's lots hold (through the ledger's reads)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from core.models import Member, Program
from ledger import Ledger, Transfer
from ledger.lots import lots_of


async def credit(
    ledger: Ledger,
    program: Program,
    member: Member,
    points: int,
    *,
    effective_at: datetime | None = None,
) -> uuid.UUID:
    """Credit a lot of ``points`` (its id is the transfer's)."""
    lot = uuid.uuid4()
    [outcome] = await ledger.create_transfers(
        [
            Transfer(
                id=lot,
                debit_account_id=program.issuance_account_id,
                credit_account_id=member.wallet_account_id,
                amount=points,
                ledger=program.ledger_id,
                code=TransferCode.ADJUSTMENT,
                effective_at=effective_at,
            )
        ]
    )
    assert outcome.result == "ok", outcome
    return lot


async def spend(ledger: Ledger, program: Program, member: Member, points: int) -> uuid.UUID:
    spent = uuid.uuid4()
    [outcome] = await ledger.create_transfers(
        [
            Transfer(
                id=spent,
                debit_account_id=member.wallet_account_id,
                credit_account_id=program.redemption_account_id,
                amount=points,
                ledger=program.ledger_id,
                code=TransferCode.CATALOG_REDEMPTION,
            )
        ]
    )
    assert outcome.result == "ok", outcome
    return spent


async def remaining(pool: asyncpg.Pool, member: Member) -> dict[uuid.UUID, int]:
    """Each lot of the member's wallet: the points it holds."""
    return {lot.id: lot.remaining for lot in await lots_of(pool, member.wallet_account_id)}


async def undo(session: AsyncSession, *kept: object) -> None:
    """Roll back a refused use case's transaction, and load again what the
    test holds (a rollback expires it)."""
    await session.rollback()
    for row in kept:
        await session.refresh(row)
