"""What the campaign tests share: two funded partners, members, a proposal
approved and started, purchases at a store."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.models import Member, Program
from core.principal import Principal
from ledger import Ledger
from partners.campaigns.lifecycle import start_campaign
from partners.campaigns.proposals import approve_campaign, propose_campaign
from partners.campaigns.schemas import CampaignProposal, CampaignView
from partners.coalition_schemas import IssuanceRequest
from partners.issuance import issue_points
from partners.models import Partner
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import contract, enrolled, fund, partner_principal
from tests.partners.conftest import NewPartner

SCOPES = ("points:issue", "campaigns:manage")
_refs = itertools.count(1)


@dataclass
class Coalition:
    program: Program
    a: Partner
    b: Partner
    pa: Principal
    pb: Principal
    members: list[Member]
    sessions: async_sessionmaker[AsyncSession]


async def coalition(
    session: AsyncSession,
    engine: AsyncEngine,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
    *,
    members: int = 3,
    funding: int = 10_000,
    fund_b: bool = True,
) -> Coalition:
    program = await new_program()
    a, b = await new_partner(program), await new_partner(program)
    for firm in (a, b):
        await contract(session, ledger, program, firm)
    await fund(session, ledger, program, a, funding)
    if fund_b:
        await fund(session, ledger, program, b, funding)
    people = [await enrolled(session, ledger, program, f"m-{n}") for n in range(members)]
    return Coalition(
        program=program,
        a=a,
        b=b,
        pa=partner_principal(a, scopes=SCOPES),
        pb=partner_principal(b, scopes=SCOPES),
        members=people,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
    )


def proposal(world: Coalition, **fields: Any) -> CampaignProposal:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "reference": f"camp-{next(_refs)}-{uuid.uuid4().hex[:6]}",
        "name": "Winter double points",
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(days=7)).isoformat(),
        "participants": [
            {"partner": world.a.slug, "share_bp": 6000},
            {"partner": world.b.slug, "share_bp": 4000},
        ],
        "segment": {"kind": "all"},
        "rules": {"points_per_currency_unit": 7},
        "budget_points": 1000,
        "holdout_bp": 0,
        **fields,
    }
    return msgspec.convert(values, CampaignProposal)


async def running(
    session: AsyncSession, ledger: Ledger, world: Coalition, **fields: Any
) -> CampaignView:
    """A campaign proposed by A, approved by B, started now."""
    view = await propose_campaign(
        session, world.program, proposal(world, **fields), datetime.now(UTC), principal=world.pa
    )
    await session.commit()
    await approve_campaign(
        session, world.program, uuid.UUID(view.id), datetime.now(UTC), principal=world.pb
    )
    await session.commit()
    started = await start_campaign(world.sessions, ledger, uuid.UUID(view.id), datetime.now(UTC))
    assert started == 1
    return view


async def purchase(
    pool: asyncpg.Pool,
    ledger: Ledger,
    world: Coalition,
    member: Member,
    spend_minor: int,
    *,
    at: Principal | None = None,
) -> uuid.UUID:
    """A purchase at A's till (or ``at``'s), reported with its issuance; answers its id."""
    view = await issue_points(
        pool,
        ledger,
        IssuanceRequest(
            transaction_id=f"t-{uuid.uuid4()}",
            member=member.external_id,
            purchase_amount_minor=spend_minor,
            currency=world.program.currency,
        ),
        datetime.now(UTC),
        principal=at or world.pa,
    )
    return uuid.UUID(view.id)
