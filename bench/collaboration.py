"""Collaboration's speed (issue 11, "Speed"): the market development funds'
and the leads' partner POSTs over HTTP, beside the member bench's bare
insert-and-update endpoint in the same run.

    .venv/bin/python bench/collaboration.py [--partners 20] [--duration 15]
        [--rounds 3] [--connections 64] [--workers 2] [--rows 100000]

Needs ``wrk`` (one thread, on the same machine; its CPU time is printed).
In a database of its own on ``DATABASE_URL``'s server (dropped at the end):
``--partners`` active firms, each with an MDF fund from the operator
(points, ample), an approved activity on it, and a client with every
partner scope whose token comes from ``/oauth/token``. Then, on Granian
with ``--workers`` each, in alternating rounds at ``--connections``:

(c) the bare insert + update endpoint of ``bench/baseline_app.py``;
(m1) ``POST /partner/mdf/funds/{fund}/activities``: request an activity
     (token, rate limit, Idempotency-Key, one statement: fund check,
     activity, audit line);
(m2) ``POST /partner/mdf/activities/{activity}/claims``: draft a claim;
(l)  ``POST /partner/leads``: register a lead (a fresh company domain each),
     if the app has the route (skipped with a note if not).

Goal: each of (m1), (m2), (l) at least 0.8 of (c), medians of the rounds.
Then the two MDF use cases in process (no HTTP), by 1 and 8 callers, beside
a bare one-row insert and commit: what the routes' own work costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import tempfile
import time
import urllib.request
import uuid
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from common import argument_parser, bench_database, free_port, serving, venv_command
from cryptography.fernet import Fernet
from member_api import analyze, prepare_baseline, redis_reachable
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from api.database import migrate, sqlalchemy_url
from bench.partners import OPERATOR, WRITE, Run, Setup, fetch_tokens, measured, open_coalition, wrk
from core.principal import Principal, PrincipalKind, Reach
from ledger import Ledger
from ledger.connection import create_pool
from partners.client_schemas import ClientSpec
from partners.clients import create_client
from partners.mdf.activities import approve_activity, request_activity
from partners.mdf.funds import allocate_fund
from partners.mdf.schemas import ActivityApproval, ActivityRequest, FundRequest
from partners.module import PARTNER_SCOPES

#: Points of each approved activity (its fund holds twice as much, the
#: activities the bench requests ask for the rest): never the limit.
AMOUNT = 10**14

# Each request: a random partner's token and its fund or activity, a fresh
# Idempotency-Key (the run's prefix and the thread's counter).
_PREAMBLE = """
local rows = {{}}
for line in io.lines("{targets}") do
  local token, fund, activity = line:match("(%S+) (%S+) (%S+)")
  rows[#rows + 1] = {{token = token, fund = fund, activity = activity}}
end
local counter = 0
math.randomseed(os.time())
local function key()
  counter = counter + 1
  return string.format("{run}-%d-%d", math.random(1, 1000000000), counter)
end
local function headers(row, id)
  return {{["Authorization"] = "Bearer " .. row.token,
    ["Content-Type"] = "application/json", ["Idempotency-Key"] = id}}
end
"""
ACTIVITY = (
    _PREAMBLE
    + """
request = function()
  local row = rows[math.random(1, #rows)]
  local body = '{{"title":"Forecourt promotion","plan":"Posters at 12 sites",'
    .. '"starts_on":"{today}","ends_on":"{today}","amount":' .. math.random(1, 100) .. '}}'
  return wrk.format("POST", "/partner/mdf/funds/" .. row.fund .. "/activities",
    headers(row, key()), body)
end
"""
)
CLAIM = (
    _PREAMBLE
    + """
request = function()
  local row = rows[math.random(1, #rows)]
  local body = '{{"amount":' .. math.random(1, 100) .. ',"description":"Posters printed",'
    .. '"proof":[{{"url":"https://files.example.com/i.pdf","description":"Invoice"}}]}}'
  return wrk.format("POST", "/partner/mdf/activities/" .. row.activity .. "/claims",
    headers(row, key()), body)
end
"""
)
LEAD = (
    _PREAMBLE
    + """
request = function()
  local row = rows[math.random(1, #rows)]
  local id = key()
  local body = string.format('{{"reference":"%s","company":{{"name":"Acme %s",'
    .. '"domain":"acme-%s.example.com"}},"contact":{{"name":"Ann"}},'
    .. '"estimated_value_minor":100000,"currency":"ZAR","territory":"ZA-WC",'
    .. '"products":["fuel"],"lawful_basis":"consent","consent_reference":"crm-%s"}}',
    id, id, id, id)
  return wrk.format("POST", "/partner/leads", headers(row, id), body)
end
"""
)


async def prepare_mdf(setup: Setup) -> list[tuple[str, str, str, str]]:
    """Per partner: a client with every partner scope, a fund from the
    operator and an approved activity: (client id, secret, fund, activity)."""
    pool = await create_pool(setup.url, min_size=1, max_size=4)
    ledger = Ledger(pool)
    engine = create_async_engine(sqlalchemy_url(setup.url))
    today = datetime.now(UTC).date()
    made = []
    async with AsyncSession(engine, expire_on_commit=False) as session:
        for partner in setup.partners:
            issued = await create_client(
                session,
                setup.program,
                partner,
                ClientSpec(name="bench", scopes=sorted(PARTNER_SCOPES), reach=Reach.COMPANY),
                principal=OPERATOR,
            )
            fund = await allocate_fund(
                session,
                ledger,
                setup.program,
                FundRequest(
                    reference=f"bench-{partner.slug}",
                    partner=partner.slug,
                    name="Bench fund",
                    period_start=today - timedelta(days=1),
                    period_end=today + timedelta(days=30),
                    unit="points",
                    amount=2 * AMOUNT,
                ),
                datetime.now(UTC),
                principal=OPERATOR,
            )
            await session.commit()
            client = Principal(
                kind=PrincipalKind.PARTNER,
                actor=f"partner:bench-{partner.slug}",
                program_id=setup.program.id,
                partner_id=partner.id,
                partner_ids=frozenset({partner.id}),
            )
            activity = await request_activity(
                session,
                uuid.UUID(fund.id),
                ActivityRequest(
                    title="Bench", plan="Bench", starts_on=today, ends_on=today, amount=AMOUNT
                ),
                datetime.now(UTC),
                principal=client,
            )
            await approve_activity(
                session,
                setup.program,
                uuid.UUID(activity.id),
                ActivityApproval(),
                datetime.now(UTC),
                principal=OPERATOR,
            )
            await session.commit()
            made.append((issued.client_id, issued.client_secret, fund.id, activity.id))
    await ledger.close()
    await pool.close()
    await engine.dispose()
    return made


def targets_file(base: str, made: list[tuple[str, str, str, str]]) -> str:
    tokens = fetch_tokens(base, [(client_id, secret) for client_id, secret, _, _ in made])
    with open(tokens) as handle:
        lines = handle.read().split()
    os.unlink(tokens)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        for token, (_, _, fund, activity) in zip(lines, made, strict=True):
            handle.write(f"{token} {fund} {activity}\n")
    return handle.name


def has_lead_registration(base: str) -> bool:
    with urllib.request.urlopen(base + "/schema/openapi.json", timeout=30) as answer:
        document = json.loads(answer.read())
    return "post" in document.get("paths", {}).get("/partner/leads", {})


async def profile(setup: Setup, made: list[tuple[str, str, str, str]]) -> None:
    """The two MDF use cases called directly (no HTTP, token or
    Idempotency-Key), each in a session transaction of its own, by 1 and by
    8 callers, beside a bare one-row insert and commit through the same
    kind of session: what the route's own work costs."""
    from sqlalchemy import text

    from partners.mdf.claims import draft_claim
    from partners.mdf.schemas import ClaimDraft, Proof

    engine = create_async_engine(sqlalchemy_url(setup.url), pool_size=10)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    today = datetime.now(UTC).date()
    principals = [
        Principal(
            kind=PrincipalKind.PARTNER,
            actor=f"partner:bench-{p.slug}",
            program_id=setup.program.id,
            partner_id=p.id,
            partner_ids=frozenset({p.id}),
        )
        for p in setup.partners
    ]
    activity = ActivityRequest(
        title="Bench", plan="Bench", starts_on=today, ends_on=today, amount=1
    )
    claim = ClaimDraft(
        amount=1,
        description="Bench",
        proof=[Proof(url="https://files.example.com/i.pdf", description="Invoice")],
    )
    counter = iter(range(10**9))

    async def request_one() -> None:
        n = next(counter) % len(made)
        async with sessions() as session, session.begin():
            await request_activity(
                session, uuid.UUID(made[n][2]), activity, datetime.now(UTC), principal=principals[n]
            )

    async def draft_one() -> None:
        n = next(counter) % len(made)
        async with sessions() as session, session.begin():
            await draft_claim(
                session, uuid.UUID(made[n][3]), claim, datetime.now(UTC), principal=principals[n]
            )

    async def bare_one() -> None:
        async with sessions() as session, session.begin():
            await session.execute(
                text("INSERT INTO bench_log (row_id) VALUES (:n)"), {"n": next(counter)}
            )

    for label, call in (
        ("request_activity", request_one),
        ("draft_claim", draft_one),
        ("a bare one-row insert, same session kind", bare_one),
    ):
        for callers in (1, 8):

            async def caller(until: float, call: Any = call) -> int:
                done = 0
                while time.monotonic() < until:
                    await call()
                    done += 1
                return done

            started = time.monotonic()
            done = sum(await asyncio.gather(*(caller(started + 3) for _ in range(callers))))
            elapsed = time.monotonic() - started
            print(f"  {label}, {callers} caller(s): {done / elapsed:,.0f}/s", flush=True)
    await engine.dispose()


def run(args: argparse.Namespace) -> None:
    print("== MDF and lead registration over HTTP ==", flush=True)
    with bench_database() as url:
        migrate(url)
        started = time.monotonic()
        since = datetime.now(UTC) - timedelta(days=1)
        setup = asyncio.run(open_coalition(url, args.partners, since=since, effective_from=since))
        made = asyncio.run(prepare_mdf(setup))
        asyncio.run(prepare_baseline(url, args.rows))
        asyncio.run(analyze(url))
        print(
            f"set up {args.partners} partners (contract, funding, client, MDF fund and approved"
            f" activity) in {time.monotonic() - started:.0f} s",
            flush=True,
        )
        serve(args, url, made)
        print("where the time goes (in process, no HTTP):", flush=True)
        asyncio.run(profile(setup, made))


def serve(args: argparse.Namespace, url: str, made: list[tuple[str, str, str, str]]) -> None:
    granian, coalition = venv_command("granian"), venv_command("coalition")
    base_env = {**os.environ, "DATABASE_URL": url, "COALITION_LOG_LEVEL": "warning"}
    app_env = {
        **base_env,
        "COALITION_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "COALITION_SIGNING_SECRET": Fernet.generate_key().decode(),
        "MEMBER_JWT_SECRET": secrets.token_urlsafe(32),
        "COALITION_PARTNER_TOKEN_SECONDS": "3600",
        "COALITION_PARTNER_RATE_LIMIT": "1000000",
        "COALITION_SWEEP_INTERVAL": "0",
        "COALITION_WORKERS": str(args.workers),
    }
    if redis_reachable(args.redis_url):
        app_env["REDIS_URL"] = args.redis_url

    def bare_server() -> AbstractContextManager[str]:
        port = free_port()
        command = [granian, "--interface", "asgi", "--factory", "--workers", str(args.workers)]
        command += ["--host", "127.0.0.1", "--port", str(port), "bench.baseline_app:create_app"]
        return serving(command, base_env, port)

    def coalition_server() -> AbstractContextManager[str]:
        port = free_port()
        return serving(
            [coalition, "serve", "--no-worker", "--port", str(port)],
            {**app_env, "COALITION_PORT": str(port)},
            port,
        )

    d, c = args.duration, args.connections
    print(
        f"servers: Granian, {args.workers} workers each; load: wrk, 1 thread, {c} connections,"
        f" {d} s per run",
        flush=True,
    )
    write = WRITE.format(rows=args.rows)
    today = datetime.now(UTC).date().isoformat()
    with bare_server() as bare, coalition_server() as app:
        targets = targets_file(app, made)
        scripts = {
            "(m1) POST /partner/mdf/funds/{fund}/activities": ACTIVITY,
            "(m2) POST /partner/mdf/activities/{activity}/claims": CLAIM,
        }
        if has_lead_registration(app):
            scripts["(l) POST /partner/leads"] = LEAD
        else:
            print("note: the app has no POST /partner/leads yet: (l) skipped", flush=True)

        def script(template: str) -> str:
            return template.format(targets=targets, run=secrets.token_hex(3), today=today)

        try:
            warm = min(d, 5)
            wrk(bare, write, warm, c)
            for template in scripts.values():
                wrk(app, script(template), warm, c)
            runs: dict[str, list[Run]] = {"(c)": [], **{label: [] for label in scripts}}
            for round_ in range(1, args.rounds + 1):
                asyncio.run(analyze(url))
                print(f"round {round_}:", flush=True)
                runs["(c)"].append(
                    measured("(c) bare insert + update in a transaction", wrk(bare, write, d, c), d)
                )
                for label, template in scripts.items():
                    runs[label].append(measured(label, wrk(app, script(template), d, c), d))
        finally:
            os.unlink(targets)
    bare_rate = statistics.median(r.rate for r in runs["(c)"])
    for label in scripts:
        rate = statistics.median(r.rate for r in runs[label])
        ratio = rate / bare_rate
        errors = sum(r.errors for r in runs[label])
        flag = f"; {errors} non-2xx answers" if errors else ""
        print(
            f"RESULT {label}: median {rate:,.0f} req/s against (c) {bare_rate:,.0f};"
            f" ratio {ratio:.2f} (goal >= 0.8: {'met' if ratio >= 0.8 else 'MISSED'}){flag}",
            flush=True,
        )


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--partners", type=int, default=20)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
