"""What the coalition points tests share: a partner principal, members,
contracts published now, blocks of points bought, balances read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Member, Program
from core.principal import Principal, PrincipalKind, system
from ledger import Ledger
from partners.contract_schemas import ContractTerms, ContractView, FundingRequest
from partners.contracts import acceptance_account, draft_contract, issuance_account
from partners.contracts import publish_contract as publish
from partners.funding import record_funding
from partners.models import Partner
from rewards.programs import Enrolment, enrol_member

OPERATOR = system("test")
BOTH = ("points:issue", "points:redeem")


def partner_principal(
    partner: Partner, *also: Partner, scopes: tuple[str, ...] = BOTH
) -> Principal:
    """A client of ``partner`` whose reach is it and ``also``."""
    return Principal(
        kind=PrincipalKind.PARTNER,
        actor=f"partner:client-{partner.slug}",
        scopes=frozenset(scopes),
        program_id=partner.program_id,
        partner_id=partner.id,
        partner_ids=frozenset({partner.id, *(p.id for p in also)}),
    )


async def enrolled(
    session: AsyncSession, ledger: Ledger, program: Program, external_id: str = "ann"
) -> Member:
    member, _ = await enrol_member(
        session, ledger, program, Enrolment(external_id=external_id), principal=OPERATOR
    )
    await session.commit()
    return member


def terms(**fields: Any) -> ContractTerms:
    values: dict[str, Any] = {
        "roles": "both",
        "issue_price_per_point": "1.5",
        "redemption_rate_per_point": "1",
        "funding_model": "prepaid",
        **fields,
    }
    return msgspec.convert(values, ContractTerms)


async def contract(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    *,
    at: datetime | None = None,
    **fields: Any,
) -> ContractView:
    """A new version with these terms, published to be in force from ``at`` (now)."""
    view, _ = await draft_contract(session, program, partner, terms(**fields), principal=OPERATOR)
    now = datetime.now(UTC)
    published = await publish(
        session, ledger, program, partner, view.version, at or now, now, principal=OPERATOR
    )
    await session.commit()
    return published


async def fund(
    session: AsyncSession, ledger: Ledger, program: Program, partner: Partner, points: int
) -> None:
    await record_funding(
        session,
        ledger,
        program,
        partner,
        FundingRequest(reference=f"pay-{uuid.uuid4()}", points=points, amount_minor=points),
        datetime.now(UTC),
        principal=OPERATOR,
    )
    await session.commit()


async def issuable(ledger: Ledger, program: Program, holder: Partner) -> int:
    [account] = await ledger.lookup_accounts([issuance_account(program, holder.id)])
    return account.credits_posted - account.debits_posted - account.debits_pending


async def accepted(ledger: Ledger, program: Program, holder: Partner) -> tuple[int, int]:
    """The acceptance account's (pending, posted) balance."""
    [account] = await ledger.lookup_accounts([acceptance_account(program, holder.id)])
    return account.credits_pending, account.credits_posted - account.debits_posted


async def wallet(ledger: Ledger, member: Member) -> tuple[int, int]:
    """The member's (spendable, pending debits)."""
    [account] = await ledger.lookup_accounts([member.wallet_account_id])
    return (
        account.credits_posted - account.debits_posted - account.debits_pending,
        account.debits_pending,
    )


async def rollback(session: AsyncSession, *objects: object) -> None:
    """Roll the session back and load ``objects`` again (a rollback expires
    them, and an expired attribute cannot load itself in async code)."""
    await session.rollback()
    for each in objects:
        await session.refresh(each)
