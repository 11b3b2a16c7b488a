"""Ledger throughput: the raw batch SQL, the Python API under 1,000+ callers,
and the HTTP batch endpoint, against the same PostgreSQL in one run.

    .venv/bin/python bench/ledger_throughput.py            # embedded PostgreSQL
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \
        .venv/bin/python bench/ledger_throughput.py        # a server of yours

It makes a database of its own (dropped at the end), opens 100,000 member
wallets, and prints, for two workloads (earn: a hot issuance account credits
members; mix: 70% earns, 30% bounded member spends, some refused):
  (a) raw   transfers/s of ``ledger_create_transfers`` called back to back on one
            connection with prebuilt batches (no Python service logic);
  (b) api   transfers/s of ``Ledger.create_transfers`` with N concurrent callers,
            each awaiting one transfer at a time (as HTTP handlers would);
  (c) http  transfers/s of ``POST /ledger/transfers`` (batches of 1,000, 4 clients)
            against ``coalition serve`` in a subprocess;
  (d) per-call, for each N of ``--callers-list``: N callers each calling a plain
            PL/pgSQL function that posts ONE transfer (scalar parameters, the
            minimal checks: lock and read both accounts, the wallet limit,
            insert, update) on a pooled connection of its own, beside the raw
            batch function with batches of N and the API with N callers;
and (b)/(a), plus the latency of one transfer alone at low load; then
  (e) lots and daily aggregates: the same workloads in three databases
            set up alike: with the aggregates ``ledger_create_transfers``
            records (migration 0045), with no lot code (the daily totals
            only), and without them (the function as migration 0038 left it,
            which records none), in alternating rounds: (a) and (b) of each
            over without, and a redemption-like workload
            (wallet -> redemption account debits of funded wallets, each
            consuming one to three lots) with and without. The posting
            alone is what those ratios measure: a plain earn or debit of a
            wallet writes no lot row at posting, its settlement
            (``ledger_settle_ledger_lots``) does later; after each "with"
            measurement (earn, mix, wallet debits) that settlement is timed
            on its own (the earns and debits it settled, the lots and lot
            movements it wrote, wallet movements and lot movements settled
            per second, and posting plus settlement over without). Then the
            aggregate reads (outstanding, a period's lot movements and daily
            totals) against the full scans they replace, timed, and checked
            equal. ``--interleaved N`` adds N turns of one batch into each
            of the three databases in turn, medians of the batch times
            (steadier on a shared machine); in "with", every batch is
            followed by a timed settlement of what it left unsettled (per
            phase: median time, counts, rates, and posting plus settlement
            over without). ``--only-lots`` runs (e) alone. The
            wallets are member wallets (code 10, a lot code). The load
generator (this script) shares the machine with PostgreSQL and the server.
``synchronous_commit`` stays on: every acknowledged batch is durable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import time
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple

import asyncpg
import msgspec
from common import (
    ROOT,
    ServerDidNotStart,
    argument_parser,
    free_port,
    serving,
    venv_command,
)

from api.database import fresh_database, migrate, postgres_server
from ledger import Account, AccountFlags, Ledger, Transfer, lots, new_id
from ledger.connection import create_pool, init_connection
from ledger.schemas import Ledger as LedgerDefinition
from ledger.writer import CREATE_TRANSFERS_SQL, encode_batch

if TYPE_CHECKING:
    import httpx

LEDGER_ID = 1
WALLET = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
#: Member wallets: the lot code of ``ledger_lot_codes``.
WALLET_CODE = 10

# (d): the simple way, for comparison only (created in the bench's own
# database): one round trip, one transfer, row locks instead of batching.
PER_CALL_FUNCTION = """
CREATE FUNCTION bench_post_transfer(
    p_id uuid, p_debit uuid, p_credit uuid, p_amount bigint, p_ledger integer, p_code integer
) RETURNS smallint LANGUAGE plpgsql AS $$
DECLARE
    d accounts%ROWTYPE;
    c accounts%ROWTYPE;
BEGIN
    -- Both rows locked in id order: no deadlock between callers.
    PERFORM 1 FROM accounts WHERE id IN (p_debit, p_credit) ORDER BY id FOR UPDATE;
    SELECT * INTO d FROM accounts WHERE id = p_debit;
    SELECT * INTO c FROM accounts WHERE id = p_credit;
    IF d.id IS NULL THEN RETURN 17; END IF;
    IF c.id IS NULL THEN RETURN 18; END IF;
    IF d.flags & 1 <> 0 AND d.debits_pending + d.debits_posted + p_amount > d.credits_posted
    THEN
        RETURN 29;
    END IF;
    INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger, code,
                           flags, "timestamp")
    VALUES (p_id, p_debit, p_credit, p_amount, p_ledger, p_code, 0,
            nextval('transfer_timestamp_seq'));
    UPDATE accounts SET debits_posted = debits_posted + p_amount WHERE id = p_debit;
    UPDATE accounts SET credits_posted = credits_posted + p_amount WHERE id = p_credit;
    RETURN 0;
END $$;
"""
PER_CALL_SQL = "SELECT bench_post_transfer($1, $2, $3, $4, $5, $6)"
#: (e): the lots of every plain wallet debit of the ledger not yet settled.
SETTLE_SQL = "SELECT * FROM ledger_settle_ledger_lots($1)"
#: Connections of the per-call baseline at most (the server's max_connections).
PER_CALL_MAX_CONNECTIONS = 40


class Workload:
    def __init__(
        self, members: list[uuid.UUID], issuance: uuid.UUID, redemption: uuid.UUID, seed: int
    ) -> None:
        self.members = members
        self.issuance = issuance
        self.redemption = redemption
        self.rng = random.Random(seed)

    def earn(self) -> Transfer:
        return Transfer(
            id=new_id(),
            debit_account_id=self.issuance,
            credit_account_id=self.rng.choice(self.members),
            amount=self.rng.randint(10, 500),
            ledger=LEDGER_ID,
            code=1,
        )

    def mixed(self) -> Transfer:
        if self.rng.random() < 0.7:
            return self.earn()
        return Transfer(
            id=new_id(),
            debit_account_id=self.rng.choice(self.members),
            credit_account_id=self.redemption,
            amount=self.rng.randint(10, 300),
            ledger=LEDGER_ID,
            code=2,
        )


async def setup(url: str, member_count: int) -> tuple[list[uuid.UUID], uuid.UUID, uuid.UUID]:
    pool = await create_pool(url, min_size=1, max_size=2)
    ledger = Ledger(pool)
    await ledger.create_ledger(LedgerDefinition(id=LEDGER_ID, name="bench-points"))
    issuance, redemption = uuid.uuid4(), uuid.uuid4()
    members = [uuid.uuid4() for _ in range(member_count)]
    await ledger.create_accounts(
        [
            Account(id=issuance, ledger=LEDGER_ID, code=1),
            Account(id=redemption, ledger=LEDGER_ID, code=3),
        ]
    )
    for start in range(0, member_count, 8000):
        chunk = members[start : start + 8000]
        await ledger.create_accounts(
            [Account(id=m, ledger=LEDGER_ID, code=WALLET_CODE, flags=WALLET) for m in chunk]
        )
    await ledger.close()
    await pool.execute(PER_CALL_FUNCTION)
    await pool.close()
    return members, issuance, redemption


async def bench_raw(
    url: str, make: list[Transfer], batch_size: int, posted: list[Transfer] | None = None
) -> float:
    """(a): prebuilt column arrays, one call per batch, back to back; the
    transfers recorded (result ``ok``) added to ``posted`` when given."""
    connection = await asyncpg.connect(url)
    from ledger.connection import init_connection

    await init_connection(connection)
    batches = [encode_batch([make[i : i + batch_size]]) for i in range(0, len(make), batch_size)]
    codes: list[int] = []
    started = time.perf_counter()
    for columns in batches:
        row = await connection.fetchrow(CREATE_TRANSFERS_SQL, *columns)
        assert row is not None
        codes.extend(row["results"])
    elapsed = time.perf_counter() - started
    await connection.close()
    if posted is not None:
        posted.extend(t for t, code in zip(make, codes, strict=True) if code == 0)
    return len(make) / elapsed


async def bench_api(
    url: str, make: list[Transfer], callers: int, posted: list[Transfer] | None = None
) -> tuple[float, float]:
    """(b): ``callers`` coroutines, each awaiting one transfer at a time; the
    transfers recorded added to ``posted`` when given."""
    pool = await create_pool(url, min_size=2, max_size=4)
    ledger = Ledger(pool)
    queue = iter(make)
    batches_before = await pool.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    )

    async def caller() -> None:
        for transfer in queue:
            [outcome] = await ledger.create_transfers([transfer])
            if posted is not None and outcome.ok:
                posted.append(transfer)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - started
    commits = (
        await pool.fetchval(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        - batches_before
    )
    await ledger.close()
    await pool.close()
    return len(make) / elapsed, len(make) / max(commits, 1)


async def bench_per_call(url: str, make: list[Transfer], callers: int) -> float:
    """(d): ``callers`` coroutines, each calling the per-call function for one
    transfer at a time on a pooled connection (at most
    ``PER_CALL_MAX_CONNECTIONS``: beyond, callers wait for a connection)."""
    size = min(callers, PER_CALL_MAX_CONNECTIONS)
    pool = await asyncpg.create_pool(url, min_size=size, max_size=size)
    assert pool is not None
    queue = iter(make)

    async def caller() -> None:
        for t in queue:
            async with pool.acquire() as connection:
                await connection.fetchval(
                    PER_CALL_SQL,
                    t.id,
                    t.debit_account_id,
                    t.credit_account_id,
                    t.amount,
                    t.ledger,
                    t.code,
                )

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return len(make) / elapsed


async def single_latency(url: str, workload: Workload, count: int) -> tuple[float, float]:
    pool = await create_pool(url, min_size=1, max_size=2)
    ledger = Ledger(pool)
    samples = []
    for _ in range(count):
        transfer = workload.earn()
        started = time.perf_counter()
        await ledger.create_transfers([transfer])
        samples.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.002)
    await ledger.close()
    await pool.close()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


async def bench_http(
    url: str, make: list[Transfer], batch_size: int, clients: int, workers: int
) -> float | None:
    """(c): ``coalition serve`` in a subprocess; batches POSTed by ``clients``."""
    try:
        import httpx
    except ImportError:
        return None
    port, token = free_port(), secrets.token_urlsafe(24)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "COALITION_ADMIN_TOKEN": token,
        "COALITION_PORT": str(port),
        "COALITION_WORKERS": str(workers),
        "COALITION_LOG_LEVEL": "warning",
    }
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    try:
        with serving([venv_command("coalition"), "serve"], env, port, health="/health") as base:
            async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as client:
                return await post_batches(client, make, batch_size, clients)
    except ServerDidNotStart:
        return None


async def post_batches(
    client: httpx.AsyncClient, make: list[Transfer], batch_size: int, clients: int
) -> float:
    """Transfers/s of ``make`` POSTed in batches by ``clients`` at once."""
    bodies = [
        msgspec.json.encode({"transfers": make[i : i + batch_size]})
        for i in range(0, len(make), batch_size)
    ]
    queue = iter(bodies)

    async def poster() -> None:
        for body in queue:
            response = await client.post("/ledger/transfers", content=body)
            response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(poster() for _ in range(clients)))
    return len(make) / (time.perf_counter() - started)


async def run(args: argparse.Namespace, url: str) -> None:
    members, issuance, redemption = await setup(url, args.members)
    workload = Workload(members, issuance, redemption, seed=1)
    print(
        f"members: {len(members):,}; transfers per measurement: {args.transfers:,}; "
        f"callers: {args.callers:,}"
    )
    for phase in ("earn", "mix"):
        make = workload.earn if phase == "earn" else workload.mixed
        raw = await bench_raw(url, [make() for _ in range(args.transfers)], args.callers)
        raw_big = await bench_raw(url, [make() for _ in range(args.transfers)], 8000)
        api, per_commit = await bench_api(
            url, [make() for _ in range(args.transfers)], args.callers
        )
        print(f"[{phase}] (a) raw SQL, batches of {args.callers:,}: {raw:>10,.0f} transfers/s")
        print(f"[{phase}] (a) raw SQL, batches of 8,000:  {raw_big:>10,.0f} transfers/s")
        print(
            f"[{phase}] (b) Ledger API, {args.callers:,} callers: {api:>10,.0f} transfers/s"
            f"  ({per_commit:,.0f} transfers per commit)"
        )
        print(
            f"[{phase}] (b)/(a) = {api / raw:.2f} (same batch size), "
            f"{api / max(raw, raw_big):.2f} (best raw)"
        )
        if not args.skip_http:
            http = await bench_http(
                url,
                [make() for _ in range(args.transfers)],
                1000,
                clients=4,
                workers=args.http_workers,
            )
            shown = "unavailable" if http is None else f"{http:>10,.0f} transfers/s"
            print(
                f"[{phase}] (c) HTTP batches of 1,000, 4 clients, "
                f"{args.http_workers} worker(s): {shown}"
            )
    callers_list = [int(c) for c in args.callers_list.split(",") if c.strip()]
    for phase in ("earn", "mix"):
        make = workload.earn if phase == "earn" else workload.mixed
        print(f"[{phase}] (d) transfers/s by callers: per-call function | raw batches of N | API")
        for callers in callers_list:
            per_call = await bench_per_call(url, [make() for _ in range(args.transfers)], callers)
            raw = await bench_raw(url, [make() for _ in range(args.transfers)], callers)
            api, per_commit = await bench_api(url, [make() for _ in range(args.transfers)], callers)
            print(
                f"[{phase}] (d) {callers:>6,} callers: per-call {per_call:>9,.0f} | "
                f"raw {raw:>9,.0f} | API {api:>9,.0f} ({per_commit:,.1f}/commit) | "
                f"API/best {api / max(per_call, raw):.2f}"
            )
    p50, p99 = await single_latency(url, workload, 300)
    print(f"one transfer alone, low load: p50 {p50:.2f} ms, p99 {p99:.2f} ms")


class Redemptions:
    """Debits of funded wallets (the redemption-like workload of (e)): each
    wallet was credited ``earns`` times, each debit takes up to three of its
    lots' worth and never more than the wallet holds (none is refused)."""

    def __init__(self, wallets: list[uuid.UUID], redemption: uuid.UUID, seed: int) -> None:
        self.wallets = wallets
        self.redemption = redemption
        self.rng = random.Random(seed)
        self.left = dict.fromkeys(wallets, 0)

    def funding(self, earns: int, issuance: uuid.UUID) -> list[Transfer]:
        made = []
        for _ in range(earns):
            for wallet in self.wallets:
                amount = self.rng.randint(50, 150)
                self.left[wallet] += amount
                made.append(
                    Transfer(
                        id=new_id(),
                        debit_account_id=issuance,
                        credit_account_id=wallet,
                        amount=amount,
                        ledger=LEDGER_ID,
                        code=1,
                    )
                )
        return made

    def debit(self) -> Transfer:
        amount = 0
        while amount <= 0:
            wallet = self.rng.choice(self.wallets)
            amount = min(self.left[wallet], self.rng.randint(20, 160))
        self.left[wallet] -= amount
        return Transfer(
            id=new_id(),
            debit_account_id=wallet,
            credit_account_id=self.redemption,
            amount=amount,
            ledger=LEDGER_ID,
            code=2,
        )


class Settled(NamedTuple):
    """(e): one settlement of "with" after one measurement of a phase."""

    #: The measurement: transfers sent, and seconds of their posting.
    transfers: int
    posting: float
    #: The wallet movements it recorded: credits (earns) and debits.
    earns: int
    debits: int
    #: The settlement: seconds (its commit included), lots and lot movements
    #: written.
    seconds: float
    lots: int
    movements: int


def wallet_movements(posted: list[Transfer], issuance: uuid.UUID) -> tuple[int, int]:
    """(e): the earns (credits of wallets) and the wallet debits of ``posted``:
    every transfer of the workloads has one wallet side, the other is the
    issuance account (an earn) or the redemption account (a debit)."""
    earns = sum(1 for t in posted if t.debit_account_id == issuance)
    return earns, len(posted) - earns


async def timed_settle(url: str) -> tuple[float, int, int]:
    """(e): seconds of one settlement of the bench's ledger (its commit
    included), and the lots and lot movements it wrote."""
    connection = await asyncpg.connect(url)
    try:
        return await settle_on(connection)
    finally:
        await connection.close()


async def settle_on(connection: asyncpg.Connection) -> tuple[float, int, int]:
    started = time.perf_counter()
    row = await connection.fetchrow(SETTLE_SQL, LEDGER_ID)
    elapsed = time.perf_counter() - started
    assert row is not None
    return elapsed, int(row["lots"]), int(row["movements"])


def settle_figures(rounds: list[Settled]) -> str:
    """(e): what the settlements after a phase's measurements did, medians
    over them, and at what rates: per wallet movement settled (earns and
    debits) and per lot movement written."""
    return (
        f" {statistics.median(r.seconds for r in rounds) * 1000:,.1f} ms;"
        f" {statistics.median(r.earns for r in rounds):,.0f} earns +"
        f" {statistics.median(r.debits for r in rounds):,.0f} wallet debits settled into"
        f" {statistics.median(r.lots for r in rounds):,.0f} lots and"
        f" {statistics.median(r.movements for r in rounds):,.0f} lot movements;"
        f" {statistics.median((r.earns + r.debits) / r.seconds for r in rounds):,.0f}"
        f" wallet movements/s,"
        f" {statistics.median(r.movements / r.seconds for r in rounds):,.0f} lot movements/s"
    )


async def timed(read: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    answer = await read
    return (time.perf_counter() - started) * 1000, answer


async def aggregate_reads(url: str) -> None:
    """(e): the aggregate reads beside the full scans they replace."""
    from datetime import date, timedelta

    pool = await create_pool(url, min_size=1, max_size=2)
    today = date.today()
    first = today.replace(day=1)
    pairs = [
        (
            "outstanding as of today",
            lots.outstanding(pool, ledger=LEDGER_ID, as_of=today),
            lots.outstanding_by_scan(pool, ledger=LEDGER_ID, as_of=today),
        ),
        (
            "the month's lot movements",
            lots.lot_movement_totals(pool, ledger=LEDGER_ID, first_day=first, last_day=today),
            lots.lot_movement_totals_by_scan(
                pool, ledger=LEDGER_ID, first_day=first, last_day=today
            ),
        ),
        (
            "the month's daily totals",
            lots.daily_totals(
                pool, ledger=LEDGER_ID, first_day=first, last_day=today + timedelta(days=1)
            ),
            lots.daily_totals_by_scan(
                pool, ledger=LEDGER_ID, first_day=first, last_day=today + timedelta(days=1)
            ),
        ),
    ]
    for name, read, scan in pairs:
        read_ms, answer = await timed(read)
        scan_ms, scanned = await timed(scan)
        same = "equal" if answer == scanned else "DIFFERENT"
        print(
            f"[lots] (e) {name}: aggregates {read_ms:,.1f} ms, full scan {scan_ms:,.1f} ms"
            f" ({len(answer)} lines, {same})"
        )
    await pool.close()


async def run_lots(args: argparse.Namespace, url: str, totals_url: str, bare_url: str) -> None:
    """(e): with the aggregates and lots (``url``), with the daily totals
    only (``totals_url``: no lot code) and without them (``bare_url``), set
    up alike, in alternating rounds."""
    both = {"with": url, "totals only": totals_url, "without": bare_url}
    accounts = {name: await setup(u, args.members) for name, u in both.items()}
    redemptions = {}
    # Enough for every round's debits (90 points each on average) with room.
    debits = args.rounds * (args.transfers // 2)
    funding = max(args.funding, -(-debits * 90 * 2 // (args.redeemers * 100)))
    for name, u in both.items():
        members, issuance, redemption = accounts[name]
        redemptions[name] = Redemptions(members[: args.redeemers], redemption, seed=7)
        await bench_raw(u, redemptions[name].funding(funding, issuance), 1000)
    # Untimed: the funding's earns, so that each timed settlement below is
    # that of one measurement alone.
    await timed_settle(url)
    print(
        f"[lots] (e) members {args.members:,}; {args.redeemers:,} wallets funded with"
        f" {funding} earns each; {args.transfers:,} transfers per measurement"
        f" ({args.transfers // 4:,} per wallet-debit measurement); {args.rounds} rounds, medians"
    )
    results: dict[str, dict[str, list[float]]] = {}
    # label -> per round, "with" only: the measurement and the settlement after it.
    settles: dict[str, list[Settled]] = {}

    def note(label: str, name: str, figure: float) -> None:
        results.setdefault(label, {n: [] for n in both})[name].append(figure)

    async def settle_after(
        label: str, name: str, u: str, posted: list[Transfer], sent: int, rate: float
    ) -> None:
        if name == "with":
            earns, debits = wallet_movements(posted, accounts[name][1])
            seconds, lots_made, movements = await timed_settle(u)
            settles.setdefault(label, []).append(
                Settled(sent, sent / rate, earns, debits, seconds, lots_made, movements)
            )

    for round_ in range(args.rounds):
        # Alternating within each round: the machine's drift hits both sides.
        for name, u in both.items():
            members, issuance, redemption = accounts[name]
            workload = Workload(members, issuance, redemption, seed=100 + round_)
            for phase in ("earn", "mix"):
                make = workload.earn if phase == "earn" else workload.mixed
                made = [make() for _ in range(args.transfers)]
                posted: list[Transfer] = []
                raw = await bench_raw(u, made, args.callers, posted)
                label = f"{phase} (a) raw SQL, batches of {args.callers:,}"
                note(label, name, raw)
                await settle_after(label, name, u, posted, len(made), raw)
                made = [make() for _ in range(args.transfers)]
                posted = []
                api, _ = await bench_api(u, made, args.callers, posted)
                label = f"{phase} (b) Ledger API, {args.callers:,} callers"
                note(label, name, api)
                await settle_after(label, name, u, posted, len(made), api)
            debits = [redemptions[name].debit() for _ in range(args.transfers // 4)]
            posted = []
            raw = await bench_raw(u, debits, args.callers, posted)
            label = f"wallet debits (a) raw SQL, batches of {args.callers:,}"
            note(label, name, raw)
            await settle_after(label, name, u, posted, len(debits), raw)
            debits = [redemptions[name].debit() for _ in range(args.transfers // 4)]
            posted = []
            api, _ = await bench_api(u, debits, args.callers, posted)
            label = f"wallet debits (b) Ledger API, {args.callers:,} callers"
            note(label, name, api)
            await settle_after(label, name, u, posted, len(debits), api)
    for label, sides in results.items():
        medians = {n: statistics.median(f) for n, f in sides.items()}
        without = medians["without"]
        ratios = "; ".join(
            f"{n}/without {medians[n] / without:.2f} (rounds "
            + ", ".join(f"{w / o:.2f}" for w, o in zip(sides[n], sides["without"], strict=True))
            + ")"
            for n in ("totals only", "with")
        )
        print(
            f"[lots] (e) {label}: with {medians['with']:>8,.0f}/s, totals only"
            f" {medians['totals only']:>8,.0f}/s, without {without:>8,.0f}/s; {ratios}"
        )
        rounds = settles[label]
        # The measurement then its settlement, as if one piece of work.
        combined = [r.transfers / (r.posting + r.seconds) for r in rounds]
        print(
            f"[lots] (e) {label}, settled after (with): median"
            + settle_figures(rounds)
            + f"; with+settle {statistics.median(combined):,.0f}/s,"
            f" with+settle/without {statistics.median(combined) / without:.2f} (rounds "
            + ", ".join(f"{c / o:.2f}" for c, o in zip(combined, sides["without"], strict=True))
            + ")"
        )
    if args.interleaved:
        await interleaved_lots(args, both, accounts, redemptions)
    await aggregate_reads(url)


async def interleaved_lots(
    args: argparse.Namespace,
    both: dict[str, str],
    accounts: dict[str, tuple[list[uuid.UUID], uuid.UUID, uuid.UUID]],
    redemptions: dict[str, Redemptions],
) -> None:
    """(e), steadier on a shared machine: one batch at a time into each
    database in turn (the order reversed every other turn), medians of the
    per-batch times, so that a slow minute hits every side alike."""
    connections = {}
    for name, u in both.items():
        connections[name] = await asyncpg.connect(u)
        await init_connection(connections[name])
    workloads = {
        name: Workload(members, issuance, redemption, seed=500)
        for name, (members, issuance, redemption) in accounts.items()
    }
    times: dict[tuple[str, str], list[float]] = {}
    phases = ("earn", "mix", "wallet debits")
    # "with" only, per phase, per turn: the batch and the settlement right
    # after it.
    settles: dict[str, list[Settled]] = {phase: [] for phase in phases}
    issuance = accounts["with"][1]
    for turn in range(args.interleaved):
        order = list(both) if turn % 2 == 0 else list(reversed(both))
        for phase in phases:
            for name in order:
                make = {
                    "earn": workloads[name].earn,
                    "mix": workloads[name].mixed,
                    "wallet debits": redemptions[name].debit,
                }[phase]
                batch = [make() for _ in range(args.callers)]
                columns = encode_batch([batch])
                started = time.perf_counter()
                row = await connections[name].fetchrow(CREATE_TRANSFERS_SQL, *columns)
                posting = time.perf_counter() - started
                times.setdefault((phase, name), []).append(posting)
                if name == "with":
                    assert row is not None
                    posted = [
                        t for t, result in zip(batch, row["results"], strict=True) if result == 0
                    ]
                    earns, debits = wallet_movements(posted, issuance)
                    seconds, lots_made, movements = await settle_on(connections[name])
                    settles[phase].append(
                        Settled(len(batch), posting, earns, debits, seconds, lots_made, movements)
                    )
    for phase in phases:
        median = {name: statistics.median(times[(phase, name)]) for name in both}
        print(
            f"[lots] (e) interleaved {phase}, {args.interleaved} turns of a batch of"
            f" {args.callers:,}: "
            + ", ".join(f"{n} {m * 1000:.1f} ms" for n, m in median.items())
            + f"; totals only/without {median['without'] / median['totals only']:.2f},"
            f" with/without {median['without'] / median['with']:.2f}"
        )
    for phase in phases:
        turns = settles[phase]
        # Paired by turn: the batch of "with" and the settlement that follows it.
        combined = statistics.median(r.posting + r.seconds for r in turns)
        print(
            f"[lots] (e) interleaved {phase}, settled after each batch (with): median"
            + settle_figures(turns)
            + f"; with+settle {combined * 1000:.1f} ms,"
            f" with+settle/without {statistics.median(times[(phase, 'without')]) / combined:.2f}"
        )
    per_turn = [
        sum(r) for r in zip(*([r.seconds for r in settles[p]] for p in phases), strict=True)
    ]
    seconds = sum(per_turn)
    wallet = sum(r.earns + r.debits for p in phases for r in settles[p])
    written = sum(r.movements for p in phases for r in settles[p])
    print(
        f"[lots] (e) interleaved settlement per turn (with): median"
        f" {statistics.median(per_turn) * 1000:.1f} ms;"
        f" {wallet / seconds:,.0f} wallet movements/s,"
        f" {written / seconds:,.0f} lot movements/s"
    )
    for connection in connections.values():
        await connection.close()


def run_loop(main: Any) -> None:
    """uvloop where installed (as ``coalition serve`` uses), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        print("event loop: uvloop")
        uvloop.run(main)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--transfers", type=int, default=200_000)
    parser.add_argument("--callers", type=int, default=1000)
    parser.add_argument("--http-workers", type=int, default=1)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--callers-list",
        default="1,8,32,1000",
        help="(d): the caller counts to compare the per-call function and the API at",
    )
    parser.add_argument("--skip-lots", action="store_true", help="leave out (e)")
    parser.add_argument("--only-lots", action="store_true", help="run (e) alone")
    parser.add_argument("--rounds", type=int, default=3, help="(e): alternating rounds")
    parser.add_argument("--redeemers", type=int, default=20_000, help="(e): funded wallets")
    parser.add_argument("--funding", type=int, default=4, help="(e): earns per funded wallet")
    parser.add_argument(
        "--interleaved",
        type=int,
        default=0,
        help="(e): then N turns of one batch into each database in turn (steadier medians)",
    )
    args = parser.parse_args()
    with postgres_server("DATABASE_URL", prefix="coalition-bench-") as server_url:
        if not args.only_lots:
            with fresh_database(server_url, prefix="coalition_bench") as url:
                migrate(url)
                run_loop(run(args, url))
        if not args.skip_lots:
            # Two databases of their own, set up alike: one without the trigger.
            with (
                fresh_database(server_url, prefix="coalition_bench_lots") as url,
                fresh_database(server_url, prefix="coalition_bench_totals") as totals_url,
                fresh_database(server_url, prefix="coalition_bench_bare") as bare_url,
            ):
                for u in (url, totals_url, bare_url):
                    migrate(u)
                asyncio.run(_alter(totals_url, *NO_LOT_CODES))
                asyncio.run(_alter(bare_url, WITHOUT_AGGREGATES.read_text(encoding="utf-8")))
                run_loop(run_lots(args, url, totals_url, bare_url))


#: The posting function before it recorded any aggregate (and without the
#: trigger that did until migration 0045).
WITHOUT_AGGREGATES = (
    ROOT / "ledger" / "sql" / "history" / "0038_period_close" / "ledger_create_transfers.sql"
)

#: The daily totals without lots: no account keeps lots.
NO_LOT_CODES = (
    "ALTER TABLE ledger_lot_codes DISABLE TRIGGER ledger_lot_codes_immutable",
    "DELETE FROM ledger_lot_codes",
)


async def _alter(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


if __name__ == "__main__":
    main()
