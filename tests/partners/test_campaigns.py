"""Joint campaigns against real PostgreSQL: approval gating, the budget
never overspent under 50 concurrent purchases with every bonus's legs
adding up to it, the stop by any participant and the release of what is
left, the holdout drawn reproducibly and given nothing, the rounding rule."""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.codes import TransferCode
from core.errors import NotFound
from ledger import Ledger
from partners.campaigns.attribution import campaign_attribution
from partners.campaigns.bonus import apply_campaign_bonuses, bonus_leg_id, split
from partners.campaigns.errors import CampaignNotOpen
from partners.campaigns.lifecycle import close_due_campaigns, start_campaign
from partners.campaigns.models import Campaign
from partners.campaigns.proposals import (
    approve_campaign,
    get_campaign,
    propose_campaign,
    stop_campaign,
)
from tests.conftest import NewProgram
from tests.partners.campaign_helpers import (
    Coalition,
    coalition,
    proposal,
    purchase,
    running,
)
from tests.partners.coalition_helpers import issuable, partner_principal, wallet
from tests.partners.conftest import NewPartner


@pytest.fixture
async def world(
    session: AsyncSession,
    engine: AsyncEngine,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> Coalition:
    return await coalition(session, engine, ledger, new_program, new_partner, members=10)


async def bonus_of(world: Coalition, issuance_id: uuid.UUID) -> int:
    async with world.sessions() as s, s.begin():
        return await apply_campaign_bonuses(s, issuance_id)


# -- the rounding rule ------------------------------------------------------


def test_split_gives_the_left_over_points_to_the_largest_remainders() -> None:
    # 91 x 60% = 54.6, 91 x 40% = 36.4: the one left over goes to the .6.
    assert split(91, [6000, 4000]) == [55, 36]
    assert split(91, [4000, 6000]) == [36, 55]


def test_split_breaks_ties_by_the_order_of_the_proposal() -> None:
    assert split(1, [5000, 5000]) == [1, 0]
    assert split(2, [3334, 3333, 3333]) == [1, 1, 0]
    assert split(1, [3333, 3334, 3333]) == [0, 1, 0]


def test_split_always_adds_up_to_the_whole_point() -> None:
    chance = random.Random(20261203)
    for _ in range(2000):
        n = chance.randint(1, 6)
        cuts = sorted(chance.sample(range(1, 10_000), n - 1))
        shares = [b - a for a, b in zip([0, *cuts], [*cuts, 10_000], strict=True)]
        points = chance.randint(0, 10**12)
        parts = split(points, shares)
        assert sum(parts) == points
        for part, share in zip(parts, shares, strict=True):
            # Each leg is within one point of its exact share.
            assert abs(part * 10_000 - points * share) < 10_000


# -- approval gating ---------------------------------------------------------


async def test_a_campaign_runs_only_once_every_participant_approved(
    session: AsyncSession, pool: asyncpg.Pool, ledger: Ledger, world: Coalition
) -> None:
    view = await propose_campaign(
        session, world.program, proposal(world), datetime.now(UTC), principal=world.pa
    )
    await session.commit()
    campaign_id = uuid.UUID(view.id)
    assert view.status == "proposed"
    assert [p.approved_at is not None for p in view.participants] == [True, False]
    # B has not approved: the start job leaves it, and purchases earn no bonus.
    assert await start_campaign(world.sessions, ledger, campaign_id, datetime.now(UTC)) == 0
    before = await issuable(ledger, world.program, world.a)
    bought = await purchase(pool, ledger, world, world.members[0], 1300)
    assert await bonus_of(world, bought) == 0
    assert await issuable(ledger, world.program, world.a) == before
    approved = await approve_campaign(
        session, world.program, campaign_id, datetime.now(UTC), principal=world.pb
    )
    await session.commit()
    assert approved.status == "approved"
    assert await start_campaign(world.sessions, ledger, campaign_id, datetime.now(UTC)) == 1
    # Each part of the budget left its participant's issuance account.
    assert await issuable(ledger, world.program, world.a) == before - 600
    bought = await purchase(pool, ledger, world, world.members[0], 1300)
    assert await bonus_of(world, bought) == 91


async def test_a_participant_that_cannot_fund_its_part_leaves_it_unfunded(
    session: AsyncSession,
    engine: AsyncEngine,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    world = await coalition(session, engine, ledger, new_program, new_partner, fund_b=False)
    before = await issuable(ledger, world.program, world.a)
    view = await propose_campaign(
        session, world.program, proposal(world), datetime.now(UTC), principal=world.pa
    )
    await session.commit()
    await approve_campaign(
        session, world.program, uuid.UUID(view.id), datetime.now(UTC), principal=world.pb
    )
    await session.commit()
    assert await start_campaign(world.sessions, ledger, uuid.UUID(view.id), datetime.now(UTC))
    found = await get_campaign(session, world.program, uuid.UUID(view.id), principal=world.pa)
    assert found.status == "unfunded"
    assert found.failure and world.b.slug in found.failure
    # One linked chain: A's part did not move either.
    assert await issuable(ledger, world.program, world.a) == before
    assert found.segment_size is None


# -- the budget under concurrent purchases ------------------------------------


async def test_fifty_concurrent_purchases_never_overspend_the_budget(
    session: AsyncSession, pool: asyncpg.Pool, ledger: Ledger, world: Coalition
) -> None:
    view = await running(session, ledger, world)
    campaign_id = uuid.UUID(view.id)
    purchases = [
        await purchase(pool, ledger, world, world.members[n % 10], 1300) for n in range(50)
    ]
    wallets_before = {m.id: (await wallet(ledger, m))[0] for m in world.members}
    # 50 purchases at once, each bonus in a transaction of its own.
    posted = await asyncio.gather(*(bonus_of(world, p) for p in purchases))
    # 91 points each, 55 from A (600 budget) and 36 from B (400): A's budget
    # funds 10 of them; every later one is refused whole.
    assert sorted(set(posted)) == [0, 91]
    assert posted.count(91) == 10
    rows = await pool.fetch(
        "SELECT b.issuance_id, b.points, b.legs, b.refused, p.budget_account_id, p.partner_id"
        " FROM campaign_bonuses b JOIN campaign_participants p ON p.campaign_id = b.campaign_id"
        " WHERE b.campaign_id = $1 ORDER BY b.issuance_id, p.position",
        campaign_id,
    )
    budgets = {r["partner_id"]: r["budget_account_id"] for r in rows}
    states = {a.id: a for a in await ledger.lookup_accounts(list(budgets.values()))}
    spent = {p: states[a].debits_posted for p, a in budgets.items()}
    assert spent[world.a.id] <= 600 and spent[world.b.id] <= 400
    assert all(states[a].credits_posted >= states[a].debits_posted for a in budgets.values())
    # Every posted bonus: its ledger legs add up to its points; a refused one moved nothing.
    by_issuance: dict[uuid.UUID, list[asyncpg.Record]] = {}
    for r in rows:
        by_issuance.setdefault(r["issuance_id"], []).append(r)
    assert len(by_issuance) == 50
    total = 0
    for issuance_id, legs in by_issuance.items():
        ids = [
            bonus_leg_id(world.program.id, campaign_id, issuance_id, r["partner_id"]) for r in legs
        ]
        transfers = await ledger.lookup_transfers(ids)
        if legs[0]["refused"] is None:
            assert sum(t.amount for t in transfers) == legs[0]["points"] == 91
            assert sorted(t.amount for t in transfers) == [36, 55]
            assert all(t.code == TransferCode.CAMPAIGN_BONUS for t in transfers)
            total += 91
        else:
            assert legs[0]["refused"] == "exceeds_credits"
            assert transfers == []
    assert total == sum(spent.values()) == 910
    wallets_after = {m.id: (await wallet(ledger, m))[0] for m in world.members}
    assert sum(wallets_after.values()) - sum(wallets_before.values()) == 910


async def test_a_bonus_is_given_once_however_often_its_purchase_is_handled(
    session: AsyncSession, pool: asyncpg.Pool, ledger: Ledger, world: Coalition
) -> None:
    await running(session, ledger, world)
    bought = await purchase(pool, ledger, world, world.members[1], 2000)
    results = await asyncio.gather(*(bonus_of(world, bought) for _ in range(5)))
    assert sorted(results) == [0, 0, 0, 0, 140]
    assert (await wallet(ledger, world.members[1]))[0] == 140


# -- stop and release -----------------------------------------------------------


async def test_any_participant_stops_it_and_the_unspent_budget_goes_back(
    session: AsyncSession, pool: asyncpg.Pool, ledger: Ledger, world: Coalition
) -> None:
    a_before = await issuable(ledger, world.program, world.a)
    b_before = await issuable(ledger, world.program, world.b)
    view = await running(session, ledger, world)
    campaign_id = uuid.UUID(view.id)
    assert await bonus_of(world, await purchase(pool, ledger, world, world.members[2], 1300)) == 91
    # B, which did not propose it, stops it.
    stopped = await stop_campaign(
        session, world.program, campaign_id, datetime.now(UTC), principal=world.pb
    )
    await session.commit()
    assert stopped.status == "stopped" and stopped.stopped_by == world.pb.actor
    assert await bonus_of(world, await purchase(pool, ledger, world, world.members[2], 1300)) == 0
    await close_due_campaigns(world.sessions, ledger, datetime.now(UTC))
    found = await get_campaign(session, world.program, campaign_id, principal=world.pa)
    assert found.released_at is not None
    # Each got back its budget less the legs it funded.
    assert await issuable(ledger, world.program, world.a) == a_before - 55
    assert await issuable(ledger, world.program, world.b) == b_before - 36
    # Released once: a second run moves nothing.
    await close_due_campaigns(world.sessions, ledger, datetime.now(UTC))
    assert await issuable(ledger, world.program, world.a) == a_before - 55
    again = await stop_campaign(
        session, world.program, campaign_id, datetime.now(UTC), principal=world.pa
    )
    assert again.stopped_by == world.pb.actor  # stopping again changes nothing


async def test_an_ended_campaign_can_no_longer_be_stopped(
    session: AsyncSession, ledger: Ledger, world: Coalition
) -> None:
    view = await running(session, ledger, world)
    await session.execute(
        update(Campaign).where(Campaign.id == uuid.UUID(view.id)).values(status="ended")
    )
    await session.commit()
    with pytest.raises(CampaignNotOpen):
        await stop_campaign(
            session, world.program, uuid.UUID(view.id), datetime.now(UTC), principal=world.pa
        )
    await session.rollback()


# -- holdout ---------------------------------------------------------------


async def test_the_holdout_is_drawn_reproducibly_and_gets_no_bonus(
    session: AsyncSession, pool: asyncpg.Pool, ledger: Ledger, world: Coalition
) -> None:
    listed = world.members[:10]
    view = await running(
        session,
        ledger,
        world,
        holdout_bp=3000,
        segment={"kind": "list", "members": [m.external_id for m in listed]},
    )
    campaign_id = uuid.UUID(view.id)
    found = await get_campaign(session, world.program, campaign_id, principal=world.pa)
    assert (found.segment_size, found.holdout_size) == (10, 3)
    held = {
        r["member_id"]
        for r in await pool.fetch(
            "SELECT member_id FROM campaign_members WHERE campaign_id = $1 AND holdout",
            campaign_id,
        )
    }
    # The rule as documented: the three smallest SHA-256 of "<campaign>:<member>".
    ranked = sorted(listed, key=lambda m: hashlib.sha256(f"{campaign_id}:{m.id}".encode()).digest())
    assert held == {m.id for m in ranked[:3]}
    for member in listed:
        got = await bonus_of(world, await purchase(pool, ledger, world, member, 1000))
        assert got == (0 if member.id in held else 70)
    figures = await campaign_attribution(
        session, world.program, campaign_id, datetime.now(UTC), principal=world.pb
    )
    assert figures.members_reached == 7
    assert figures.bonus_points == 490
    assert (figures.targeted.members, figures.holdout.members) == (7, 3)
    assert figures.targeted.spend_minor == 7000 and figures.holdout.spend_minor == 3000
    assert [p.cost_points for p in figures.participants] == [7 * 42, 7 * 28]
    assert figures.participants[0].spend_minor == 7000  # A's store
    assert figures.participants[1].spend_minor == 0


async def test_a_member_outside_the_segment_gets_no_bonus(
    session: AsyncSession, pool: asyncpg.Pool, ledger: Ledger, world: Coalition
) -> None:
    await running(
        session, ledger, world, segment={"kind": "list", "members": [world.members[0].external_id]}
    )
    assert await bonus_of(world, await purchase(pool, ledger, world, world.members[1], 1000)) == 0
    assert await bonus_of(world, await purchase(pool, ledger, world, world.members[0], 1000)) == 70


# -- who sees it ----------------------------------------------------------------


async def test_a_partner_that_takes_no_part_sees_nothing_of_it(
    session: AsyncSession, ledger: Ledger, world: Coalition, new_partner: NewPartner
) -> None:
    view = await running(session, ledger, world)
    outsider = partner_principal(await new_partner(world.program), scopes=("campaigns:manage",))
    for attempt in (
        get_campaign(session, world.program, uuid.UUID(view.id), principal=outsider),
        stop_campaign(
            session, world.program, uuid.UUID(view.id), datetime.now(UTC), principal=outsider
        ),
        campaign_attribution(
            session, world.program, uuid.UUID(view.id), datetime.now(UTC), principal=outsider
        ),
    ):
        with pytest.raises(NotFound):
            await attempt


async def test_segments_by_tier_and_by_recent_activity(
    session: AsyncSession, pool: asyncpg.Pool, ledger: Ledger, world: Coalition
) -> None:
    gold, active = world.members[0], world.members[1]
    await pool.execute("UPDATE members SET tier_code = 'gold' WHERE id = $1", gold.id)
    by_tier = await running(session, ledger, world, segment={"kind": "tiers", "tiers": ["gold"]})
    # A purchase before the next campaign starts makes its member active.
    await purchase(pool, ledger, world, active, 100)
    by_activity = await running(
        session, ledger, world, segment={"kind": "active", "active_within_days": 30}
    )
    for view, expected in ((by_tier, {gold.id}), (by_activity, {active.id})):
        members = await pool.fetch(
            "SELECT member_id FROM campaign_members WHERE campaign_id = $1", uuid.UUID(view.id)
        )
        assert {r["member_id"] for r in members} == expected


async def test_the_end_job_ends_a_campaign_past_its_end_and_releases_its_budget(
    session: AsyncSession, pool: asyncpg.Pool, ledger: Ledger, world: Coalition
) -> None:
    a_before = await issuable(ledger, world.program, world.a)
    view = await running(session, ledger, world)
    campaign_id = uuid.UUID(view.id)
    assert await bonus_of(world, await purchase(pool, ledger, world, world.members[3], 1300)) == 91
    await pool.execute(
        "UPDATE campaigns SET ends_at = now() - interval '1 second' WHERE id = $1", campaign_id
    )
    assert await close_due_campaigns(world.sessions, ledger, datetime.now(UTC)) >= 1
    found = await get_campaign(session, world.program, campaign_id, principal=world.pa)
    assert found.status == "ended" and found.released_at is not None
    assert await issuable(ledger, world.program, world.a) == a_before - 55
    # Its bonus no longer applies.
    assert await bonus_of(world, await purchase(pool, ledger, world, world.members[3], 1300)) == 0
