"""The end of earning on the other earn paths: behaviour events, partners'
issuance and points exchanged into the program are refused with
``program-sunsetting`` and write nothing; converting points out of an
ending program is spending, and goes on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.principal import system
from core.programs import get_program
from ledger import Ledger
from partners.exchange_schemas import DirectionTerms
from rewards.errors import ProgramSunsetting
from rewards.sunset import SunsetRequest, schedule_sunset
from tests.api.conftest import assert_problem, count_writes
from tests.partners import test_exchanges
from tests.partners.test_exchanges import Convert, Pair, agreed, enrolled, terms
from tests.test_crash_between_writes import (
    World,
    ann,
    contract_published,
    partner_firm,
    partner_funded,
    partner_issuance,
    program,
    rules,
    serving,
)

# The exchange tests' fixtures, shared.
convert = test_exchanges.convert
pair = test_exchanges.pair

OPERATOR = system("board")


def ending(now: datetime) -> SunsetRequest:
    return SunsetRequest(
        sunset_at=now + timedelta(days=40), notice_days=30, reason="the program closes"
    )


async def announce(w: World) -> None:
    await w.setup(
        "/programs/{slug}/sunset",
        {
            "sunset_at": (datetime.now(UTC) + timedelta(days=100)).isoformat(),
            "notice_days": 90,
            "reason": "the program closes",
        },
    )


async def ledger_writes(w: World) -> int:
    ledger_id = await w.side.fetchval("SELECT ledger_id FROM programs WHERE slug = $1", w.slug)
    return int(await w.side.fetchval("SELECT count(*) FROM transfers WHERE ledger = $1", ledger_id))


async def test_events_and_partner_issuance_are_refused(database_url: str) -> None:
    side = await asyncpg.connect(database_url)
    try:
        async with serving(database_url) as (app, http):
            w = World(http, app, side, f"ending-paths-{datetime.now(UTC).timestamp():.0f}")
            for step in (program, rules, ann, partner_firm, contract_published, partner_funded):
                await step(w)
            await announce(w)
            before = await ledger_writes(w)
            event = await w.post(
                "/programs/{slug}/events",
                {
                    "event_id": "E-1",
                    "member": "ann",
                    "event": "gym-visit",
                    "occurred_at": datetime.now(UTC).isoformat(),
                },
            )
            assert_problem(event, 409, "program-sunsetting")
            issued = await partner_issuance(w)
            assert issued.status_code == 500 and "ProgramSunsetting" in issued.text, issued.text
            assert await ledger_writes(w) == before
            for table in ("behaviour_events", "partner_issuances"):
                assert (
                    await side.fetchval(
                        f"SELECT count(*) FROM {table} t JOIN programs p ON p.id = t.program_id"
                        " WHERE p.slug = $1",
                        w.slug,
                    )
                    == 0
                )
    finally:
        await side.close()


async def test_points_are_not_exchanged_into_an_ending_program_but_out_of_it(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    pair: Callable[..., Awaitable[Pair]],
    convert: Convert,
) -> None:
    a, b = await pair()
    now = datetime.now(UTC)
    await agreed(
        session,
        ledger,
        a,
        b,
        terms(1, 1, inbound=DirectionTerms(give=1, receive=1, daily_cap=10_000)),
        now,
    )
    await enrolled(session, ledger, a, "bo", 10)
    await enrolled(session, ledger, b, "bo", 10)
    await schedule_sunset(session, b, ending(now), now, principal=OPERATOR)
    await session.commit()
    before = (await count_writes(pool, a.ledger_id), await count_writes(pool, b.ledger_id))

    with pytest.raises(ProgramSunsetting):
        await convert(a, "bo", b.slug, 5, key="into-b")
    assert (await count_writes(pool, a.ledger_id), await count_writes(pool, b.ledger_id)) == before
    # Out of the ending program: spending, allowed until its sunset.
    found = await get_program(session, system("test"), b.slug)
    assert (await convert(found, "bo", a.slug, 5, key="out-of-b")).received_points == 5
