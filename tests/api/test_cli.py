"""The ``coalition`` command line."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import jwt
import msgspec
import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner, Result

from api.cli import main
from api.database import alembic_config
from api.demo import ALICE, DEMO_PROGRAM
from api.settings import ENVIRONMENT
from ledger import Ledger, Transfer
from ledger.connection import create_pool
from tests.api.conftest import Book
from tests.api.live_server import AUDIENCE, free_port, wait_until_healthy

SUBCOMMANDS = [
    [],
    ["serve"],
    ["migrate"],
    ["ledger"],
    ["ledger", "check"],
    ["ledger", "expire"],
    ["demo"],
    ["member-token"],
]


def run(args: list[str], **env: str) -> Result:
    """Run the CLI with only the given settings in the environment."""
    environment: dict[str, str | None] = dict.fromkeys(ENVIRONMENT)
    environment.update(env)
    return CliRunner().invoke(main, args, env=environment)


def sql(url: str, query: str) -> object:
    async def fetch() -> object:
        connection = await asyncpg.connect(url)
        try:
            return await connection.fetchval(query)
        finally:
            await connection.close()

    return asyncio.run(fetch())


@pytest.mark.parametrize("args", SUBCOMMANDS, ids=lambda a: " ".join(a) or "main")
def test_every_command_has_help(args: list[str]) -> None:
    result = run([*args, "--help"])

    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    assert "--help" in result.output


def test_serve_help_lists_its_options() -> None:
    output = run(["serve", "--help"]).output

    for option in ("--host", "--port", "--workers", "--demo"):
        assert option in output


@pytest.mark.parametrize(
    ("variable", "value"),
    [("COALITION_PORT", "abc"), ("COALITION_WORKERS", "0"), ("DATABASE_URL", "mysql://x")],
)
def test_bad_setting_exits_2_with_one_line(variable: str, value: str) -> None:
    result = run(["ledger", "check"], **{variable: value})

    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert variable in lines[0]


def test_unreachable_database_exits_1_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed

    result = run(["ledger", "check"], DATABASE_URL=f"postgresql://nobody@127.0.0.1:{port}/x")

    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("coalition: error: ")


def test_ledger_check_on_an_empty_database(private_database: str) -> None:
    result = run(["ledger", "check"], DATABASE_URL=private_database)

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "ledger check: all invariants hold (0 ledgers, 0 accounts, 0 transfers)\n"
    )


def test_ledger_check_of_a_ledger_in_the_test_database(database_url: str, book: Book) -> None:
    # Other tests share this database: check only this test's ledger.
    asyncio.run(_post(database_url, book))

    result = run(["ledger", "check", "--ledger", str(book.ledger)], DATABASE_URL=database_url)

    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "ledger check: all invariants hold (1 ledgers, 3 accounts, 2 transfers)\n"
    )


async def _post(url: str, book: Book) -> None:
    pool = await create_pool(url, min_size=1, max_size=2)
    ledger = Ledger(pool)
    try:
        outcomes = await ledger.create_transfers(
            [
                Transfer(
                    id=uuid.uuid4(),
                    debit_account_id=book.issuance,
                    credit_account_id=book.alice,
                    amount=10,
                    ledger=book.ledger,
                    code=1,
                ),
                Transfer(
                    id=uuid.uuid4(),
                    debit_account_id=book.alice,
                    credit_account_id=book.bob,
                    amount=4,
                    ledger=book.ledger,
                    code=1,
                ),
            ]
        )
        assert [o.result for o in outcomes] == ["ok", "ok"]
    finally:
        await ledger.close()
        await pool.close()


def test_demo_is_idempotent_and_checks_clean(private_database: str) -> None:
    first = run(["demo"], DATABASE_URL=private_database)
    second = run(["demo"], DATABASE_URL=private_database)
    check = run(["ledger", "check"], DATABASE_URL=private_database)

    assert first.exit_code == 0, first.output
    assert first.stdout == (
        "demo: ledger 1 'demo-points'; accounts 5 ok; transfers 7 ok\n"
        "demo: program 'demo-shop' loaded; members alice, bob, carol\n"
    )
    assert second.exit_code == 0, second.output
    assert "accounts 5 exists; transfers 7 exists" in second.stdout
    assert "program 'demo-shop' already there" in second.stdout
    assert check.exit_code == 0, check.output
    assert check.stdout == (
        "ledger check: all invariants hold (2 ledgers, 11 accounts, 17 transfers)\n"
    )
    assert (
        sql(private_database, "SELECT count(*) FROM transfers WHERE flags & 2 <> 0 AND ledger = 1")
        == 1
    )


def test_ledger_check_reports_each_violation(private_database: str) -> None:
    assert run(["demo"], DATABASE_URL=private_database).exit_code == 0
    # Balances are the one mutable part of an account: forge one.
    sql(
        private_database,
        f"UPDATE accounts SET credits_posted = credits_posted + 5 WHERE id = '{ALICE}'",
    )

    result = run(["ledger", "check"], DATABASE_URL=private_database)
    only_ledger = run(["ledger", "check", "--ledger", "1"], DATABASE_URL=private_database)

    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert [line.split(": ")[:2] for line in lines] == [
        ["ledger 1", "debits_equal_credits"],
        ["ledger 1", "balance_equals_transfers"],
    ]
    assert str(ALICE) in lines[1]
    assert only_ledger.exit_code == 1
    assert only_ledger.stdout == result.stdout


def test_ledger_check_of_unknown_ledger_fails(private_database: str) -> None:
    result = run(["ledger", "check", "--ledger", "77"], DATABASE_URL=private_database)

    assert result.exit_code == 1
    assert result.stderr == "coalition: error: ledger 77 does not exist\n"


def test_migrate_down_and_up(private_database: str) -> None:
    down = run(["migrate", "--downgrade", "base"], DATABASE_URL=private_database)
    assert down.exit_code == 0, down.output
    assert sql(private_database, "SELECT to_regclass('transfers')") is None

    up = run(["migrate"], DATABASE_URL=private_database)
    assert up.exit_code == 0, up.output
    assert sql(private_database, "SELECT to_regclass('transfers')") == "transfers"
    head = ScriptDirectory.from_config(alembic_config(private_database)).get_current_head()
    assert sql(private_database, "SELECT version_num FROM alembic_version") == head


def test_serve_starts_workers_that_answer(private_database: str, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    env |= {"DATABASE_URL": private_database, "COALITION_DATA_DIR": str(tmp_path)}
    command = [str(Path(sys.executable).with_name("coalition")), "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--demo"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(server, base)

        assert server.stdout is not None
        lines = [server.stdout.readline().strip() for _ in range(8)]
        assert lines[0].startswith("demo: ledger 1 'demo-points'")
        assert lines[1].startswith("demo: program 'demo-shop' loaded")
        assert lines[2] == (
            f"Coalition API: {base} (interactive docs: http://127.0.0.1:{port}/schema)"
        )
        exports = shell_exports(lines)
        token, member_token = exports["ADMIN_TOKEN"], exports["MEMBER_TOKEN"]

        # The workers got the resolved database and the generated token.
        totals = httpx.get(
            f"{base}/ledger/ledgers/1/totals", headers={"Authorization": f"Bearer {token}"}
        )
        assert totals.status_code == 200
        assert totals.json()["accounts"] == 5
        assert httpx.get(f"{base}/ledger/ledgers/1/totals").status_code == 401
        # The demo member can use the member API with the printed token.
        balance = httpx.get(
            f"{base}/me/balance", headers={"Authorization": f"Bearer {member_token}"}
        )
        assert balance.status_code == 200, balance.text
        assert balance.json()["available"] > 0
        # The worker's schedule file appears once the worker has started
        # (after its banner and start-up warnings, when it shows them).
        wait_for(lambda: any(tmp_path.glob("celerybeat-schedule*")), within=60)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert server.returncode == 0
    rest = server.stdout.read()
    # A quiet start: neither Celery's banner and warnings nor Granian's lines.
    for noise in ("celery@", "SecurityWarning", "superuser", "No hostname", "[INFO]"):
        assert noise not in rest, rest


def test_api_keys_are_issued_once_and_revoked(private_database: str) -> None:
    created = run(
        ["api-key", "create", "pos", "--scope", "purchases:write"], DATABASE_URL=private_database
    )
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("ck_")
    stored = sql(private_database, "SELECT encode(secret_sha256, 'hex') FROM api_keys")
    assert isinstance(stored, str)
    assert key.split("_", 2)[2] not in stored  # only the hash is kept
    bad = run(["api-key", "create", "x", "--scope", "root"], DATABASE_URL=private_database)
    assert bad.exit_code == 2
    assert "unknown scopes: root" in bad.stderr
    assert run(["api-key", "revoke", "pos"], DATABASE_URL=private_database).exit_code == 0
    again = run(["api-key", "revoke", "pos"], DATABASE_URL=private_database)
    assert again.exit_code == 1
    nowhere = run(
        ["api-key", "create", "shop", "--scope", "programs:read", "--program", "no-such-shop"],
        DATABASE_URL=private_database,
    )
    assert nowhere.exit_code == 2
    assert "program: no program 'no-such-shop'" in nowhere.stderr
    # The console's changes are audited as the API's are; refusals write nothing.
    trail = sql(
        private_database,
        "SELECT string_agg(actor || ' ' || action || ' ' || subject, ', ' ORDER BY occurred_at)"
        " FROM audit_events WHERE action LIKE 'api-key.%'",
    )
    assert trail == "console api-key.issue api-key:pos, console api-key.revoke api-key:pos"


def shell_exports(lines: list[str]) -> dict[str, str]:
    """The ``export NAME=value`` lines, as a shell would read them."""
    found = [re.fullmatch(r"export ([A-Z_]+)=(\S+)", line) for line in lines]
    return {match[1]: match[2] for match in found if match}


def wait_for(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@contextlib.contextmanager
def serving(
    database: str, data_dir: Path, *args: str, lines: int, **settings: str
) -> Iterator[tuple[str, list[str]]]:
    """``coalition serve --no-worker`` on ``database``: its base URL and the
    first ``lines`` lines it printed."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
    env |= {"DATABASE_URL": database, "COALITION_DATA_DIR": str(data_dir), **settings}
    command = [str(Path(sys.executable).with_name("coalition")), "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--no-worker", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(server, base)
        assert server.stdout is not None
        yield base, [server.stdout.readline().strip() for _ in range(lines)]
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_serve_prints_tokens_that_work_after_a_restart(
    private_database: str, tmp_path: Path
) -> None:
    with serving(private_database, tmp_path, "--demo", lines=8) as (base, first):
        exports = shell_exports(first)
        assert set(exports) == {"ADMIN_TOKEN", "MEMBER_TOKEN"}
        assert first[-2:] == [
            f"export ADMIN_TOKEN={exports['ADMIN_TOKEN']}",
            f"export MEMBER_TOKEN={exports['MEMBER_TOKEN']}",
        ]
        assert f"Data folder: {tmp_path.resolve()} (" in "\n".join(first)
        assert "coalition member-token bob" in "\n".join(first)
        totals = httpx.get(
            f"{base}/ledger/ledgers/1/totals", headers=bearer(exports["ADMIN_TOKEN"])
        )
        assert totals.status_code == 200, totals.text
        balance = httpx.get(f"{base}/me/balance", headers=bearer(exports["MEMBER_TOKEN"]))
        assert balance.status_code == 200, balance.text
    kept = tmp_path / "secrets.json"
    assert kept.stat().st_mode & 0o777 == 0o600

    with serving(private_database, tmp_path, lines=4) as (base, second):
        assert shell_exports(second) == {"ADMIN_TOKEN": exports["ADMIN_TOKEN"]}
        # The tokens saved from the first start still work.
        totals = httpx.get(
            f"{base}/ledger/ledgers/1/totals", headers=bearer(exports["ADMIN_TOKEN"])
        )
        assert totals.status_code == 200, totals.text
        balance = httpx.get(f"{base}/me/balance", headers=bearer(exports["MEMBER_TOKEN"]))
        assert balance.status_code == 200, balance.text


def test_environment_settings_win_over_the_kept_secrets(
    private_database: str, tmp_path: Path
) -> None:
    kept_member_token = run(["member-token", "bob"], COALITION_DATA_DIR=str(tmp_path))
    assert kept_member_token.exit_code == 0, kept_member_token.output
    kept = msgspec.json.decode((tmp_path / "secrets.json").read_bytes())
    admin, secret = "an-operator-token-from-env", "a-member-secret-from-the-environment"
    from_env = run(
        ["member-token", "bob"], COALITION_DATA_DIR=str(tmp_path), MEMBER_JWT_SECRET=secret
    )
    assert from_env.exit_code == 0, from_env.output

    environment = {"COALITION_ADMIN_TOKEN": admin, "MEMBER_JWT_SECRET": secret}
    with serving(private_database, tmp_path, "--demo", lines=6, **environment) as (base, lines):
        exports = shell_exports(lines)
        # The operator's own token is not echoed; the member token is signed
        # with the environment's secret.
        assert set(exports) == {"MEMBER_TOKEN"}
        assert admin not in "\n".join(lines)
        jwt.decode(exports["MEMBER_TOKEN"], secret, algorithms=["HS256"], audience=AUDIENCE)
        ledgers = f"{base}/ledger/ledgers/1/totals"
        assert httpx.get(ledgers, headers=bearer(admin)).status_code == 200
        assert httpx.get(ledgers, headers=bearer(kept["admin_token"])).status_code == 401
        balance = f"{base}/me/balance"
        assert httpx.get(balance, headers=bearer(from_env.stdout.strip())).status_code == 200
        assert (
            httpx.get(balance, headers=bearer(kept_member_token.stdout.strip())).status_code == 401
        )


def test_member_token_is_signed_with_the_kept_secret(tmp_path: Path) -> None:
    first = run(["member-token", "carol", "--hours", "2"], COALITION_DATA_DIR=str(tmp_path))
    again = run(["member-token", "carol"], COALITION_DATA_DIR=str(tmp_path))

    assert first.exit_code == 0, first.output
    secret = msgspec.json.decode((tmp_path / "secrets.json").read_bytes())["member_jwt_secret"]
    claims = jwt.decode(first.stdout.strip(), secret, algorithms=["HS256"], audience=AUDIENCE)
    assert (claims["sub"], claims["program"]) == ("carol", DEMO_PROGRAM)
    assert 2 * 3600 - 60 < claims["exp"] - time.time() <= 2 * 3600
    assert jwt.decode(again.stdout.strip(), secret, algorithms=["HS256"], audience=AUDIENCE)


def test_member_token_needs_a_signing_key_of_its_own(tmp_path: Path) -> None:
    result = run(["member-token", "carol"], COALITION_DATA_DIR=str(tmp_path), MEMBER_JWT_JWKS="{}")

    assert result.exit_code == 2
    assert result.stderr.startswith("coalition: error: MEMBER_JWT_SECRET: ")


def test_a_damaged_secrets_file_is_a_setting_error(tmp_path: Path) -> None:
    (tmp_path / "secrets.json").write_text("{")

    result = run(["member-token", "carol"], COALITION_DATA_DIR=str(tmp_path))

    assert result.exit_code == 2
    assert "secrets.json" in result.stderr
    assert "remove the file" in result.stderr
