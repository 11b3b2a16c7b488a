"""The logged partner read's speed (issue 11, "Speed"): a page of the
members' data shared under a data-sharing agreement, read with its
disclosure lines written (what ``GET /partner/data-sharing/agreements/
{id}/members`` does) against the same read without them, in the same run.

    .venv/bin/python bench/disclosure.py [--members 20000] [--page 50]
        [--concurrency 8] [--duration 2] [--rounds 10]

In a database of its own on ``DATABASE_URL``'s server (dropped at the end):
``--members`` members linked at partner A, each consenting to two of the
agreement's three fields; an active agreement A -> B. Each request is one
transaction, as the API's: the agreement found in force (FOR SHARE), the
page read filtered by consent, and, when logged, its lines in one
multi-row INSERT. ``--concurrency`` tasks read pages at random offsets for
``--duration`` seconds, logged and not logged in alternating rounds; the
ratio of the logged reads per second to the unlogged is printed, of the
medians and the median of each round's pair (goal >= 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from common import argument_parser, bench_database
from member_api import load_members
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from api.database import migrate, sqlalchemy_url
from core.codes import derived_id
from core.pagination import encode_cursor
from core.principal import system
from ledger import Ledger
from ledger.connection import create_pool
from partners.data_sharing.agreements import agreement_in_force
from partners.data_sharing.disclosures import read_shared
from partners.data_sharing.models import AgreementStatus, DataSharingAgreement
from partners.models import Partner, PartnerStatus
from rewards.programs import ProgramSpec, open_program

OPERATOR = system("bench")


async def prepare(url: str, members: int) -> tuple[uuid.UUID, uuid.UUID, list[uuid.UUID]]:
    """The program, partners A and B, the members linked at A with their
    consents, and the active agreement; answers its id, B's id and the
    members' ids in order."""
    pool = await create_pool(url, min_size=1, max_size=4)
    engine = create_async_engine(sqlalchemy_url(url))
    now = datetime.now(UTC)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        program, _ = await open_program(
            session,
            Ledger(pool),
            ProgramSpec(slug="bench", name="Bench", currency="ZAR", point_value_minor=Decimal(1)),
            principal=OPERATOR,
        )
        await session.commit()
        a, b = (
            Partner(
                id=uuid.uuid4(),
                program_id=program.id,
                slug=slug,
                name=slug.upper(),
                legal_name=f"{slug} Ltd",
                country="ZA",
                currency="ZAR",
                contacts=[],
                status=PartnerStatus.ACTIVE,
                status_changed_at=now,
            )
            for slug in ("a", "b")
        )
        session.add_all([a, b])
        await session.flush()
        agreement = DataSharingAgreement(
            id=uuid.uuid4(),
            program_id=program.id,
            proposer_partner_id=a.id,
            counterparty_partner_id=b.id,
            purpose="bench",
            direction="proposer_to_counterparty",
            fields=["email", "partner_identifier", "tier"],
            status=AgreementStatus.ACTIVE,
            proposer_opted_in_at=now,
            counterparty_opted_in_at=now,
            expires_at=now + timedelta(days=365),
        )
        session.add(agreement)
        await session.commit()
        program_id, ledger_id, a_id, b_id = program.id, program.ledger_id, a.id, b.id
        agreement_id = agreement.id
    await engine.dispose()
    await pool.close()
    await load_members(url, program_id, ledger_id, 0, members)
    ids = sorted(derived_id(program_id, "member", f"m{n}") for n in range(members))
    pool = await create_pool(url, min_size=1, max_size=4)
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE members SET email = external_id || '@example.com' WHERE program_id = $1",
            program_id,
        )
        await connection.copy_records_to_table(
            "partner_member_links",
            columns=["id", "program_id", "partner_id", "member_id", "identifier"],
            records=[(uuid.uuid4(), program_id, a_id, m, f"card-{n}") for n, m in enumerate(ids)],
        )
        await connection.copy_records_to_table(
            "data_sharing_consents",
            columns=["id", "program_id", "member_id", "field", "granted_at"],
            records=[
                (uuid.uuid4(), program_id, m, field, now)
                for m in ids
                for field in ("email", "partner_identifier")
            ],
        )
        await connection.execute("ANALYZE")
    await pool.close()
    return agreement_id, b_id, ids


async def round_of(
    sessions: async_sessionmaker[AsyncSession],
    agreement_id: uuid.UUID,
    to: uuid.UUID,
    ids: list[uuid.UUID],
    *,
    log: bool,
    page: int,
    concurrency: int,
    duration: float,
) -> float:
    """Reads per second for ``duration`` seconds at ``concurrency``."""
    done = 0
    deadline = time.monotonic() + duration

    async def reader() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            after = random.randrange(len(ids) - page)
            async with sessions() as session, session.begin():
                now = datetime.now(UTC)
                found = await agreement_in_force(session, agreement_id, to, now)
                got = await read_shared(
                    session, found, to, now, cursor=encode_cursor(ids[after]), limit=page, log=log
                )
                assert len(got.items) == page
            done += 1

    started = time.monotonic()
    await asyncio.gather(*(reader() for _ in range(concurrency)))
    return done / (time.monotonic() - started)


async def run(url: str, args: argparse.Namespace) -> None:
    members: int = args.members
    page: int = args.page
    concurrency: int = args.concurrency
    duration: float = args.duration
    rounds: int = args.rounds
    agreement_id, to, ids = await prepare(url, members)
    engine = create_async_engine(sqlalchemy_url(url), pool_size=concurrency + 2)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    # A warm-up of each, untimed.
    for log in (False, True):
        await round_of(
            sessions, agreement_id, to, ids, log=log, page=page, concurrency=concurrency, duration=1
        )
    plain: list[float] = []
    logged: list[float] = []
    for n in range(rounds):
        # Alternating which goes first, so that neither always meets a warmer database.
        order = (False, True) if n % 2 == 0 else (True, False)
        for log in order:
            rate = await round_of(
                sessions,
                agreement_id,
                to,
                ids,
                log=log,
                page=page,
                concurrency=concurrency,
                duration=duration,
            )
            (logged if log else plain).append(rate)
            print(f"round {n + 1}: {'logged' if log else 'plain '} {rate:8.1f} reads/s")
    await engine.dispose()
    without, with_log = statistics.median(plain), statistics.median(logged)
    # Each round's pair ran back to back: its ratio is less swayed by what
    # else the machine does meanwhile than the medians' ratio.
    paired = statistics.median(w / p for w, p in zip(logged, plain, strict=True))
    print(
        f"read of {page} members, {concurrency} at once: without the log {without:.1f}/s,"
        f" with it {with_log:.1f}/s; ratio {with_log / without:.2f}, per round {paired:.2f}"
        " (goal >= 0.80)"
    )


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--members", type=int, default=20000)
    parser.add_argument("--page", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    with bench_database() as url:
        migrate(url)
        asyncio.run(run(url, args))


if __name__ == "__main__":
    main()
