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
and (b)/(a), plus the latency of one transfer alone at low load. The load
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
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec
from common import (
    ServerDidNotStart,
    argument_parser,
    bench_database,
    free_port,
    serving,
    venv_command,
)

from api.database import migrate
from ledger import Account, AccountFlags, Ledger, Transfer, new_id
from ledger.connection import create_pool
from ledger.schemas import Ledger as LedgerDefinition
from ledger.writer import CREATE_TRANSFERS_SQL, encode_batch

if TYPE_CHECKING:
    import httpx

LEDGER_ID = 1
WALLET = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS

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
            [Account(id=m, ledger=LEDGER_ID, code=2, flags=WALLET) for m in chunk]
        )
    await ledger.close()
    await pool.execute(PER_CALL_FUNCTION)
    await pool.close()
    return members, issuance, redemption


async def bench_raw(url: str, make: list[Transfer], batch_size: int) -> float:
    """(a): prebuilt column arrays, one call per batch, back to back."""
    connection = await asyncpg.connect(url)
    from ledger.connection import init_connection

    await init_connection(connection)
    batches = [encode_batch([make[i : i + batch_size]]) for i in range(0, len(make), batch_size)]
    started = time.perf_counter()
    for columns in batches:
        await connection.fetchrow(CREATE_TRANSFERS_SQL, *columns)
    elapsed = time.perf_counter() - started
    await connection.close()
    return len(make) / elapsed


async def bench_api(url: str, make: list[Transfer], callers: int) -> tuple[float, float]:
    """(b): ``callers`` coroutines, each awaiting one transfer at a time."""
    pool = await create_pool(url, min_size=2, max_size=4)
    ledger = Ledger(pool)
    queue = iter(make)
    batches_before = await pool.fetchval(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    )

    async def caller() -> None:
        for transfer in queue:
            await ledger.create_transfers([transfer])

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
    args = parser.parse_args()
    with bench_database() as url:
        migrate(url)
        run_loop(run(args, url))


if __name__ == "__main__":
    main()
