"""``coalition``: serve the API, migrate the database, check the ledger, load a
demo, run a job once.

Errors end in one line on stderr: exit code 2 for bad settings, 1 for
failures at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import asyncpg
import click
import msgspec

from api.cli_runtime import EXIT_BAD_SETTINGS, EXIT_FAILURE
from api.cli_runtime import fail as _fail
from api.cli_runtime import plain_errors as _plain_errors
from api.cli_runtime import with_ledger as _with_ledger
from api.cli_runtime import with_pool as _with_pool
from api.database import database_url, downgrade, migrate, sqlalchemy_url
from api.demo import DEMO_PROGRAM, DemoReport, RewardsDemoReport, load_demo, load_rewards_demo
from api.finance_cli import finance_group
from api.rewards_cli import rewards_group
from api.settings import (
    KEPT_SECRETS_FILE,
    Settings,
    SettingsError,
    load_settings,
    with_kept_secrets,
)
from ledger import Ledger, Violation, check_invariants

T = TypeVar("T")

#: Where ``serve`` points its workers (see ``api.asgi``).
ASGI_FACTORY = "api.asgi:app_from_environment"

#: How long the member tokens the command line prints are valid.
MEMBER_TOKEN_HOURS = 24


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="coalition")
def main() -> None:
    """Coalition: loyalty points on a double-entry points ledger.

    Settings come from environment variables (DATABASE_URL, COALITION_*). With
    no DATABASE_URL, an embedded PostgreSQL runs in COALITION_DATA_DIR.
    """


@main.command()
@click.option("--host", help="Address to listen on [default: COALITION_HOST or 127.0.0.1].")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    help="Port to listen on [default: COALITION_PORT or 8000].",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Worker processes [default: COALITION_WORKERS or 1].",
)
@click.option("--demo", is_flag=True, help="Load the demo ledger and program before serving.")
@click.option(
    "--worker/--no-worker",
    "with_worker",
    default=True,
    show_default=True,
    help="Also run the background worker (with its schedule) beside the server.",
)
def serve(
    host: str | None, port: int | None, workers: int | None, demo: bool, with_worker: bool
) -> None:
    """Migrate the database and serve the HTTP API.

    Prints where it listens, where its data lives and, as shell ``export``
    lines, the tokens to call it with. Without COALITION_ADMIN_TOKEN (and
    without MEMBER_JWT_SECRET or MEMBER_JWT_JWKS) it uses secrets made once
    and kept in the data folder, so saved tokens work after a restart.
    """
    with _plain_errors():
        configured = load_settings()
        settings = with_kept_secrets(
            msgspec.structs.replace(
                configured,
                host=host or configured.host,
                port=port or configured.port,
                workers=workers or configured.workers,
            )
        )
        with database_url(settings) as url:
            migrate(url)
            members = _echo_demo(asyncio.run(_load_demo(url))) if demo else []
            # Workers build the app from the environment (api.asgi).
            os.environ["DATABASE_URL"] = url
            if settings.admin_token:
                os.environ["COALITION_ADMIN_TOKEN"] = settings.admin_token
            if settings.member_jwt_secret:
                os.environ["MEMBER_JWT_SECRET"] = settings.member_jwt_secret
            if settings.signing_secret:
                os.environ["COALITION_SIGNING_SECRET"] = settings.signing_secret
            _echo_start(configured, settings, members, with_worker)
            with _background_worker(with_worker):
                _run_server(settings)


def _echo_start(
    configured: Settings, settings: Settings, members: list[str], with_worker: bool
) -> None:
    """A few lines: the address, the data, then the tokens as ``export``
    lines, last, so that they can be copied into a shell together."""
    from api.app import DOCS_PATH

    base = f"http://{settings.host}:{settings.port}"
    click.echo(f"Coalition API: {base} (interactive docs: {base}{DOCS_PATH})")
    kept = [] if configured.database_url else ["embedded PostgreSQL"]
    if with_worker and not settings.broker_url:
        kept.append("worker queue")
    secret_kept = settings.member_jwt_secret != configured.member_jwt_secret
    if configured.admin_token is None or secret_kept:
        kept.append(f"tokens' secrets in {KEPT_SECRETS_FILE}")
    if configured.database_url:
        click.echo(f"Database: {_without_password(configured.database_url)}")
    if kept:
        click.echo(f"Data folder: {Path(settings.data_dir).resolve()} ({', '.join(kept)})")
    exports = []
    # A token set in the environment is the operator's own: not echoed.
    if configured.admin_token is None:
        exports.append(f"export ADMIN_TOKEN={settings.admin_token}")
    if settings.member_jwt_secret and members:
        first, others = members[0], members[1:]
        exports.append(f"export MEMBER_TOKEN={member_token(settings, DEMO_PROGRAM, first)}")
        another = f"; another member's: coalition member-token {others[0]}" if others else ""
        click.echo(f"Member token: demo member {first}'s, for {MEMBER_TOKEN_HOURS} h{another}")
    for line in exports:
        click.echo(line)


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def member_token(
    settings: Settings, program: str, member: str, hours: int = MEMBER_TOKEN_HOURS
) -> str:
    """A member token signed with the development key (HS256)."""
    import jwt

    if not settings.member_jwt_secret:
        raise SettingsError("MEMBER_JWT_SECRET: member tokens come from the identity provider")
    claims: dict[str, object] = {
        "sub": member,
        "program": program,
        "aud": settings.member_jwt_audience,
        "exp": int(time.time()) + hours * 3600,
    }
    if settings.member_jwt_issuer:
        claims["iss"] = settings.member_jwt_issuer
    return jwt.encode(claims, settings.member_jwt_secret, algorithm="HS256")


@main.command("member-token")
@click.argument("member")
@click.option("--program", default=DEMO_PROGRAM, show_default=True, help="The member's program.")
@click.option(
    "--hours",
    type=click.IntRange(1, 24 * 365),
    default=MEMBER_TOKEN_HOURS,
    show_default=True,
    help="How long the token is valid.",
)
def member_token_command(member: str, program: str, hours: int) -> None:
    """Print a member token for the member API (development).

    Signed with MEMBER_JWT_SECRET or, without it, with the secret ``serve``
    keeps in the data folder: e.g. export MEMBER_TOKEN=$(coalition member-token bob).
    """
    with _plain_errors():
        settings = with_kept_secrets(load_settings())
        click.echo(member_token(settings, program, member, hours))


@contextlib.contextmanager
def _background_worker(enabled: bool) -> Iterator[None]:
    """``coalition worker`` as a child process, on the same database and broker."""
    if not enabled:
        yield
        return
    # The worker logs every task at INFO; beside the server only problems show.
    environment = {**os.environ, "COALITION_LOG_LEVEL": "warning"}
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "worker", "--quiet"], env=environment
    )
    try:
        yield
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def _run_server(settings: Settings) -> None:
    from granian import Granian
    from granian.constants import Interfaces
    from granian.log import LogLevels

    server = Granian(
        ASGI_FACTORY,
        factory=True,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        # Its start-up lines at INFO repeat what ``serve`` has printed.
        log_level=LogLevels("warning" if settings.log_level == "info" else settings.log_level),
    )
    server.serve()


@main.command()
@click.option(
    "--beat/--no-beat",
    default=True,
    show_default=True,
    help="Also run the schedule of periodic jobs in this worker.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes.",
)
@click.option(
    "--quiet",
    is_flag=True,
    help="No start-up banner, nor the warning about running as root (as serve runs it).",
)
def worker(beat: bool, concurrency: int, quiet: bool) -> None:
    """Run the background worker (Celery): settling earnings, sweeping holds."""
    with _plain_errors():
        settings = load_settings()
        with database_url(settings) as url:
            migrate(url)
            from api.worker import create_celery

            celery_app = create_celery(msgspec.structs.replace(settings, database_url=url))
            argv = [
                "worker",
                f"--concurrency={concurrency}",
                f"--loglevel={settings.log_level.upper()}",
            ]
            if beat:
                beat_file = Path(settings.data_dir).resolve() / "celerybeat-schedule"
                argv += ["--beat", f"--schedule={beat_file}"]
            if quiet:
                # An option of the celery command, before its sub-command.
                argv.insert(0, "--quiet")
                # Celery has no setting for it: it warns on every start as
                # root, which a container or a development machine often is,
                # and still refuses the case that matters (pickled messages
                # as root; these tasks accept only JSON).
                from celery.exceptions import SecurityWarning

                warnings.filterwarnings("ignore", category=SecurityWarning)
            celery_app.worker_main(argv)


@main.group("api-key")
def api_key_group() -> None:
    """Issue and revoke API keys of the operator API."""


@api_key_group.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="A scope to grant (repeat the option), e.g. purchases:write.",
)
@click.option(
    "--program",
    default=None,
    help="The slug of the one program the key may act in [default: every program].",
)
def api_key_create(name: str, scopes: tuple[str, ...], program: str | None) -> None:
    """Issue a key; it is printed once and stored only hashed."""
    from api.access import CONSOLE, KeyRefused, issue_key

    with _plain_errors():
        settings = load_settings()
        with database_url(settings) as url:
            try:
                issued = asyncio.run(
                    _with_pool(
                        url,
                        lambda pool: issue_key(
                            pool, name, list(scopes), program, principal=CONSOLE
                        ),
                    )
                )
            except KeyRefused as error:
                _fail(f"api-key: {error}", EXIT_BAD_SETTINGS)
    click.echo(issued.key)


@api_key_group.command("revoke")
@click.argument("name")
def api_key_revoke(name: str) -> None:
    """Revoke the key with this name."""
    from api.access import CONSOLE, revoke_key

    with _plain_errors():
        settings = load_settings()
        with database_url(settings) as url:
            revoked = asyncio.run(
                _with_pool(url, lambda pool: revoke_key(pool, name, principal=CONSOLE))
            )
    if not revoked:
        _fail(f"api-key: no active key named {name!r}", EXIT_FAILURE)
    click.echo(f"api-key: {name} revoked")


@main.command("migrate")
@click.option("--revision", default="head", show_default=True, help="Revision to upgrade to.")
@click.option(
    "--downgrade", "downgrade_to", metavar="REV", help="Downgrade to REV instead (e.g. base)."
)
def migrate_command(revision: str, downgrade_to: str | None) -> None:
    """Bring the database schema to a revision."""
    with _plain_errors():
        settings = load_settings()
        with database_url(settings) as url:
            if downgrade_to is not None:
                downgrade(url, downgrade_to)
                click.echo(f"migrate: downgraded to {downgrade_to}")
            else:
                migrate(url, revision)
                click.echo(f"migrate: upgraded to {revision}")


@main.group("ledger")
def ledger_group() -> None:
    """Inspect the points ledger."""


@ledger_group.command("check")
@click.option(
    "--ledger", "ledger_id", type=click.IntRange(1, 2**31 - 1), help="Check only this ledger."
)
def ledger_check(ledger_id: int | None) -> None:
    """Check the ledger's invariants; exit 1 if any is broken."""
    with _plain_errors():
        settings = load_settings()
        with database_url(settings) as url:
            report = asyncio.run(check_ledger(url, ledger_id))
        if ledger_id is not None and not report.ledgers:
            _fail(f"ledger {ledger_id} does not exist", EXIT_FAILURE)
    for violation in report.violations:
        where = f"ledger {violation.ledger}" if violation.ledger is not None else "ledger ?"
        click.echo(f"{where}: {violation.invariant}: {violation.detail}")
    if report.violations:
        raise SystemExit(EXIT_FAILURE)
    click.echo(
        f"ledger check: all invariants hold ({report.ledgers} ledgers,"
        f" {report.accounts} accounts, {report.transfers} transfers)"
    )


@ledger_group.command("expire")
def ledger_expire() -> None:
    """Void every pending transfer whose timeout has passed (the sweeper, once)."""
    from api.modules import run_once

    with _plain_errors():
        settings = load_settings()
        with database_url(settings) as url:
            voided = asyncio.run(run_once("expire-pending-transfers", url))
    click.echo(f"ledger expire: {voided} pending transfers voided")


@ledger_group.command("derive-lots")
def ledger_derive_lots() -> None:
    """Derive the lots of lot accounts that have none from their history (once)."""
    from ledger.lots import DerivedLots, derive_lots

    async def derive(pool: asyncpg.Pool) -> DerivedLots:
        async with pool.acquire() as connection:
            return await derive_lots(connection)

    with _plain_errors():
        settings = load_settings()
        with database_url(settings) as url:
            derived = asyncio.run(_with_pool(url, derive))
    if not derived.accounts:
        click.echo("ledger derive-lots: every lot account has its lots; nothing to do")
        return
    click.echo(
        f"ledger derive-lots: {derived.accounts} accounts derived from their history:"
        f" {derived.lots} lots, {derived.movements} lot movements"
    )


@main.group("signing-keys")
def signing_keys_group() -> None:
    """The keys that sign partner access tokens (sealed with COALITION_SIGNING_SECRET)."""


@signing_keys_group.command("list")
def signing_keys_list() -> None:
    """List the signing keys, newest first: kid, status, dates."""
    from api.access import CONSOLE
    from partners.signing_keys import list_signing_keys

    with _plain_errors():
        settings = load_settings()
        with database_url(settings) as url:

            async def listed(pool: asyncpg.Pool) -> list[str]:
                async with pool.acquire() as connection:
                    keys = await list_signing_keys(
                        connection, principal=CONSOLE, now=datetime.now(UTC)
                    )
                return [
                    f"{key.kid}  {key.status:<9}  created {key.created_at:%Y-%m-%d %H:%M}"
                    + (f"  retires {key.retire_at:%Y-%m-%d %H:%M}" if key.retire_at else "")
                    for key in keys
                ]

            lines = asyncio.run(_with_pool(url, listed))
    for line in lines or ["signing-keys: none yet (the first token makes one)"]:
        click.echo(line)


@signing_keys_group.command("rotate")
def signing_keys_rotate() -> None:
    """Make a new current key; the old one's tokens verify until they expire.

    Needs COALITION_SIGNING_SECRET (or the one ``serve`` keeps in the data
    folder). Servers sign with the new key as soon as the rotation commits.
    """
    from api.access import CONSOLE
    from partners.signing_keys import KeySealer, rotate_signing_key

    with _plain_errors():
        settings = with_kept_secrets(load_settings())
        if not settings.signing_secret:
            _fail("signing-keys: COALITION_SIGNING_SECRET is not set", EXIT_BAD_SETTINGS)
        try:
            sealer = KeySealer.from_setting(settings.signing_secret)
        except ValueError as error:
            _fail(f"COALITION_SIGNING_SECRET: {error}", EXIT_BAD_SETTINGS)
        with database_url(settings) as url:

            async def rotated(pool: asyncpg.Pool) -> str:
                async with pool.acquire() as connection:
                    key = await rotate_signing_key(
                        connection, sealer, principal=CONSOLE, now=datetime.now(UTC)
                    )
                return key.kid

            kid = asyncio.run(_with_pool(url, rotated))
    click.echo(f"signing-keys: {kid} is the current key")


@main.group("jobs")
def jobs_group() -> None:
    """The modules' jobs, which the worker runs on its schedule."""


@jobs_group.command("list")
def jobs_list() -> None:
    """List every job: its name, how often the worker runs it, what it does."""
    from api.modules import JOBS

    rows = [(name, f"every {job.every:g} s", job.summary) for name, job in sorted(JOBS.items())]
    widths = [max(len(row[n]) for row in rows) for n in (0, 1)]
    for name, every, summary in rows:
        click.echo(f"{name:<{widths[0]}}  {every:<{widths[1]}}  {summary}")


@jobs_group.command("run")
@click.argument("name")
@click.option(
    "--now",
    metavar="ISO",
    help="The clock the job reads what is due by, with its offset"
    " (e.g. 2026-12-01T00:00:00+00:00) [default: now].",
)
def jobs_run(name: str, now: str | None) -> None:
    """Run the job NAME once, now (or as of --now), and print how many
    things it did."""
    from api.modules import UnknownJob, job, run_once

    with _plain_errors():
        try:
            job(name)
        except UnknownJob as error:
            _fail(f"jobs: {error}", EXIT_BAD_SETTINGS)
        clock = _moment(now) if now is not None else datetime.now(UTC)
        settings = load_settings()
        with database_url(settings) as url:
            done = asyncio.run(run_once(name, url, now=clock))
    click.echo(f"jobs run: {name} did {done} (as of {clock.isoformat()})")


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"--now: {text!r} is not an ISO 8601 date and time", EXIT_BAD_SETTINGS)
    if moment.utcoffset() is None:
        _fail(f"--now: {text!r} has no offset (e.g. +00:00 or Z)", EXIT_BAD_SETTINGS)
    return moment


@main.command()
def demo() -> None:
    """Load the demo (idempotent): a ledger, and a program with tiers, rules,
    rewards and members."""
    with _plain_errors():
        settings = load_settings()
        with database_url(settings) as url:
            migrate(url)
            _echo_demo(asyncio.run(_load_demo(url)))


class LedgerReport(msgspec.Struct, kw_only=True, frozen=True):
    violations: list[Violation]
    ledgers: int
    accounts: int
    transfers: int


async def check_ledger(url: str, ledger_id: int | None) -> LedgerReport:
    return await _with_ledger(url, lambda ledger: _report(ledger, ledger_id))


async def _report(ledger: Ledger, ledger_id: int | None) -> LedgerReport:
    violations = await check_invariants(ledger.pool, ledger_id)
    totals = await ledger.totals(ledger_id)
    transfers = await ledger.count_transfers(ledger_id)
    return LedgerReport(
        violations=violations,
        ledgers=len(totals),
        accounts=sum(t.accounts for t in totals),
        transfers=int(transfers),
    )


async def _load_demo(url: str) -> tuple[DemoReport, RewardsDemoReport]:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    async def load(ledger: Ledger) -> tuple[DemoReport, RewardsDemoReport]:
        engine = create_async_engine(sqlalchemy_url(url))
        try:
            report = await load_demo(ledger)
            async with AsyncSession(engine, expire_on_commit=False) as session, session.begin():
                rewards = await load_rewards_demo(session, ledger, datetime.now(UTC))
            return report, rewards
        finally:
            await engine.dispose()

    return await _with_ledger(url, load)


def _echo_demo(reports: tuple[DemoReport, RewardsDemoReport]) -> list[str]:
    """Print what the demo load did; answer the demo's members."""
    report, rewards = reports
    click.echo(
        f"demo: ledger {report.ledger.id} {report.ledger.name!r};"
        f" accounts {_counts(report.accounts)}; transfers {_counts(report.transfers)}"
    )
    state = "loaded" if rewards.created else "already there"
    click.echo(f"demo: program {rewards.program!r} {state}; members {', '.join(rewards.members)}")
    return list(rewards.members)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {result}" for result, n in sorted(counts.items()))


main.add_command(finance_group)
main.add_command(rewards_group)

if __name__ == "__main__":
    main()
