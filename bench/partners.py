"""The partners' speed (issue 10, "Speed"): point issuance over HTTP beside
the member bench's bare write, webhook delivery from the outbox, and a
statement over a million transfers.

    .venv/bin/python bench/partners.py [--only issuance|webhooks|statement]
        [--members 1000000] [--partners 100] [--duration 15] [--rounds 3]
        [--webhook-events 10000] [--latency-seconds 20] [--statement-transfers 1000000]

Needs ``wrk`` as the load generator (it shares the machine with the servers
and PostgreSQL; its CPU time is printed). Each part runs in a database of
its own on ``DATABASE_URL``'s server (dropped at the end):

1. issuance: ``--members`` members (COPY), ``--partners`` firms, each with
   a published prepaid contract, ample funding and a client whose token
   comes from ``/oauth/token``; then (c) the bare insert + update endpoint
   of ``bench/baseline_app.py`` and (e) ``POST /partner/issuances`` (token,
   rate limit, Idempotency-Key, contract, ledger, audit, outbox), both on
   Granian with ``--workers``, in alternating rounds at ``--connections``,
   then once at ``--moderate-connections``. Goal: (e)/(c) >= 1.0, p99 of
   (e) < 50 ms at 8 connections.
2. webhooks: ``--partners`` endpoints on a local aiohttp receiver (its own
   process); ``--webhook-events`` events committed at once, then the
   ``deliver-webhooks`` job drains, fans out, signs, sends and logs them
   (goal >= 1,000 deliveries/s); then events committed one by one at
   ``--latency-rate`` a second while the job runs: commit-to-receipt p99
   (goal < 1 s).
3. statement: one contract holder, ``--statement-transfers`` issuance
   transfers in last month (ledger batches of 8,000), then its draft
   statement and its issue, timed by phase (goal < 2 s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
from common import ROOT, argument_parser, bench_database, free_port, serving, venv_command
from cryptography.fernet import Fernet
from member_api import analyze, load_members, prepare_baseline, redis_reachable, summary
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from api.database import migrate, sqlalchemy_url
from core.codes import AccountCode, TransferCode
from core.models import Program
from core.principal import Principal, PrincipalKind, Reach, system
from ledger import Account, AccountFlags, Ledger, Transfer, new_id
from ledger.connection import create_pool
from partners.client_schemas import ClientSpec
from partners.clients import create_client
from partners.contract_schemas import ContractTerms, FundingRequest
from partners.contracts import draft_contract, issuance_account, publish_contract
from partners.funding import record_funding
from partners.models import Partner, PartnerStatus
from partners.statement_schemas import StatementRequest
from rewards.programs import ProgramSpec, open_program

OPERATOR = system("bench")
SLUG = "bench-coalition"
#: Points each issuing partner is funded with: never the limit in a run.
FUNDING = 10**12

WRITE = """
math.randomseed(os.time())
request = function() return wrk.format("POST", "/write/" .. math.random(1, {rows})) end
"""
# One transaction id and Idempotency-Key per request (the run's prefix, the
# thread's counter), a random member and partner token.
ISSUE = """
local tokens = {{}}
for line in io.lines("{tokens}") do tokens[#tokens + 1] = line end
local counter = 0
math.randomseed(os.time())
request = function()
  counter = counter + 1
  local id = string.format("{run}-%d-%d", math.random(1, 1000000000), counter)
  local body = string.format('{{"transaction_id":"%s","member":"m%d","points":%d}}',
    id, math.random(0, {members} - 1), math.random(1, 100))
  return wrk.format("POST", "/partner/issuances", {{
    ["Authorization"] = "Bearer " .. tokens[math.random(1, #tokens)],
    ["Content-Type"] = "application/json", ["Idempotency-Key"] = id}}, body)
end
"""


# -- shared set-up --------------------------------------------------------


@dataclass
class Setup:
    url: str
    program: Program
    partners: list[Partner]


def terms() -> ContractTerms:
    return msgspec.convert(
        {
            "roles": "both",
            "issue_price_per_point": "1.5",
            "redemption_rate_per_point": "1",
            "funding_model": "prepaid",
        },
        ContractTerms,
    )


async def open_coalition(
    url: str, partner_count: int, *, since: datetime, effective_from: datetime
) -> Setup:
    """A program and ``partner_count`` active firms, each holding a prepaid
    contract in force from ``effective_from`` and funded with ``FUNDING``."""
    pool = await create_pool(url, min_size=1, max_size=4)
    ledger = Ledger(pool)
    engine = create_async_engine(sqlalchemy_url(url))
    partners = []
    async with AsyncSession(engine, expire_on_commit=False) as session:
        program, _ = await open_program(
            session,
            ledger,
            ProgramSpec(slug=SLUG, name="Bench", currency="ZAR", point_value_minor=Decimal(1)),
            principal=OPERATOR,
        )
        await session.commit()
        for n in range(partner_count):
            partner = Partner(
                program_id=program.id,
                slug=f"partner-{n}",
                name=f"Partner {n}",
                legal_name=f"Partner {n} (Pty) Ltd",
                country="ZA",
                currency="ZAR",
                contacts=[],
                status=PartnerStatus.ACTIVE,
                status_changed_at=since,
                created_at=since,
            )
            session.add(partner)
            await session.commit()
            view, _ = await draft_contract(session, program, partner, terms(), principal=OPERATOR)
            now = datetime.now(UTC)
            await publish_contract(
                session,
                ledger,
                program,
                partner,
                view.version,
                effective_from,
                now,
                principal=OPERATOR,
            )
            await session.commit()
            await record_funding(
                session,
                ledger,
                program,
                partner,
                FundingRequest(reference=f"block-{n}", points=FUNDING, amount_minor=FUNDING),
                now,
                principal=OPERATOR,
            )
            await session.commit()
            partners.append(partner)
    await ledger.close()
    await pool.close()
    await engine.dispose()
    return Setup(url, program, partners)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


# -- 1. issuance over HTTP ------------------------------------------------


def wrk(base: str, script: str, duration: int, connections: int) -> tuple[str, float]:
    """wrk's output and the CPU seconds it used (user + system)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", handle.name, base],
        capture_output=True,
        text=True,
        check=True,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.unlink(handle.name)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result.stdout, cpu


def milliseconds(shown: str) -> float:
    """wrk's latency (``812.00us``, ``12.3ms``, ``1.2s``) in ms."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", shown)
    assert match, shown
    factor = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[match.group(2)]
    return float(match.group(1)) * factor


@dataclass
class Run:
    rate: float
    p50: str
    p99: str
    errors: int
    wrk_cpu: float


def measured(label: str, output: tuple[str, float], duration: int) -> Run:
    rate, p50, p99, errors = summary(output[0])
    run = Run(rate, p50, p99, errors, output[1])
    flag = f", {errors} non-2xx" if errors else ""
    print(
        f"{label:<52} {rate:>8,.0f} req/s  p50 {p50:>8}  p99 {p99:>8}"
        f"  (wrk {run.wrk_cpu / duration:.2f} CPU){flag}",
        flush=True,
    )
    return run


async def make_clients(setup: Setup) -> list[tuple[str, str]]:
    """A client per partner with ``points:issue``: (client id, secret)."""
    engine = create_async_engine(sqlalchemy_url(setup.url))
    made = []
    async with AsyncSession(engine, expire_on_commit=False) as session:
        for partner in setup.partners:
            issued = await create_client(
                session,
                setup.program,
                partner,
                ClientSpec(name="bench-pos", scopes=["points:issue"], reach=Reach.COMPANY),
                principal=OPERATOR,
            )
            await session.commit()
            made.append((issued.client_id, issued.client_secret))
    await engine.dispose()
    return made


def fetch_tokens(base: str, clients: list[tuple[str, str]]) -> str:
    """A file of the clients' access tokens from the server's token endpoint."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        for client_id, secret in clients:
            form = urllib.parse.urlencode(
                {
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": secret,
                }
            ).encode()
            with urllib.request.urlopen(base + "/oauth/token", form, timeout=30) as answer:
                handle.write(json.loads(answer.read())["access_token"] + "\n")
    return handle.name


def issuance(args: argparse.Namespace) -> None:
    print("== 1. partner point issuance over HTTP ==", flush=True)
    with bench_database() as url:
        migrate(url)
        started = time.monotonic()
        since = datetime.now(UTC) - timedelta(days=1)
        setup = asyncio.run(open_coalition(url, args.partners, since=since, effective_from=since))
        clients = asyncio.run(make_clients(setup))
        asyncio.run(load_members(url, setup.program.id, setup.program.ledger_id, 0, args.members))
        asyncio.run(prepare_baseline(url, args.members))
        asyncio.run(analyze(url))
        print(
            f"set up {args.members:,} members, {args.partners} partners (contract, funding,"
            f" client) in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        serve_issuance(args, setup, clients)


def serve_issuance(args: argparse.Namespace, setup: Setup, clients: list[tuple[str, str]]) -> None:
    granian, coalition = venv_command("granian"), venv_command("coalition")
    base_env = {**os.environ, "DATABASE_URL": setup.url, "COALITION_LOG_LEVEL": "warning"}
    app_env = {
        **base_env,
        "COALITION_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "COALITION_SIGNING_SECRET": Fernet.generate_key().decode(),
        # Set, so that ``serve`` keeps no secrets of its own in the data folder.
        "MEMBER_JWT_SECRET": secrets.token_urlsafe(32),
        "COALITION_PARTNER_TOKEN_SECONDS": "3600",
        # On, high enough never to refuse: its counting is part of the path.
        "COALITION_PARTNER_RATE_LIMIT": "1000000",
        "COALITION_SWEEP_INTERVAL": "0",
        "COALITION_WORKERS": str(args.workers),
    }
    limits = "partner rate limit in each worker's memory (no Redis)"
    if redis_reachable(args.redis_url):
        app_env["REDIS_URL"] = args.redis_url
        limits = f"partner rate limit in Redis ({args.redis_url})"

    def server(factory: str, env: dict[str, str]) -> AbstractContextManager[str]:
        port = free_port()
        command = [granian, "--interface", "asgi", "--factory", "--workers", str(args.workers)]
        command += ["--host", "127.0.0.1", "--port", str(port), factory]
        return serving(command, env, port)

    def coalition_server() -> AbstractContextManager[str]:
        # As the member bench serves it: the CLI's own server.
        port = free_port()
        return serving(
            [coalition, "serve", "--no-worker", "--port", str(port)],
            {**app_env, "COALITION_PORT": str(port)},
            port,
        )

    d, c, quiet = args.duration, args.connections, args.moderate_connections
    print(
        f"servers: Granian, {args.workers} workers each; load: wrk, 1 thread, {c} connections,"
        f" {d} s per run; {limits}",
        flush=True,
    )
    write = WRITE.format(rows=args.members)
    with (
        server("bench.baseline_app:create_app", base_env) as bare,
        coalition_server() as app,
    ):
        tokens = fetch_tokens(app, clients)

        def issue_script() -> str:
            run = secrets.token_hex(3)
            return ISSUE.format(tokens=tokens, run=run, members=args.members)

        try:
            warm = min(d, 10)
            wrk(bare, write, warm, c)
            wrk(app, issue_script(), warm, c)
            bare_runs: list[Run] = []
            issue_runs: list[Run] = []
            for round_ in range(1, args.rounds + 1):
                asyncio.run(analyze(setup.url))
                print(f"round {round_}:", flush=True)
                bare_runs.append(
                    measured("(c) bare insert + update in a transaction", wrk(bare, write, d, c), d)
                )
                issue_runs.append(
                    measured("(e) POST /partner/issuances", wrk(app, issue_script(), d, c), d)
                )
            print(f"moderate load: {quiet} connections", flush=True)
            quiet_bare = measured(
                "(c) bare insert + update in a transaction", wrk(bare, write, d, quiet), d
            )
            quiet_issue = measured(
                "(e) POST /partner/issuances", wrk(app, issue_script(), d, quiet), d
            )
        finally:
            os.unlink(tokens)
    written = asyncio.run(count_issued(setup.url))
    print("where the time goes (in process, no HTTP):", flush=True)
    asyncio.run(profile_issuance(setup, args.members))
    bare_rate = statistics.median(r.rate for r in bare_runs)
    issue_rate = statistics.median(r.rate for r in issue_runs)
    ratio = issue_rate / bare_rate
    p99 = milliseconds(quiet_issue.p99)
    print(f"written: {written}")
    print(
        f"RESULT issuance: medians (c) {bare_rate:,.0f}, (e) {issue_rate:,.0f} req/s at {c}"
        f" connections; (e)/(c) = {ratio:.2f} (goal >= 1.0: {'met' if ratio >= 1 else 'MISSED'});"
        f" at {quiet}: (e)/(c) = {quiet_issue.rate / quiet_bare.rate:.2f}, p99 of (e)"
        f" {p99:.1f} ms (goal < 50 ms: {'met' if p99 < 50 else 'MISSED'})",
        flush=True,
    )


async def profile_issuance(setup: Setup, members: int) -> None:
    """Issuance called directly (no HTTP, token or Idempotency-Key): each
    ``issue_points`` alone, by 1 and by 8 callers (if 8 go no faster than 1,
    a lock serialises them: the program ledger's, held from the ledger call
    to the commit), then through the HTTP route's intake
    (``api.issuance_intake``), which writes concurrent issuances together,
    by 8 and by 64 callers; beside a bare one-row commit."""
    from api.issuance_intake import IssuanceIntake
    from partners.coalition_schemas import IssuanceRequest
    from partners.issuance import issue_points

    pool = await create_pool(setup.url, min_size=2, max_size=10)
    ledger = Ledger(pool)
    intake = IssuanceIntake(pool, ledger)
    run = secrets.token_hex(3)
    counter = iter(range(10**9))

    def principal(partner: Partner) -> Principal:
        return Principal(
            kind=PrincipalKind.PARTNER,
            actor=f"partner:bench-{partner.slug}",
            scopes=frozenset({"points:issue"}),
            program_id=partner.program_id,
            partner_id=partner.id,
            partner_ids=frozenset({partner.id}),
        )

    async def caller(until: float, batched: bool) -> int:
        done = 0
        while time.monotonic() < until:
            n = next(counter)
            request = IssuanceRequest(
                transaction_id=f"p-{run}-{n}", member=f"m{(n * 7919) % members}", points=10
            )
            acting = principal(setup.partners[n % len(setup.partners)])
            if batched:
                await intake.issue(request, datetime.now(UTC), principal=acting)
            else:
                await issue_points(pool, ledger, request, datetime.now(UTC), principal=acting)
            done += 1
        return done

    for label, batched, callers in (
        ("issue_points alone", False, 1),
        ("issue_points alone", False, 8),
        ("through the intake", True, 8),
        ("through the intake", True, 64),
    ):
        started = time.monotonic()
        done = sum(await asyncio.gather(*(caller(started + 5, batched) for _ in range(callers))))
        elapsed = time.monotonic() - started
        print(
            f"  {label}, {callers} caller(s): {done / elapsed:,.0f}/s,"
            f" {elapsed / done * callers * 1000:.2f} ms each",
            flush=True,
        )
    await intake.close()
    async with pool.acquire() as connection:
        await connection.execute("CREATE TEMP TABLE bench_commits (n integer)")
        started = time.perf_counter()
        for n in range(300):
            async with connection.transaction():
                await connection.execute("INSERT INTO bench_log (row_id) VALUES ($1)", n)
        commit = (time.perf_counter() - started) / 300 * 1000
    print(f"  a bare one-row insert and commit, alone: {commit:.2f} ms", flush=True)
    await ledger.close()
    await pool.close()


async def count_issued(url: str) -> str:
    connection = await asyncpg.connect(url)
    try:
        row = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM partner_issuances) AS issuances,"
            " (SELECT count(*) FROM audit_events WHERE action = 'partner.issue') AS audited,"
            " (SELECT count(*) FROM outbox_events WHERE topic = 'partner.points_issued') AS events"
        )
    except asyncpg.PostgresError as error:
        return f"(not counted: {error})"
    finally:
        await connection.close()
    assert row is not None
    return (
        f"{row['issuances']:,} issuances, {row['audited']:,} audit lines, {row['events']:,} events"
    )


# -- 2. webhook delivery --------------------------------------------------


def acting_for(partner: Partner) -> Principal:
    """The partner's own client managing its webhook endpoints."""
    return Principal(
        kind=PrincipalKind.PARTNER,
        actor=f"partner:bench-{partner.slug}",
        scopes=frozenset({"webhooks:manage"}),
        program_id=partner.program_id,
        partner_id=partner.id,
        partner_ids=frozenset({partner.id}),
    )


async def add_endpoints(setup: Setup, port: int) -> dict[str, str]:
    """An endpoint per partner on the receiver: its path -> its secret."""
    from partners.webhook_endpoints import create_endpoint
    from partners.webhook_schemas import EndpointSpec
    from partners.webhook_targets import TargetPolicy

    engine = create_async_engine(sqlalchemy_url(setup.url))
    found = {}
    async with AsyncSession(engine, expire_on_commit=False) as session:
        for n, partner in enumerate(setup.partners):
            path = f"/hook/{n}"
            made = await create_endpoint(
                session,
                EndpointSpec(url=f"http://127.0.0.1:{port}{path}"),
                principal=acting_for(partner),
                targets=TargetPolicy(private=True),
            )
            await session.commit()
            found[path] = made.secret
    await engine.dispose()
    return found


@contextmanager
def receiver(port: int, endpoints: dict[str, str], log: str) -> Iterator[None]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(endpoints, handle)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "webhook_receiver.py"), str(port), log, handle.name],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError("the webhook receiver did not start")
        yield
    finally:
        process.terminate()
        process.wait(60)
        os.unlink(handle.name)


def received(log: str) -> tuple[dict[int, float], str]:
    """Receipt times by event number, and the receiver's signature check."""
    times: dict[int, float] = {}
    checked = ""
    with open(log) as handle:
        for line in handle:
            if line.startswith("#"):
                checked = line[1:].strip()
                continue
            n, at, _ = line.split()
            times.setdefault(int(n), float(at))
    return times, checked


async def deliveries(
    setup: Setup, events: int, rate: float, seconds: float
) -> tuple[dict[int, float], dict[str, float]]:
    """Both webhook measurements in the worker's process; answers the
    commit times of the paced events and the throughput figures."""
    from api.modules import SUBSCRIBERS
    from core.modules import JobContext
    from core.outbox import emit
    from partners import events as topics
    from partners import webhook_job, webhook_targets
    from partners.webhook_sending import http_clients
    from partners.webhook_targets import TargetPolicy

    webhook_targets.configure(TargetPolicy(private=True))
    pool = await create_pool(setup.url, min_size=1, max_size=4)
    ledger = Ledger(pool)
    engine = create_async_engine(sqlalchemy_url(setup.url), pool_size=8)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    partners = setup.partners

    def context() -> JobContext:
        return JobContext(
            sessions=sessions, ledger=ledger, now=datetime.now(UTC), subscribers=SUBSCRIBERS
        )

    # Throughput: ``events`` committed together, then one run of the job.
    async with sessions() as session, session.begin():
        for n in range(events):
            subject = topics.subject(partners[n % len(partners)].id)
            await emit(session, topics.POINTS_ISSUED, subject, {"n": n})
    webhook_job.IDLE_SECONDS = 0.2
    webhook_job.RUN_SECONDS = 600
    cpu, started = time.process_time(), time.perf_counter()
    attempts = await webhook_job.deliver_webhooks(context())
    elapsed = time.perf_counter() - started - webhook_job.IDLE_SECONDS
    cpu = time.process_time() - cpu
    async with pool.acquire() as connection:
        succeeded = await connection.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'"
        )
        logged = await connection.fetchval("SELECT count(*) FROM webhook_attempts")
        span = await connection.fetchrow(
            "SELECT min(attempted_at), max(attempted_at) FROM webhook_attempts"
        )
        assert span is not None
        first, last = span
    figures = {
        "attempts": attempts,
        "succeeded": succeeded,
        "logged": logged,
        "elapsed": elapsed,
        "cpu": cpu,
        "sending": (last - first).total_seconds() if first else 0.0,
    }
    # Latency: events committed one at a time at ``rate`` while the job runs,
    # started again as soon as a run ends (the worker's schedule starts one
    # every second), until every event is received.
    webhook_job.IDLE_SECONDS = 1.0
    webhook_job.RUN_SECONDS = 20.0
    committed: dict[int, float] = {}
    emitting = True

    async def schedule() -> None:
        while True:
            attempts = await webhook_job.deliver_webhooks(context())
            if not emitting and not attempts:
                return

    job = asyncio.create_task(schedule())
    await asyncio.sleep(0.5)
    begin = time.monotonic()
    for k in range(int(rate * seconds)):
        n = events + k
        async with sessions() as session, session.begin():
            subject = topics.subject(partners[k % len(partners)].id)
            await emit(session, topics.POINTS_ISSUED, subject, {"n": n})
        committed[n] = time.time()
        pause = begin + (k + 1) / rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
    figures["emitted_rate"] = len(committed) / (time.monotonic() - begin)
    emitting = False
    await job
    # The sender's HTTP client of this loop, kept open between runs.
    await http_clients().aclose()
    await ledger.close()
    await pool.close()
    await engine.dispose()
    return committed, figures


def webhooks(args: argparse.Namespace) -> None:
    print("== 2. webhook delivery from the outbox ==", flush=True)
    with bench_database() as url:
        migrate(url)
        since = datetime.now(UTC) - timedelta(days=1)
        setup = asyncio.run(open_coalition(url, args.partners, since=since, effective_from=since))
        port = free_port()
        endpoints = asyncio.run(add_endpoints(setup, port))
        log = tempfile.mktemp(suffix=".log", prefix="bench-webhooks-")
        with receiver(port, endpoints, log):
            committed, figures = asyncio.run(
                deliveries(setup, args.webhook_events, args.latency_rate, args.latency_seconds)
            )
        times, checked = received(log)
        os.unlink(log)
    rate = figures["succeeded"] / figures["elapsed"]
    print(
        f"{args.webhook_events:,} events to {args.partners} endpoints: {figures['attempts']:,}"
        f" attempts, {figures['succeeded']:,} succeeded, {figures['logged']:,} attempts logged,"
        f" in {figures['elapsed']:.2f} s (fan-out included; first to last attempt"
        f" {figures['sending']:.2f} s); worker CPU {figures['cpu']:.2f} s;"
        f" receiver signature checks: {checked}",
        flush=True,
    )
    late = [times[n] - at for n, at in committed.items() if n in times]
    missing = len(committed) - len(late)
    p50, p99 = percentile(late, 0.5) * 1000, percentile(late, 0.99) * 1000
    print(
        f"RESULT webhooks: {rate:,.0f} signed, logged deliveries/s"
        f" (goal >= 1,000: {'met' if rate >= 1000 else 'MISSED'}); at"
        f" {args.latency_rate:g} events/s for {args.latency_seconds:g} s (reached"
        f" {figures['emitted_rate']:.0f}/s): commit to receipt p50"
        f" {p50:.0f} ms, p99 {p99:.0f} ms, max {max(late) * 1000:.0f} ms, {missing} not received"
        f" (goal p99 < 1 s: {'met' if p99 < 1000 and not missing else 'MISSED'})",
        flush=True,
    )


# -- 3. a statement over a million transfers ------------------------------


async def load_transfers(setup: Setup, count: int, start: datetime, end: datetime) -> None:
    """``count`` issuances of the first partner to 8,000 wallets, with
    business times spread over [start, end), 8,000 per ledger call."""
    program, holder = setup.program, setup.partners[0]
    pool = await create_pool(setup.url, min_size=1, max_size=4)
    ledger = Ledger(pool)
    wallets = [new_id() for _ in range(8000)]
    await ledger.create_accounts(
        [
            Account(
                id=w,
                ledger=program.ledger_id,
                code=AccountCode.MEMBER_WALLET,
                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
            )
            for w in wallets
        ]
    )
    source = issuance_account(program, holder.id)
    span = (end - start).total_seconds()
    rng = random.Random(1)
    for first in range(0, count, 8000):
        batch = [
            Transfer(
                id=new_id(),
                debit_account_id=source,
                credit_account_id=rng.choice(wallets),
                amount=rng.randint(1, 100),
                ledger=program.ledger_id,
                code=TransferCode.PARTNER_ISSUANCE,
                effective_at=start + timedelta(seconds=rng.uniform(0, span - 1)),
            )
            for _ in range(min(8000, count - first))
        ]
        outcomes = await ledger.create_transfers(batch)
        refused = [o.result for o in outcomes if o.result != "ok"]
        if refused:
            raise RuntimeError(f"transfers refused: {refused[:3]}")
    await ledger.close()
    await pool.close()


async def time_statement(setup: Setup, repeats: int) -> dict[str, list[float]]:
    from partners import statements
    from partners.statement_lines import compute_lines

    pool = await create_pool(setup.url, min_size=1, max_size=4)
    ledger = Ledger(pool)
    engine = create_async_engine(sqlalchemy_url(setup.url))
    program, holder = setup.program, setup.partners[0]
    phases: dict[str, list[float]] = {"plan": [], "cutoff": [], "sums": [], "lines": []}
    phases.update({"draft": [], "issue": []})
    async with AsyncSession(engine, expire_on_commit=False) as session:

        async def timed(name: str, step: Awaitable[Any]) -> Any:
            started = time.perf_counter()
            value = await step
            phases[name].append(time.perf_counter() - started)
            return value

        for _ in range(repeats):
            plan = await timed("plan", statements.plan_next(session, program, holder))
            cutoff = await timed("cutoff", statements.cutoff_of(ledger, program, holder.id, plan))
            window = statements._window(program, holder.id, plan, cutoff)
            sums = await timed(
                "sums",
                ledger.statement_sums(
                    window,
                    version_starts=[v.effective_from for v in plan.versions if v.effective_from],
                    period_unit=plan.period.unit,
                    time_zone=plan.period.zone,
                ),
            )
            lines_started = time.perf_counter()
            compute_lines(
                sums,
                versions=plan.versions,
                at_end=plan.at_end,
                period=plan.period,
                before=plan.before,
            )
            phases["lines"].append(time.perf_counter() - lines_started)
            await session.rollback()
            draft_started = time.perf_counter()
            view = await statements.draft_statement(
                session, ledger, program, holder, principal=OPERATOR
            )
            phases["draft"].append(time.perf_counter() - draft_started)
            await session.rollback()
        print(
            f"draft: period {view.period}, total {view.total_minor:,} minor units,"
            f" {sum(line.transfers for line in view.lines):,} transfers in its lines",
            flush=True,
        )
        issue_started = time.perf_counter()
        issued, _ = await statements.issue_statement(
            session,
            ledger,
            program,
            holder,
            StatementRequest(period=view.period),
            datetime.now(UTC),
            principal=OPERATOR,
        )
        await session.commit()
        phases["issue"].append(time.perf_counter() - issue_started)
        print(f"issued: statement {issued.number}, total {issued.total_minor:,}", flush=True)
    await ledger.close()
    await pool.close()
    await engine.dispose()
    return phases


def statement(args: argparse.Namespace) -> None:
    print("== 3. a statement over a million transfers ==", flush=True)
    today = datetime.now(UTC)
    this_month = today.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    with bench_database() as url:
        migrate(url)
        setup = asyncio.run(
            open_coalition(url, 1, since=last_month - timedelta(days=1), effective_from=last_month)
        )
        started = time.monotonic()
        asyncio.run(load_transfers(setup, args.statement_transfers, last_month, this_month))
        asyncio.run(analyze(url))
        loaded = time.monotonic() - started
        print(
            f"{args.statement_transfers:,} transfers in {loaded:.0f} s"
            f" ({args.statement_transfers / loaded:,.0f}/s, ledger batches of 8,000)",
            flush=True,
        )
        phases = asyncio.run(time_statement(setup, args.statement_repeats))
    shown = ", ".join(
        f"{name} {statistics.median(values) * 1000:,.0f} ms" for name, values in phases.items()
    )
    draft = statistics.median(phases["draft"])
    issue = phases["issue"][0]
    worst = max(draft, issue)
    print(
        f"RESULT statement: {args.statement_transfers:,} transfers; draft {draft:.2f} s (median"
        f" of {args.statement_repeats}), issue {issue:.2f} s; by phase: {shown}"
        f" (goal < 2 s: {'met' if worst < 2 else 'MISSED'})",
        flush=True,
    )


# -- the run --------------------------------------------------------------


def machine() -> str:
    async def version() -> str:
        from api.database import postgres_server

        with postgres_server("DATABASE_URL", prefix="coalition-bench-") as server:
            connection = await asyncpg.connect(server)
            try:
                return str(await connection.fetchval("SHOW server_version"))
            finally:
                await connection.close()

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {os.cpu_count()} cores, load average {load}; PostgreSQL {asyncio.run(version())}"
    )


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--only", choices=["issuance", "webhooks", "statement"])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--partners", type=int, default=100)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--moderate-connections", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    parser.add_argument("--webhook-events", type=int, default=10_000)
    parser.add_argument("--latency-rate", type=float, default=100.0)
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--statement-transfers", type=int, default=1_000_000)
    parser.add_argument("--statement-repeats", type=int, default=3)
    args = parser.parse_args()
    print(machine(), flush=True)
    parts = [args.only] if args.only else ["issuance", "webhooks", "statement"]
    if "issuance" in parts and shutil.which("wrk") is None:
        sys.exit("bench: wrk is needed as the load generator (apt-get install wrk)")
    for part in parts:
        {"issuance": issuance, "webhooks": webhooks, "statement": statement}[part](args)


if __name__ == "__main__":
    main()
