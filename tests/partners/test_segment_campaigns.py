"""Joint campaigns targeting a saved segment: drawn at the start from the
definition the proposal copied, a bonus only to members in the segment
just before their purchase; partners name only segments offered to them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.principal import system
from ledger import Ledger
from partners.campaigns.bonus import apply_campaign_bonuses
from partners.campaigns.errors import InvalidCampaign
from partners.campaigns.models import Campaign, CampaignMember
from partners.campaigns.proposals import get_campaign, propose_campaign
from partners.segments.definition import SegmentChange, SegmentSpec
from partners.segments.saved import change_segment, save_segment
from tests.conftest import NewProgram
from tests.partners.campaign_helpers import Coalition, coalition, proposal, purchase, running
from tests.partners.conftest import NewPartner

OPERATOR = system("segment-campaigns")


@pytest.fixture
async def world(
    session: AsyncSession,
    engine: AsyncEngine,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> Coalition:
    made = await coalition(session, engine, ledger, new_program, new_partner, members=8)
    for rank, code in enumerate(("silver", "gold"), start=1):
        await session.execute(
            text(
                "INSERT INTO tiers (id, program_id, code, name, rank, threshold, perks)"
                " VALUES (:id, :program, :code, :code, :rank, :rank * 100, '[]')"
            ),
            {"id": uuid.uuid4(), "program": made.program.id, "code": code, "rank": rank},
        )
    await session.execute(
        text("UPDATE members SET tier_code = 'gold' WHERE id = ANY(:ids)"),
        {"ids": [m.id for m in made.members[:4]]},
    )
    await session.commit()
    return made


async def save(session: AsyncSession, world: Coalition, name: str, offered: bool) -> None:
    spec = {"name": name, "definition": {"tiers": ["gold"]}, "offered_to_partners": offered}
    await save_segment(
        session, world.program, msgspec.convert(spec, SegmentSpec), principal=OPERATOR
    )
    await session.commit()


async def bonus_of(world: Coalition, issuance_id: uuid.UUID) -> int:
    async with world.sessions() as s, s.begin():
        return await apply_campaign_bonuses(s, issuance_id)


async def test_a_bonus_only_for_members_in_the_segment_at_the_purchase(
    session: AsyncSession, pool: asyncpg.Pool, ledger: Ledger, world: Coalition
) -> None:
    await save(session, world, "gold", offered=True)
    view = await running(session, ledger, world, segment={"kind": "saved", "saved": "gold"})
    assert view.segment.kind == "saved" and view.segment.saved == "gold"
    campaign_id = uuid.UUID(view.id)
    started = await get_campaign(session, world.program, campaign_id, principal=world.pa)
    assert (started.segment_size, started.holdout_size) == (4, 0)
    drawn = set(
        await session.scalars(
            select(CampaignMember.member_id).where(CampaignMember.campaign_id == campaign_id)
        )
    )
    assert drawn == {m.id for m in world.members[:4]}

    gold, other = world.members[0], world.members[5]
    assert await bonus_of(world, await purchase(pool, ledger, world, gold, 2000)) == 140
    assert await bonus_of(world, await purchase(pool, ledger, world, other, 2000)) == 0

    # The saved segment changed after the proposal: the campaign keeps its copy.
    change = msgspec.convert({"definition": {"tiers": ["silver"]}}, SegmentChange)
    await change_segment(session, world.program, "gold", change, principal=OPERATOR)
    await session.commit()
    assert await bonus_of(world, await purchase(pool, ledger, world, gold, 1000)) == 70

    # Out of the segment by the purchase's time (moved down a tier): no bonus.
    await session.execute(
        text("UPDATE members SET tier_code = 'silver' WHERE id = :id"), {"id": gold.id}
    )
    await session.commit()
    assert await bonus_of(world, await purchase(pool, ledger, world, gold, 2000)) == 0
    stored = await session.scalar(select(Campaign.segment).where(Campaign.id == campaign_id))
    assert stored is not None and stored["definition"]["tiers"] == ["gold"]


async def test_partners_name_only_segments_offered_to_them(
    session: AsyncSession, world: Coalition
) -> None:
    await save(session, world, "private", offered=False)
    program = world.program
    proposals = {
        name: proposal(world, segment={"kind": "saved", "saved": name})
        for name in ("private", "missing")
    }
    before = await session.scalar(select(func.count()).select_from(Campaign))
    for name, proposed in proposals.items():
        async with world.sessions() as attempt:
            with pytest.raises(InvalidCampaign, match=f"no saved segment '{name}'"):
                await propose_campaign(
                    attempt, program, proposed, datetime.now(UTC), principal=world.pa
                )
    assert await session.scalar(select(func.count()).select_from(Campaign)) == before
    # The operator may target it.
    async with world.sessions() as attempt:
        view = await propose_campaign(
            attempt, program, proposals["private"], datetime.now(UTC), principal=OPERATOR
        )
    assert view.segment.saved == "private"


def test_a_proposal_without_a_segment_targets_every_active_member(world: Coalition) -> None:
    values = msgspec.to_builtins(proposal(world))
    del values["segment"]
    from partners.campaigns.schemas import CampaignProposal

    assert msgspec.convert(values, CampaignProposal).segment.kind == "all"
