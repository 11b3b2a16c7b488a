"""Finance reads on a large ledger: the liability as of a day and a month's
roll-forward from the daily aggregates the posting path keeps, against the
same answers by full scan of the lots, their movements and the transfers.

    .venv/bin/python bench/finance_reports.py               # 10M transfers, 1M members
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/finance_reports.py --transfers 500000 --members 50000

It makes a database of its own (dropped at the end), opens one program
(zone Africa/Johannesburg) with ``--partners`` partners and ``--members``
members, and loads ``--transfers`` transfers dated over the last
``--months`` months (``effective_at``, backdated, in business-time order)
by calling ``ledger_create_transfers`` with batches of ``--batch``: the
posting path writes the daily totals and the lots of what is no plain
queue's movement, and every 50 batches the settlement writes the rest as
the ``settle-lots`` job does (timed apart; no COPY, no backfill). The workload: 45%
purchase earnings, 15% partner issuances, 5% threshold bonuses (credits of
10-500 points), 20% catalog redemptions, 5% gifts, 5% expiries and 5%
returns (debits of what the wallet holds at most, so none is refused).

Then, after ANALYZE, each timed ``--rounds`` times (best and median shown):
  (a) liability  the outstanding points as of a day two thirds into the
                 history: ``ledger.lots.outstanding`` (aggregates) and the
                 whole report by partner (``finance.liability``), against
                 ``outstanding_by_scan``;
  (b) roll-forward  the month of that day: ``finance.rollforward`` (opening,
                 lines, closing and the tie to the ledger, all from the
                 aggregates), against the same figures by scan
                 (``outstanding_by_scan`` twice, ``lot_movement_totals_by_scan``,
                 ``daily_totals_by_scan``).
  (c) liability by tier  the same day by the tier each member held at its
                 end: ``finance.liability`` by tier (the ledger's class
                 aggregates, migration 0052) against its scan (every
                 wallet's lots and every member's tier in force). The
                 program has four tiers; every 10 batches of the load 1% of
                 the members change tier at that batch's business time
                 (``UPDATE members``: the tier history and the wallet's class).
The answers by aggregates and by scan are asserted equal. Goal: (a) and
(b) under 1 s each from the aggregates at 10M transfers and 1M members.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import asyncpg
from common import argument_parser, bench_database
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from api.database import migrate, sqlalchemy_url
from core.codes import AccountCode, TransferCode, derived_id, partner_account_id
from core.principal import system
from finance.liability import LiabilityBreakdown, liability, tier_lines_by_scan
from finance.report_dates import Period, end_of_day, parse_month
from finance.rollforward import roll_forward
from ledger import Account, AccountFlags, Ledger, Transfer, lots
from ledger.connection import create_pool, init_connection
from ledger.writer import CREATE_TRANSFERS_SQL, encode_batch
from partners.models import Partner
from rewards.models import Tier
from rewards.programs import ProgramSpec, open_program

T = TypeVar("T")
TIERS = ("blue", "silver", "gold", "platinum")
ZONE = "Africa/Johannesburg"
PRINCIPAL = system("bench")
#: Kinds of movement and their share of the workload (in per cent).
MIX = (
    ("earn", 45),
    ("partner", 15),
    ("bonus", 5),
    ("redeem", 20),
    ("gift", 5),
    ("expire", 5),
    ("return", 5),
)


class Book:
    """The program's accounts, and what each wallet holds (so that every
    generated debit is one the ledger accepts)."""

    def __init__(self, program: Any, partners: list[uuid.UUID], wallets: list[uuid.UUID]) -> None:
        self.program = program
        self.partners = partners
        self.wallets = wallets
        self.held = [0] * len(wallets)


async def open_book(url: str, members: int, partner_count: int, months: int) -> Book:
    pool = await create_pool(url, min_size=1, max_size=2)
    ledger = Ledger(pool)
    engine = create_async_engine(sqlalchemy_url(url))
    started = datetime.now(UTC) - timedelta(days=31 * months + 2)
    async with AsyncSession(engine, expire_on_commit=False) as session:
        program, _ = await open_program(
            session,
            ledger,
            ProgramSpec(
                slug="bench-finance",
                name="Bench",
                currency="ZAR",
                point_value_minor=Decimal("0.5"),
                time_zone=ZONE,
                started_at=started,
            ),
            principal=PRINCIPAL,
        )
        partners = [
            Partner(
                id=uuid.uuid4(),
                program_id=program.id,
                slug=f"partner-{n}",
                name=f"Partner {n}",
                legal_name=f"Partner {n} Ltd",
                country="ZA",
                currency="ZAR",
                contacts=[],
                status="active",
                status_changed_at=started,
            )
            for n in range(partner_count)
        ]
        session.add_all(partners)
        session.add_all(
            Tier(
                program_id=program.id,
                code=code,
                name=code.title(),
                rank=rank,
                threshold=rank * 1000,
            )
            for rank, code in enumerate(TIERS, start=1)
        )
        await session.commit()
    await engine.dispose()
    issuing = [partner_account_id(program.id, p.id, AccountCode.PARTNER_ISSUANCE) for p in partners]
    await ledger.create_accounts(
        [
            Account(id=a, ledger=program.ledger_id, code=AccountCode.PARTNER_ISSUANCE)
            for a in issuing
        ]
    )
    wallets = []
    now = datetime.now(UTC)
    for start in range(0, members, 8000):
        names = [f"m{n}" for n in range(start, min(members, start + 8000))]
        chunk = [derived_id(program.id, "wallet", name) for name in names]
        await ledger.create_accounts(
            [
                Account(
                    id=w,
                    ledger=program.ledger_id,
                    code=AccountCode.MEMBER_WALLET,
                    flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
                )
                for w in chunk
            ]
        )
        async with pool.acquire() as connection:
            await connection.copy_records_to_table(
                "members",
                columns=["id", "program_id", "external_id", "consents", "status",
                         "wallet_account_id", "created_at", "updated_at"],
                records=[
                    (derived_id(program.id, "member", n), program.id, n, {}, "active", w, now,
                     now)
                    for n, w in zip(names, chunk, strict=True)
                ],
            )  # fmt: skip
        wallets.extend(chunk)
    await ledger.close()
    await pool.close()
    return Book(program, issuing, wallets)


def workload(book: Book, count: int, months: int, seed: int, batch: int) -> Any:
    """Batches of transfers, in business-time order over ``months`` months to yesterday."""
    rng = random.Random(seed)
    program = book.program
    kinds = [kind for kind, share in MIX for _ in range(share)]
    end = datetime.now(UTC) - timedelta(days=1)
    first = end - timedelta(days=31 * months)
    step = (end - first) / max(count, 1)
    members = len(book.wallets)
    out: list[Transfer] = []
    for n in range(count):
        at = first + step * n
        kind = rng.choice(kinds)
        who = rng.randrange(members)
        amount = rng.randint(10, 500)
        if kind in ("redeem", "gift", "expire", "return"):
            amount = min(amount, book.held[who])
            if amount == 0:
                kind, amount = "earn", rng.randint(10, 500)
        wallet = book.wallets[who]
        if kind == "earn":
            debit, credit, code = program.issuance_account_id, wallet, TransferCode.PURCHASE_EARN
        elif kind == "partner":
            debit, credit = rng.choice(book.partners), wallet
            code = TransferCode.PARTNER_ISSUANCE
        elif kind == "bonus":
            debit, credit, code = program.issuance_account_id, wallet, TransferCode.THRESHOLD_BONUS
        elif kind == "redeem":
            debit, credit = wallet, program.redemption_account_id
            code = TransferCode.CATALOG_REDEMPTION
        elif kind == "gift":
            other = rng.randrange(members)
            if other == who:
                other = (who + 1) % members
            debit, credit, code = wallet, book.wallets[other], TransferCode.GIFT
            book.held[other] += amount
        elif kind == "expire":
            debit, credit, code = wallet, program.breakage_account_id, TransferCode.EXPIRY
        else:
            debit, credit = wallet, program.issuance_account_id
            code = TransferCode.RETURN_REVERSAL
        book.held[who] += amount if credit == wallet else -amount
        out.append(
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=debit,
                credit_account_id=credit,
                amount=amount,
                ledger=program.ledger_id,
                code=code,
                effective_at=at,
            )
        )
        if len(out) == batch:
            yield out
            out = []
    if out:
        yield out


async def settle(connection: asyncpg.Connection, ledger: int) -> tuple[int, int, float]:
    """What the ``settle-lots`` job does: the lots the plain movements since
    its last run made and consumed. Lots and movements written, seconds."""
    began = time.perf_counter()
    row = await connection.fetchrow("SELECT * FROM ledger_settle_ledger_lots($1)", ledger)
    assert row is not None
    return int(row["lots"]), int(row["movements"]), time.perf_counter() - began


async def load(url: str, book: Book, count: int, months: int, seed: int, batch: int) -> float:
    """Post the workload through ``ledger_create_transfers``, settling the
    lots every 50 batches as the job would (timed apart); transfers/s of
    the posting alone."""
    connection = await asyncpg.connect(url)
    await init_connection(connection)
    posted = 0
    busy = 0.0
    settled = [0, 0, 0.0]
    moved = [0, 0.0]
    rng = random.Random(seed + 1)
    started = time.perf_counter()
    for n, transfers in enumerate(workload(book, count, months, seed, batch)):
        if n % 10 == 9:
            # Tiers move as the history goes: 1% of the members, at this batch's time.
            at = transfers[0].effective_at
            chosen = rng.sample(book.wallets, max(1, len(book.wallets) // 100))
            began = time.perf_counter()
            for k, code in enumerate((None, *TIERS)):
                await connection.execute(
                    "UPDATE members SET tier_code = $1, tier_since = $2"
                    " WHERE wallet_account_id = ANY ($3::uuid[])",
                    code,
                    at,
                    chosen[k::5],
                )
            moved[0] += len(chosen)
            moved[1] += time.perf_counter() - began
        columns = encode_batch([transfers])
        began = time.perf_counter()
        row = await connection.fetchrow(CREATE_TRANSFERS_SQL, *columns)
        busy += time.perf_counter() - began
        assert row is not None
        assert not any(row["results"]), "a generated transfer was refused"
        posted += len(transfers)
        if posted % (batch * 50) == 0:
            for k, figure in enumerate(await settle(connection, book.program.ledger_id)):
                settled[k] += figure
            rate = posted / (time.perf_counter() - started)
            print(f"  loaded {posted:,} transfers ({rate:,.0f}/s)", flush=True)
    for k, figure in enumerate(await settle(connection, book.program.ledger_id)):
        settled[k] += figure
    print(
        f"  moved {moved[0]:,} members' tiers (and wallets' classes) in {moved[1]:.1f} s"
        f" ({moved[0] / max(moved[1], 1e-9):,.0f}/s)"
    )
    print(
        f"  settled {settled[0]:,} lots and {settled[1]:,} lot movements in"
        f" {settled[2]:.1f} s ({settled[1] / max(settled[2], 1e-9):,.0f} movements/s)"
    )
    await connection.execute("ANALYZE")
    await connection.close()
    return posted / busy


async def timed(rounds: int, read: Callable[[], Awaitable[T]]) -> tuple[T, float, float]:
    """``read``'s answer, and its best and median time over ``rounds`` runs."""
    times = []
    answer: Any = None
    for _ in range(rounds):
        began = time.perf_counter()
        answer = await read()
        times.append(time.perf_counter() - began)
    return answer, min(times), statistics.median(times)


def show(name: str, best: float, median: float) -> None:
    print(f"  {name:<58} best {best * 1000:9.1f} ms   median {median * 1000:9.1f} ms")


async def measure(url: str, book: Book, months: int, rounds: int) -> None:
    program = book.program
    ledger = program.ledger_id
    pool = await create_pool(url, min_size=1, max_size=2)
    engine = create_async_engine(sqlalchemy_url(url))
    today = datetime.now(UTC).date()
    as_of = today - timedelta(days=31 * months // 3)
    period = parse_month("period", f"{as_of:%Y-%m}")
    try:
        # bench/ may name the ledger's tables (tests/test_ledger_boundary.py):
        # what the reads sum over, beside what the scans read.
        sizes = {
            table: await pool.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = $1", ledger)
            for table, column in (
                ("lot_daily_movements", "ledger"),
                ("ledger_daily_totals", "ledger"),
                ("lots", "ledger"),
            )
        }
        sizes["lot_movements"] = await pool.fetchval("SELECT count(*) FROM lot_movements")
        print("rows: " + ", ".join(f"{table} {count:,}" for table, count in sizes.items()))
        print(f"(a) liability as of {as_of}")
        by_aggregates, best, median = await timed(
            rounds, lambda: lots.outstanding(pool, ledger=ledger, as_of=as_of)
        )
        show("outstanding, from the aggregates", best, median)
        by_scan, best, median = await timed(
            rounds, lambda: lots.outstanding_by_scan(pool, ledger=ledger, as_of=as_of)
        )
        show("outstanding, by full scan", best, median)
        assert by_aggregates == by_scan, "the aggregates and the scan disagree"

        async def report(by: LiabilityBreakdown) -> Any:
            async with AsyncSession(engine) as session:
                return await liability(session, program, as_of, by, principal=PRINCIPAL)

        for by in (LiabilityBreakdown.PARTNER, LiabilityBreakdown.COHORT):
            found, best, median = await timed(rounds, lambda by=by: report(by))  # type: ignore[misc]
            show(f"finance.liability by {by.value} ({len(found.lines)} lines)", best, median)
            assert found.points == sum(r.points for r in by_scan)
        print(f"  outstanding: {found.points:,} points, {found.value_minor:,} minor units")

        print(f"(b) roll-forward of {period.label}")

        async def rolled() -> Any:
            async with AsyncSession(engine) as session:
                return await roll_forward(session, program, period, principal=PRINCIPAL)

        forward, best, median = await timed(rounds, rolled)
        show(f"finance.rollforward ({len(forward.lines)} lines, tie)", best, median)
        scanned, best, median = await timed(rounds, lambda: roll_by_scan(pool, ledger, period))
        show("the same figures by full scan", best, median)
        opening, closing, moved, in_wallets = scanned
        assert (forward.opening, forward.closing) == (opening, closing)
        assert {line.code: line.points for line in forward.lines} == moved
        assert forward.tie is not None
        assert forward.tie.tied, forward.tie
        assert {t.code: t.ledger for t in forward.tie.lines if t.code in in_wallets} == in_wallets
        print(
            f"  opening {forward.opening:,}, closing {forward.closing:,}, difference"
            f" {forward.difference}, tied to the ledger: {forward.tie.tied}"
        )
        print(f"(c) liability by tier as of {as_of}")
        by_tier, best, median = await timed(rounds, lambda: report(LiabilityBreakdown.TIER))
        show(f"finance.liability by tier ({len(by_tier.lines)} lines)", best, median)

        async def tier_scan() -> Any:
            async with AsyncSession(engine) as session:
                return await tier_lines_by_scan(session, program, as_of, end_of_day(as_of, ZONE))

        scanned_tiers, best, median = await timed(rounds, tier_scan)
        show("the same by scan (lots by wallet, tiers in force)", best, median)
        assert [(line.group, line.points) for line in by_tier.lines] == [
            (group, points) for group, _, points in scanned_tiers
        ], "the class aggregates and the scan disagree"
        assert by_tier.points == sum(r.points for r in by_scan)
        print("  " + ", ".join(f"{line.group} {line.points:,}" for line in by_tier.lines))
    finally:
        await pool.close()
        await engine.dispose()


async def roll_by_scan(
    pool: asyncpg.Pool, ledger: int, period: Period
) -> tuple[int, int, dict[int, int], dict[int, int]]:
    """Opening, closing, the lines by code and the wallets' movements by code, by scan."""
    before = period.first_day - timedelta(days=1)
    opening = sum(
        r.points for r in await lots.outstanding_by_scan(pool, ledger=ledger, as_of=before)
    )
    closing = sum(
        r.points for r in await lots.outstanding_by_scan(pool, ledger=ledger, as_of=period.last_day)
    )
    moved: dict[int, int] = {}
    for r in await lots.lot_movement_totals_by_scan(
        pool, ledger=ledger, first_day=period.first_day, last_day=period.last_day
    ):
        moved[r.code] = moved.get(r.code, 0) + r.points
    in_wallets: dict[int, int] = {}
    for t in await lots.daily_totals_by_scan(
        pool, ledger=ledger, first_day=period.first_day, last_day=period.last_day
    ):
        if t.credit_account_code == AccountCode.MEMBER_WALLET:
            in_wallets[t.code] = in_wallets.get(t.code, 0) + t.amount
        if t.debit_account_code == AccountCode.MEMBER_WALLET:
            in_wallets[t.code] = in_wallets.get(t.code, 0) - t.amount
    return opening, closing, moved, in_wallets


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--transfers", type=int, default=10_000_000)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--partners", type=int, default=20)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--batch", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    with bench_database() as url:
        migrate(url)
        started = time.perf_counter()
        book = asyncio.run(open_book(url, args.members, args.partners, args.months))
        print(
            f"opened {args.members:,} members and {args.partners} partners"
            f" in {time.perf_counter() - started:.1f} s"
        )
        started = time.perf_counter()
        rate = asyncio.run(load(url, book, args.transfers, args.months, args.seed, args.batch))
        print(
            f"loaded {args.transfers:,} transfers over {args.months} months in"
            f" {time.perf_counter() - started:.1f} s ({rate:,.0f}/s in ledger_create_transfers,"
            f" batches of {args.batch:,}, with its daily totals; the lots settled apart)"
        )
        asyncio.run(measure(url, book, args.months, args.rounds))


if __name__ == "__main__":
    main()
