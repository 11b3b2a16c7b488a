"""What the bench scripts share: a free port, the servers they start, their
database, their command line.

The scripts run as ``python bench/<script>.py``, which puts this folder, not
the repository's root, first on ``sys.path``. They import this module as
``common`` before anything of the project's, and it puts the root there
too, so that ``api``, ``ledger`` and ``rewards`` are the checkout's own even
under an interpreter where the project is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from api.database import fresh_database, postgres_server  # noqa: E402


def argument_parser(description: str | None) -> argparse.ArgumentParser:
    """A parser whose ``--help`` shows the script's docstring as written."""
    return argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def venv_command(name: str) -> str:
    """The console script ``name`` (``coalition``, ``granian``) installed
    beside the interpreter running the bench."""
    return str(Path(sys.executable).with_name(name))


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """A database of the run's own, dropped at the end, on ``DATABASE_URL``'s
    server (an embedded PostgreSQL without it)."""
    with (
        postgres_server("DATABASE_URL", prefix="coalition-bench-") as server_url,
        fresh_database(server_url, prefix="coalition_bench") as url,
    ):
        yield url


class ServerDidNotStart(RuntimeError):
    pass


@contextlib.contextmanager
def serving(
    command: list[str], env: dict[str, str], port: int, *, health: str | None = None
) -> Iterator[str]:
    """``command``, a server listening on ``port``, in a subprocess for the
    block; its base URL once it answers ``health`` (a path) with 200, or
    without one, a second after the port takes connections."""
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not _answers(base, port, health):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ServerDidNotStart(f"{command[0]} did not start")
            time.sleep(0.2)
        if health is None:
            # The port opens before every worker has loaded the app.
            time.sleep(1.0)
        yield base
    finally:
        process.terminate()
        process.wait(20)


def _answers(base: str, port: int, health: str | None) -> bool:
    if health is None:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    try:
        with urllib.request.urlopen(base + health, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:  # refused, reset, timed out, or an HTTP error status
        return False
