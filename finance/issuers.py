"""Who issued a lot of points: the owner of the account its credit came
from (a lot's ``source_account_id``).

Accounts of a program's ledger are derived from business keys, so their
owners are found by deriving every id again: the program's own accounts
(issuance, redemption, breakage), each partner's (issuance, acceptance,
funding: ``core.codes.partner_account_id``), each campaign participant's
budget (its bonuses are the participant's points) and the exchange
accounts (points converted in from another program). An account none of
these derive (a member's wallet cannot be one: a gift keeps the lot's
issuer) is reported as ``other`` with its id, never folded into another
issuer.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import AccountCode, exchange_account_id, partner_account_id
from core.models import Program
from partners.campaigns.models import Campaign, CampaignParticipant
from partners.models import Partner

PROGRAM = "program"
PARTNER = "partner"
EXCHANGE = "exchange"
OTHER = "other"

_PARTNER_ROLES = (
    AccountCode.PARTNER_ISSUANCE,
    AccountCode.PARTNER_ACCEPTANCE,
    AccountCode.PARTNER_FUNDING,
)


class Issuer(msgspec.Struct, frozen=True, kw_only=True, order=True):
    """Who issued points: ``kind`` and the slug of the program or partner
    (or, for ``other``, the account's id)."""

    kind: str
    key: str
    name: str


async def issuers_of(session: AsyncSession, program: Program) -> dict[uuid.UUID, Issuer]:
    """Every account of ``program``'s ledger that issues points, with its issuer."""
    own = Issuer(kind=PROGRAM, key=program.slug, name=program.name)
    found: dict[uuid.UUID, Issuer] = {
        account: own
        for account in (
            program.issuance_account_id,
            program.redemption_account_id,
            program.breakage_account_id,
        )
    }
    partners = (
        await session.execute(
            select(Partner.id, Partner.slug, Partner.name).where(Partner.program_id == program.id)
        )
    ).all()
    by_id: dict[uuid.UUID, Issuer] = {}
    for partner_id, slug, name in partners:
        issuer = by_id[partner_id] = Issuer(kind=PARTNER, key=slug, name=name)
        for role in _PARTNER_ROLES:
            found[partner_account_id(program.id, partner_id, role)] = issuer
    budgets = await session.execute(
        select(CampaignParticipant.budget_account_id, CampaignParticipant.partner_id)
        .join(Campaign, Campaign.id == CampaignParticipant.campaign_id)
        .where(Campaign.program_id == program.id)
    )
    for account, partner_id in budgets.all():
        if partner_id in by_id:
            found[account] = by_id[partner_id]
    others = (
        await session.execute(
            select(Program.id, Program.slug, Program.name).where(Program.id != program.id)
        )
    ).all()
    for other_id, slug, name in others:
        found[exchange_account_id(program.id, other_id)] = Issuer(
            kind=EXCHANGE, key=slug, name=name
        )
    return found


def issuer_of(accounts: dict[uuid.UUID, Issuer], account_id: uuid.UUID) -> Issuer:
    """The issuer of ``account_id``: the one derived, else ``other`` naming the account."""
    return accounts.get(account_id) or Issuer(kind=OTHER, key=str(account_id), name="")


def accounts_of_issuer(accounts: dict[uuid.UUID, Issuer], key: str) -> Iterable[uuid.UUID]:
    """The accounts whose issuer has ``key`` (a partner's slug, the program's)."""
    return (account for account, issuer in accounts.items() if issuer.key == key)
