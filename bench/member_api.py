"""Member reads and purchase ingestion against bare baselines, with up to
1,000,000 members, on the same server settings for all.

    .venv/bin/python bench/member_api.py [--members 1000000] [--duration 15] [--rounds 3]

Needs ``wrk`` (Debian: ``apt-get install wrk``) as the load generator; it
shares the machine with the servers and PostgreSQL. Prints requests/s and
latency percentiles of:
  (a) a bare endpoint reading one row by primary key (asyncpg, no auth);
  (b) the member balance read (JWT and all), at 1,000 members and at the full
      count;
  (c) a bare endpoint inserting one row and updating one row in a transaction;
  (d) purchase-event ingestion (API key, rules, ledger and all);
and the ratios (b)/(a) and (d)/(c), from the medians of ``--rounds`` rounds
that alternate the four; then each again under a moderate load (8
connections), where latency is not mostly queueing. Servers: Granian with
``--workers`` (2). The member API's rate limit is on (high enough never to
refuse), counted in Redis (``--redis-url``) when one answers there, so that
the workers share it as in production; else in each worker's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import jwt
from common import argument_parser, bench_database, free_port, serving, venv_command

from api.access import issue_key
from api.database import migrate, sqlalchemy_url
from core.codes import AccountCode, derived_id
from core.principal import system
from ledger import Account, AccountFlags, Ledger
from ledger.connection import create_pool
from rewards.programs import ProgramSpec, open_program
from rewards.rule_versions import draft_rules, publish_rules
from rewards.rules import EarnRules
from rewards.tiers import ThresholdSpec, TierSpec, define_threshold, define_tier

SECRET = secrets.token_urlsafe(32)
SLUG = "bench-shop"


async def load_program(url: str) -> tuple[str, uuid.UUID, int]:
    """The program and its rules; returns its slug, id and ledger id."""
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    pool = await create_pool(url)
    ledger = Ledger(pool)
    engine = create_async_engine(sqlalchemy_url(url))
    async with AsyncSession(engine, expire_on_commit=False) as session:
        program, _ = await open_program(
            session,
            ledger,
            ProgramSpec(slug=SLUG, name="Bench", currency="ZAR", point_value_minor=Decimal(1)),
            principal=system("bench"),
        )
        past = datetime.now(UTC) - timedelta(days=1)
        # A program as operators run them: a ladder and a threshold reward,
        # so every purchase is also counted towards tiers.
        for rank, (code, threshold) in enumerate(
            (("blue", 0), ("silver", 500_000), ("gold", 2_000_000)), start=1
        ):
            await define_tier(
                session,
                program,
                TierSpec(code=code, name=code, rank=rank, threshold=threshold),
                principal=system("bench"),
            )
        await define_threshold(
            session,
            program,
            ThresholdSpec(code="spend-1k", amount_minor=100_000, bonus_points=500),
            principal=system("bench"),
        )
        rules = EarnRules(
            points_per_unit=Decimal(1),
            tier_multipliers={"silver": Decimal("1.5"), "gold": Decimal(2)},
        )
        version = await draft_rules(session, program, rules, principal=system("bench"))
        await publish_rules(
            session, program, version.version, past, now=past, principal=system("bench")
        )
        await session.commit()
    await ledger.close()
    await pool.close()
    await engine.dispose()
    return SLUG, program.id, program.ledger_id


async def load_members(
    url: str, program_id: uuid.UUID, ledger_id: int, first: int, last: int
) -> None:
    """Members ``first``..``last - 1``: wallets in the ledger, rows by COPY."""
    pool = await create_pool(url)
    ledger = Ledger(pool)
    for start in range(first, last, 8000):
        names = [f"m{n}" for n in range(start, min(last, start + 8000))]
        wallets = [derived_id(program_id, "wallet", name) for name in names]
        await ledger.create_accounts(
            [
                Account(
                    id=w,
                    ledger=ledger_id,
                    code=AccountCode.MEMBER_WALLET,
                    flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
                )
                for w in wallets
            ]
        )
        now = datetime.now(UTC)
        async with pool.acquire() as connection:
            await connection.copy_records_to_table(
                "members",
                columns=[
                    "id",
                    "program_id",
                    "external_id",
                    "consents",
                    "status",
                    "wallet_account_id",
                    "created_at",
                    "updated_at",
                ],
                records=[
                    (
                        derived_id(program_id, "member", n),
                        program_id,
                        n,
                        {},
                        "active",
                        w,
                        now,
                        now,
                    )
                    for n, w in zip(names, wallets, strict=True)
                ],
            )
    await ledger.close()
    await pool.close()


async def analyze(url: str) -> None:
    """Statistics after a bulk load, as an operator runs after an import
    (autovacuum would, a minute later): without them the planner takes a
    million members for a handful."""
    connection = await asyncpg.connect(url)
    await connection.execute("ANALYZE")
    await connection.close()


async def prepare_baseline(url: str, rows: int) -> None:
    connection = await asyncpg.connect(url)
    await connection.execute(
        "CREATE TABLE IF NOT EXISTS bench_rows (id integer PRIMARY KEY, v bigint NOT NULL);"
        "CREATE TABLE IF NOT EXISTS bench_log (id bigserial PRIMARY KEY, row_id integer,"
        " at timestamptz DEFAULT now());"
        f"INSERT INTO bench_rows SELECT g, 0 FROM generate_series(1, {rows}) g"
        " ON CONFLICT DO NOTHING;"
    )
    await connection.close()


def wrk(url: str, script: str, duration: int, connections: int, threads: int = 1) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    result = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            handle.name,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    os.unlink(handle.name)
    return result.stdout


def summary(output: str) -> tuple[float, str, str, int]:
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1)  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1)  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return rate, p50, p99, int(errors.group(1)) if errors else 0


READ = """
math.randomseed(os.time())
request = function() return wrk.format("GET", "/read/" .. math.random(1, {rows})) end
"""
WRITE = """
math.randomseed(os.time())
request = function() return wrk.format("POST", "/write/" .. math.random(1, {rows})) end
"""
BALANCE = """
local tokens = {{}}
for line in io.lines("{tokens}") do tokens[#tokens + 1] = line end
math.randomseed(os.time())
request = function()
  local token = tokens[math.random(1, #tokens)]
  return wrk.format("GET", "/me/balance", {{["Authorization"] = "Bearer " .. token}})
end
"""
PURCHASE = """
local counter = 0
local run = "{run}"
math.randomseed(os.time())
request = function()
  counter = counter + 1
  local body = string.format('{{"member":"m%d","order_id":"%s-%d-%d","amount_minor":%d,' ..
    '"currency":"ZAR","occurred_at":"{at}"}}', math.random(0, {members} - 1), run,
    math.random(1, 1000000000), counter, math.random(100, 100000))
  return wrk.format("POST", "/programs/{slug}/purchases",
    {{["Authorization"] = "Bearer {key}", ["Content-Type"] = "application/json"}}, body)
end
"""


def redis_reachable(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def tokens_file(count: int, members: int) -> str:
    """Tokens of ``count`` members spread over all ``members``, one a line."""
    exp = int(time.time()) + 3600
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        for n in range(count):
            member = f"m{(n * 7919) % members}"
            claims = {"sub": member, "program": SLUG, "aud": "coalition-members", "exp": exp}
            handle.write(jwt.encode(claims, SECRET, algorithm="HS256") + "\n")
    return handle.name


def report(label: str, output: str) -> float:
    rate, p50, p99, errors = summary(output)
    flag = f", {errors} non-2xx" if errors else ""
    print(f"{label:<58} {rate:>9,.0f} req/s   p50 {p50:>8}   p99 {p99:>8}{flag}", flush=True)
    return rate


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--moderate-connections", type=int, default=8)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench: wrk is needed as the load generator (apt-get install wrk)")
    with bench_database() as url:
        run(args, url)


def run(args: argparse.Namespace, url: str) -> None:
    migrate(url)
    slug, program_id, ledger_id = asyncio.run(load_program(url))
    asyncio.run(prepare_baseline(url, args.members))

    async def key() -> str:
        pool = await create_pool(url, min_size=1, max_size=2)
        try:
            return (
                await issue_key(pool, "bench", ["purchases:write"], principal=system("bench"))
            ).key
        finally:
            await pool.close()

    api_key = asyncio.run(key())
    granian, coalition = venv_command("granian"), venv_command("coalition")
    base_env = {**os.environ, "DATABASE_URL": url, "COALITION_LOG_LEVEL": "warning"}
    app_env = {
        **base_env,
        "MEMBER_JWT_SECRET": SECRET,
        "COALITION_ADMIN_TOKEN": SECRET,
        "COALITION_MEMBER_RATE_LIMIT": "100000",
        "COALITION_SWEEP_INTERVAL": "0",
        "COALITION_WORKERS": str(args.workers),
    }
    if redis_reachable(args.redis_url):
        app_env["REDIS_URL"] = args.redis_url
        limits = f"rate limits in Redis ({args.redis_url})"
    else:
        limits = "rate limits in each worker's memory (no Redis)"
    print(
        f"servers: Granian, {args.workers} workers each; load: wrk, 1 thread,"
        f" {args.connections} connections, {args.duration} s per run; {limits}",
        flush=True,
    )
    d, c = args.duration, args.connections

    def coalition_server() -> contextlib.AbstractContextManager[str]:
        port = free_port()
        return serving(
            [coalition, "serve", "--no-worker", "--port", str(port)],
            {**app_env, "COALITION_PORT": str(port)},
            port,
        )

    def balance_run(base: str, members: int, label: str, connections: int | None = None) -> float:
        tokens = tokens_file(min(members, 20_000), members)
        try:
            return report(label, wrk(base, BALANCE.format(tokens=tokens), d, connections or c))
        finally:
            os.unlink(tokens)

    def balance_run_with(base: str, connections: int) -> float:
        label = f"(b) member balance, {args.members:,} members"
        return balance_run(base, args.members, label, connections)

    asyncio.run(load_members(url, program_id, ledger_id, 0, min(1000, args.members)))
    asyncio.run(analyze(url))
    with coalition_server() as base:
        small = balance_run(base, 1000, "(b) member balance, 1,000 members")
    started = time.monotonic()
    asyncio.run(load_members(url, program_id, ledger_id, 1000, args.members))
    asyncio.run(analyze(url))
    print(f"loaded {args.members:,} members in {time.monotonic() - started:.0f} s", flush=True)

    port = free_port()
    baseline = serving(
        [
            granian,
            "--interface",
            "asgi",
            "--factory",
            "--workers",
            str(args.workers),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "bench.baseline_app:create_app",
        ],
        base_env,
        port,
    )
    # Both servers stay up (idle workers cost nothing) and the runs alternate,
    # so that each ratio compares runs minutes apart, not a warm machine
    # with a cold one; the medians of the rounds are reported.
    runs: dict[str, list[float]] = {"a": [], "b": [], "c": [], "d": []}
    with baseline as bare, coalition_server() as app:
        # A warm-up of each endpoint, not counted: the first minutes after
        # the bulk load touch every page for the first time.
        warm = min(d, 10)
        wrk(bare, READ.format(rows=args.members), warm, c)
        wrk(bare, WRITE.format(rows=args.members), warm, c)
        tokens = tokens_file(min(args.members, 20_000), args.members)
        wrk(app, BALANCE.format(tokens=tokens), warm, c)
        os.unlink(tokens)
        at = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
        script = PURCHASE.format(
            run=secrets.token_hex(3), members=args.members, slug=slug, key=api_key, at=at
        )
        wrk(app, script, warm, c)
        for round_ in range(1, args.rounds + 1):
            # This machine's PostgreSQL runs without autovacuum: statistics
            # are refreshed between rounds, as autovacuum would, so that the
            # plans follow the purchases table as it grows.
            asyncio.run(analyze(url))
            print(f"round {round_}:", flush=True)
            runs["a"].append(
                report(
                    "(a) bare read by primary key", wrk(bare, READ.format(rows=args.members), d, c)
                )
            )
            runs["b"].append(
                balance_run(app, args.members, f"(b) member balance, {args.members:,} members")
            )
            runs["c"].append(
                report(
                    "(c) bare insert + update in a transaction",
                    wrk(bare, WRITE.format(rows=args.members), d, c),
                )
            )
            at = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
            script = PURCHASE.format(
                run=secrets.token_hex(3), members=args.members, slug=slug, key=api_key, at=at
            )
            runs["d"].append(
                report("(d) purchase events, rules and ledger and all", wrk(app, script, d, c))
            )
        # Latency under a moderate load: with every core busy (above), p99 is
        # mostly queueing, the bare endpoints' included.
        quiet = args.moderate_connections
        print(f"moderate load: {quiet} connections", flush=True)
        report("(a) bare read by primary key", wrk(bare, READ.format(rows=args.members), d, quiet))
        balance_run_with(app, quiet)
        quiet_write = report(
            "(c) bare insert + update in a transaction",
            wrk(bare, WRITE.format(rows=args.members), d, quiet),
        )
        at = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
        script = PURCHASE.format(
            run=secrets.token_hex(3), members=args.members, slug=slug, key=api_key, at=at
        )
        quiet_purchases = report(
            "(d) purchase events, rules and ledger and all", wrk(app, script, d, quiet)
        )
    median = {k: statistics.median(v) for k, v in runs.items()}
    print(
        f"medians: (a) {median['a']:,.0f}  (b) {median['b']:,.0f}  (c) {median['c']:,.0f}"
        f"  (d) {median['d']:,.0f} req/s"
    )
    print(
        f"(b)/(a) = {median['b'] / median['a']:.2f}; (d)/(c) = {median['d'] / median['c']:.2f};"
        f" balance at {args.members:,} vs 1,000 members: {median['b'] / small:.2f}"
    )
    # Purchases against the bare write at both loads: batching must not cost
    # a lone caller what it saves under load.
    print(
        f"(d)/(c) at {c} connections = {median['d'] / median['c']:.2f};"
        f" at {quiet} connections = {quiet_purchases / quiet_write:.2f} (one run)"
    )


if __name__ == "__main__":
    main()
