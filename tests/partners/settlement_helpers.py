"""What the settlement tests share: a partner whose contract started two
months back, and its points moved in past periods straight on the ledger
(with their business time), as issuances and acceptances post them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import TransferCode
from core.models import Member, Program
from ledger import Ledger, Transfer
from partners.contracts import acceptance_account, issuance_account
from partners.models import Partner
from partners.settlement_periods import label_of, period_of
from tests.partners.coalition_helpers import contract, fund
from tests.partners.conftest import NewPartner


def months_back(count: int) -> tuple[datetime, datetime]:
    """The UTC calendar month ``count`` months before this one."""
    start, _ = period_of(datetime.now(UTC), "month", "UTC")
    for _ in range(count):
        start, _ = period_of(start - timedelta(days=1), "month", "UTC")
    return period_of(start, "month", "UTC")


def label(count: int) -> str:
    return label_of(months_back(count)[0], "month", "UTC")


async def settled_partner(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    new_partner: NewPartner,
    *,
    funding: int = 1_000_000,
    **terms: Any,
) -> Partner:
    """A partner created three months back, its contract in force from two
    months back (monthly statements), funded with ``funding`` points."""
    start, _ = months_back(2)
    partner = await new_partner(program, created_at=start - timedelta(days=30))
    await contract(session, ledger, program, partner, at=start, **terms)
    if funding:
        await fund(session, ledger, program, partner, funding)
    return partner


async def move(
    ledger: Ledger,
    program: Program,
    partner: Partner,
    member: Member,
    code: TransferCode,
    points: int,
    at: datetime,
) -> uuid.UUID:
    """One movement of the partner's points with business time ``at``."""
    issuance = issuance_account(program, partner.id)
    acceptance = acceptance_account(program, partner.id)
    debit, credit = {
        TransferCode.PARTNER_ISSUANCE: (issuance, member.wallet_account_id),
        TransferCode.PARTNER_ACCEPTANCE: (member.wallet_account_id, acceptance),
        TransferCode.PARTNER_ACCEPTANCE_REFUND: (acceptance, member.wallet_account_id),
    }[code]
    transfer_id = uuid.uuid4()
    [outcome] = await ledger.create_transfers(
        [
            Transfer(
                id=transfer_id,
                debit_account_id=debit,
                credit_account_id=credit,
                amount=points,
                ledger=program.ledger_id,
                code=code,
                effective_at=at,
            )
        ]
    )
    assert outcome.result == "ok", outcome
    return transfer_id
