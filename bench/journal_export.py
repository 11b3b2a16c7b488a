"""Journal export: lines per second and memory, CSV and Parquet.

    .venv/bin/python bench/journal_export.py                      # embedded PostgreSQL
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/journal_export.py --transfers 500000

It makes a database of its own (dropped at the end), a program's money
ledger with a partner's accounts, and posts ``--transfers`` movements of
five kinds (settlements, reimbursements, payments, payouts, prepaid
drawn) dated across one month (``effective_at``), through the ledger's
API in batches of 8,000. Every transfer is two journal lines, so the
default period has 1,000,000 lines. Then, for each format, it exports the
period ``--rounds`` times (``finance.journal.export_journal``, the code
the API and the command line stream from) to a sink that only counts the
bytes, and prints lines/s (wall clock, and per CPU second of this
process: the figure that holds on a machine shared with other work),
bytes, the CPU seconds of the PostgreSQL backend that served it (from
/proc/<pid>/stat, when the server runs on this machine: the money lines
are formatted there), and the process's resident memory before the export
and its peak during it (sampled every 10 ms from /proc/self/statm): flat
memory means the peak stays near the start whatever the period's size. It
checks that two exports of a format give the same bytes (by SHA-256) and
that the lines balance (the row-by-row reference, ``journal_lines``).

``--keep`` leaves the database (and prints its URL); ``--database URL``
exports from such a kept one instead of loading (no other options apply).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from common import argument_parser, bench_database

from api.database import migrate, postgres_server, with_database
from core.codes import AccountCode, TransferCode
from core.exports import ExportFormat
from finance.journal import JournalProgram, export_journal, journal_lines
from ledger import Account, Ledger, Transfer
from ledger.connection import create_pool
from ledger.schemas import BATCH_MAX
from ledger.schemas import Ledger as LedgerDefinition

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
PERIOD_START = datetime(2025, 1, 1, tzinfo=UTC)
MONTH = timedelta(days=31)
KINDS = [
    (TransferCode.PARTNER_SETTLEMENT, AccountCode.PARTNER_RECEIVABLE, AccountCode.PARTNER_REVENUE),
    (
        TransferCode.PARTNER_REIMBURSEMENT,
        AccountCode.PARTNER_REDEMPTION_COST,
        AccountCode.PARTNER_PAYABLE,
    ),
    (TransferCode.PARTNER_PAYMENT, AccountCode.PARTNER_CASH, AccountCode.PARTNER_RECEIVABLE),
    (TransferCode.PARTNER_PAYOUT, AccountCode.PARTNER_PAYABLE, AccountCode.PARTNER_CASH),
    (
        TransferCode.PARTNER_PREPAID_DRAWN,
        AccountCode.PARTNER_PREPAID,
        AccountCode.PARTNER_RECEIVABLE,
    ),
]


def backend_cpu(pid: int) -> float | None:
    """The CPU seconds (user + system) of a local backend; None if remote."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


async def create_database(server_url: str, name: str) -> None:
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


async def load(ledger: Ledger, transfers: int) -> JournalProgram:
    program = JournalProgram(uuid.uuid4(), "bench", "ZAR", "UTC")
    await ledger.create_ledger(LedgerDefinition(id=7, name="money:bench:ZAR", asset_scale=2))
    accounts = {code: uuid.uuid4() for code in {c for _, d, k in KINDS for c in (d, k)}}
    outcomes = await ledger.create_accounts(
        [Account(id=i, ledger=7, code=code) for code, i in accounts.items()]
    )
    assert all(o.result == "ok" for o in outcomes), outcomes
    started = time.perf_counter()
    for offset in range(0, transfers, BATCH_MAX):
        batch = []
        for n in range(offset, min(offset + BATCH_MAX, transfers)):
            code, debit, credit = KINDS[n % len(KINDS)]
            batch.append(
                Transfer(
                    id=uuid.uuid4(),
                    debit_account_id=accounts[debit],
                    credit_account_id=accounts[credit],
                    amount=1 + n % 10_000,
                    ledger=7,
                    code=code,
                    effective_at=PERIOD_START + MONTH * n / transfers,
                )
            )
        results = await ledger.create_transfers(batch)
        assert all(r.result == "ok" for r in results), results[:3]
    elapsed = time.perf_counter() - started
    print(f"loaded {transfers:,} transfers in {elapsed:.1f} s ({transfers / elapsed:,.0f}/s)")
    return program


async def export_once(
    pool: asyncpg.Pool, program: JournalProgram, export_format: ExportFormat
) -> tuple[float, float, float | None, int, str, int, int]:
    digest = hashlib.sha256()
    size = 0
    before = peak = rss()
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss())
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    async with pool.acquire() as connection:
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        server_before = backend_cpu(backend)
        started, cpu = time.perf_counter(), time.process_time()
        async for chunk in export_journal(connection, program, PERIOD_START.date(), export_format):
            digest.update(chunk)
            size += len(chunk)
            peak = max(peak, rss())
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        server_after = backend_cpu(backend)
    server = (
        server_after - server_before
        if server_before is not None and server_after is not None
        else None
    )
    done.set()
    await sampler
    return elapsed, cpu, server, size, digest.hexdigest(), before, peak


async def balanced(pool: asyncpg.Pool, program: JournalProgram) -> tuple[int, bool]:
    sides = {"debit": 0, "credit": 0}
    lines = 0
    async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read"):
        async for row in journal_lines(connection, program, PERIOD_START.date()):
            sides[row[7]] += row[9]
            lines += 1
    return lines, sides["debit"] == sides["credit"]


async def kept_program(pool: asyncpg.Pool) -> JournalProgram:
    """The program of a database an earlier run kept (its id is in no table)."""
    found = await pool.fetchval("SELECT id FROM ledgers WHERE name = 'money:bench:ZAR'")
    if found is None:
        raise SystemExit("no bench ledger in that database: load one with --keep")
    return JournalProgram(uuid.uuid4(), "bench", "ZAR", "UTC")


async def main(url: str, transfers: int, rounds: int, *, kept: bool) -> None:
    pool = await create_pool(url, min_size=1, max_size=4)
    ledger = Ledger(pool)
    try:
        if kept:
            program = await kept_program(pool)
        else:
            program = await load(ledger, transfers)
            await pool.execute("ANALYZE")
        lines, ok = await balanced(pool, program)
        print(f"period 2025-01: {lines:,} lines, debits = credits: {ok}")
        for export_format in ExportFormat:
            digests = set()
            for n in range(rounds):
                elapsed, cpu, server, size, digest, before, peak = await export_once(
                    pool, program, export_format
                )
                digests.add(digest)
                on_server = (
                    f"; server {server:.2f} CPU s, {lines / (cpu + server):,.0f} lines per CPU"
                    " second of both"
                    if server
                    else ""
                )
                print(
                    f"{export_format.value:<8} round {n + 1}: {lines / elapsed:,.0f} lines/s"
                    f" ({elapsed:.2f} s; this process {cpu:.2f} CPU s, {lines / cpu:,.0f}"
                    f" lines per CPU second{on_server}; {size / 1e6:,.1f} MB),"
                    f" RSS {before / 2**20:,.0f} MiB before, peak {peak / 2**20:,.0f} MiB"
                    f" (+{(peak - before) / 2**20:,.0f})"
                )
            print(f"{export_format.value:<8} same bytes every round: {len(digests) == 1}")
    finally:
        await ledger.close()
        await pool.close()


if __name__ == "__main__":
    parser = argument_parser(__doc__)
    parser.add_argument("--transfers", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="Keep the database at the end.")
    parser.add_argument("--database", help="Export from a database a --keep run left.")
    arguments = parser.parse_args()
    if arguments.database:
        migrate(arguments.database)
        asyncio.run(main(arguments.database, 0, arguments.rounds, kept=True))
    elif arguments.keep:
        with postgres_server("DATABASE_URL", prefix="coalition-bench-") as server_url:
            name = f"coalition_bench_kept_{uuid.uuid4().hex[:8]}"
            asyncio.run(create_database(server_url, name))
            url = with_database(server_url, name)
            migrate(url)
            asyncio.run(main(url, arguments.transfers, arguments.rounds, kept=False))
            print(f"kept: --database {url}")
    else:
        with bench_database() as url:
            migrate(url)
            asyncio.run(main(url, arguments.transfers, arguments.rounds, kept=False))
