"""Migration 0053 over a database that already has members, tiers and
points (built at 0052): each tier gets its ledger class, each wallet its
member's tier's class, and the program's ledger ``classes_since``, so that
the liability by tier is the scan's for the days before it and the
aggregates' from then on; down to 0052 and up again, the same."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import msgspec
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from api.database import downgrade, fresh_database, migrate, sqlalchemy_url
from core.codes import TransferCode
from core.models import Member, Program
from finance import liability as liability_module
from finance.liability import LiabilityBreakdown, liability
from finance.report_dates import end_of_day
from ledger import Ledger, Transfer
from ledger.connection import create_pool
from rewards.programs import Enrolment, ProgramSpec, enrol_member, open_program
from tests.finance.liability_helpers import PRINCIPAL

ZONE = "Africa/Johannesburg"
BEFORE = "0052_account_classes"
REVISION = "0053_tier_classes"
NOW = datetime.now(UTC)
T = TypeVar("T")


def _day(at: datetime) -> date:
    return at.astimezone(ZoneInfo(ZONE)).date()


@dataclass
class Built:
    shop: Program
    members: dict[str, Member]


@dataclass
class Classes:
    #: By tier code, by rank.
    tiers: dict[str, int]
    #: Each wallet's class, by member.
    wallets: dict[str, int]
    #: Each program's ledger's ``classes_since``.
    since: dict[str, datetime | None]


async def _with(url: str, work: Callable[[AsyncSession, Ledger], Awaitable[T]]) -> T:
    """``work(session, ledger)`` on the database at ``url``."""
    engine = create_async_engine(sqlalchemy_url(url))
    pool = await create_pool(url, min_size=1, max_size=4)
    ledger = Ledger(pool)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            return await work(session, ledger)
    finally:
        await ledger.close()
        await pool.close()
        await engine.dispose()


async def _earn(
    ledger: Ledger, program: Program, member: Member, points: int, at: datetime
) -> None:
    (outcome,) = await ledger.create_transfers(
        [
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=program.issuance_account_id,
                credit_account_id=member.wallet_account_id,
                amount=points,
                ledger=program.ledger_id,
                code=TransferCode.PURCHASE_EARN,
                effective_at=at,
            )
        ]
    )
    assert outcome.result == "ok", outcome


async def _before_the_migration(session: AsyncSession, ledger: Ledger) -> Built:
    """At 0052: a program with three members, two tiers (by SQL: the model
    has the column 0053 adds) and changes of tier in the history, points
    posted before and after them; and a program with no member."""
    programs = []
    for slug in ("shop", "empty"):
        program, _ = await open_program(
            session,
            ledger,
            msgspec.convert(
                {"slug": slug, "name": slug, "currency": "ZAR", "point_value_minor": Decimal(1),
                 "time_zone": ZONE},
                ProgramSpec,
            ),
            principal=PRINCIPAL,
        )  # fmt: skip
        programs.append(program)
    shop = programs[0]
    members = {}
    for name in ("alice", "bob", "cy"):
        member, _ = await enrol_member(
            session, ledger, shop, Enrolment(external_id=name), principal=PRINCIPAL
        )
        members[name] = member
    for rank, code in enumerate(("silver", "gold"), start=1):
        await session.execute(
            text(
                "INSERT INTO tiers (id, program_id, code, name, rank, threshold)"
                " VALUES (:id, :program, :code, :name, :rank, 0)"
            ),
            {"id": uuid.uuid4(), "program": shop.id, "code": code, "name": code.title(),
             "rank": rank},
        )  # fmt: skip
    await session.commit()
    for name, tier, since in (
        ("alice", "gold", NOW - timedelta(days=8)),
        ("bob", "silver", NOW - timedelta(days=3)),
    ):
        await session.execute(
            update(Member)
            .where(Member.id == members[name].id)
            .values(tier_code=tier, tier_since=since)
        )
    await session.commit()
    for name, points in (("alice", 500), ("bob", 300), ("cy", 70)):
        await _earn(ledger, shop, members[name], points, NOW - timedelta(days=10))
    await _earn(ledger, shop, members["alice"], 25, NOW - timedelta(days=5))
    return Built(shop=shop, members=members)


async def _classes(session: AsyncSession) -> Classes:
    async def pairs(sql: str) -> dict[Any, Any]:
        return {key: value for key, value in (await session.execute(text(sql))).all()}

    return Classes(
        tiers=await pairs("SELECT code, ledger_class FROM tiers ORDER BY rank"),
        wallets=await pairs(
            "SELECT m.external_id, a.account_class FROM members m"
            " JOIN accounts a ON a.id = m.wallet_account_id"
        ),
        since=await pairs(
            "SELECT p.slug, g.classes_since FROM programs p JOIN ledgers g ON g.id = p.ledger_id"
        ),
    )


async def _by_tier(session: AsyncSession, program: Program, day: date) -> dict[str, int]:
    report = await liability(session, program, day, LiabilityBreakdown.TIER, principal=PRINCIPAL)
    return {line.group: line.points for line in report.lines}


async def _scan(session: AsyncSession, program: Program, day: date) -> dict[str, int]:
    rows = await liability_module.tier_lines_by_scan(session, program, day, end_of_day(day, ZONE))
    return {code: points for code, _, points in rows}


def test_the_backfill_assigns_the_tiers_and_leaves_the_past_to_the_scan(server_url: str) -> None:
    with fresh_database(server_url) as url:
        migrate(url, BEFORE)
        built = asyncio.run(_with(url, _before_the_migration))
        shop, members = built.shop, built.members
        migrate(url, REVISION)
        past, today = _day(NOW - timedelta(days=6)), _day(NOW)

        async def after(session: AsyncSession, ledger: Ledger) -> None:
            found = await _classes(session)
            tiers = found.tiers
            assert list(tiers) == ["silver", "gold"]
            assert min(tiers.values()) > 0 and tiers["silver"] != tiers["gold"]
            assert found.wallets == {"alice": tiers["gold"], "bob": tiers["silver"], "cy": 0}
            assert found.since["empty"] is None  # no wallet: the aggregates answer every day
            shop_since = found.since["shop"]
            assert shop_since is not None and shop_since >= NOW
            # Six days ago: alice gold (from eight days ago), bob not yet silver.
            assert await _by_tier(session, shop, past) == {"gold": 500, "none": 370}
            assert await _by_tier(session, shop, past) == await _scan(session, shop, past)
            assert await _by_tier(session, shop, today) == {"gold": 525, "silver": 300, "none": 70}
            # A change after the migration, and an earn dated before it.
            await session.execute(
                update(Member)
                .where(Member.id == members["cy"].id)
                .values(tier_code="gold", tier_since=NOW - timedelta(days=1))
            )
            await session.commit()
            await _earn(ledger, shop, members["cy"], 5, NOW - timedelta(days=2))
            assert await _by_tier(session, shop, today) == {"gold": 600, "silver": 300}
            assert await _by_tier(session, shop, today) == await _scan(session, shop, today)

        asyncio.run(_with(url, after))

        # Down and up again: assigned anew from the tiers held then.
        downgrade(url, BEFORE)
        migrate(url, REVISION)

        async def again(session: AsyncSession, ledger: Ledger) -> None:
            found = await _classes(session)
            gold, silver = found.tiers["gold"], found.tiers["silver"]
            assert found.wallets == {"alice": gold, "bob": silver, "cy": gold}
            assert await _by_tier(session, shop, today) == {"gold": 600, "silver": 300}
            assert await _by_tier(session, shop, past) == await _scan(session, shop, past)

        asyncio.run(_with(url, again))


def test_a_second_upgrade_puts_a_member_who_lost_the_tier_back_in_no_class(
    server_url: str,
) -> None:
    # Down to 0052 keeps the wallets' classes; a member losing the tier
    # meanwhile records no change of class, so the upgrade re-assigns all.
    with fresh_database(server_url) as url:
        migrate(url, BEFORE)
        built = asyncio.run(_with(url, _before_the_migration))
        migrate(url, REVISION)
        downgrade(url, BEFORE)

        async def lose(session: AsyncSession, ledger: Ledger) -> None:
            await session.execute(
                update(Member)
                .where(Member.id == built.members["alice"].id)
                .values(tier_code=None, tier_since=None)
            )
            await session.commit()

        asyncio.run(_with(url, lose))
        migrate(url, REVISION)
        today = _day(NOW)

        async def check(session: AsyncSession, ledger: Ledger) -> None:
            assert (await _classes(session)).wallets["alice"] == 0
            assert await _by_tier(session, built.shop, today) == await _scan(
                session, built.shop, today
            )

        asyncio.run(_with(url, check))
