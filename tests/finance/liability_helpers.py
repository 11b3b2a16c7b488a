"""A program's book for the liability tests: members' wallets, a partner's
issuance account, and backdated movements posted through the ledger."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import AccountCode, TransferCode, partner_account_id
from core.models import Member, Program
from core.principal import system
from ledger import Account, Ledger, Transfer
from partners.models import Partner
from rewards.programs import Enrolment, enrol_member

PRINCIPAL = system("test")


@dataclass
class Book:
    program: Program
    members: dict[str, Member]
    partner: Partner | None = None

    def wallet(self, name: str) -> uuid.UUID:
        return self.members[name].wallet_account_id

    @property
    def partner_issuance(self) -> uuid.UUID:
        assert self.partner is not None
        return partner_account_id(self.program.id, self.partner.id, AccountCode.PARTNER_ISSUANCE)


async def open_book(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    names: tuple[str, ...],
    partner: Partner | None = None,
) -> Book:
    members = {}
    for name in names:
        member, _ = await enrol_member(
            session, ledger, program, Enrolment(external_id=name), principal=PRINCIPAL
        )
        members[name] = member
    await session.commit()
    book = Book(program=program, members=members, partner=partner)
    if partner is not None:
        outcomes = await ledger.create_accounts(
            [
                Account(
                    id=book.partner_issuance,
                    ledger=program.ledger_id,
                    code=AccountCode.PARTNER_ISSUANCE,
                )
            ]
        )
        assert [o.result for o in outcomes] == ["ok"]
    return book


async def post(
    ledger: Ledger,
    program: Program,
    debit: uuid.UUID,
    credit: uuid.UUID,
    amount: int,
    code: TransferCode,
    at: datetime,
    **fields: Any,
) -> uuid.UUID:
    """One transfer dated ``at``; its id."""
    transfer_id = uuid.uuid4()
    (outcome,) = await ledger.create_transfers(
        [
            Transfer(
                id=transfer_id,
                debit_account_id=debit,
                credit_account_id=credit,
                amount=amount,
                ledger=program.ledger_id,
                code=code,
                effective_at=at,
                **fields,
            )
        ]
    )
    assert outcome.result == "ok", outcome
    return transfer_id
