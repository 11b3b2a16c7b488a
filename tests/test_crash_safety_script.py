"""``bench/crash_safety.py`` at a tiny size: one SIGKILL of the server and one
crash restart of PostgreSQL, and nothing lost or doubled (a smoke test of
the script; the real run is the script at its default size)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(
    r"^operations (\d+), kills (\d+), restarts (\d+), retries \d+, lost (\d+),"
    r" duplicated (\d+), unexpected (\d+), ledger check ok$",
    re.MULTILINE,
)


def test_crash_safety_script_loses_and_doubles_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "crash_safety.py"),
            *("--transfers", "500", "--kills", "1", "--restarts", "1"),
            *("--ledgers", "2", "--members", "50", "--seed", "7"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = LINE.search(result.stdout)
    assert found, result.stdout + result.stderr
    operations, kills, restarts, lost, duplicated, unexpected = map(int, found.groups())
    assert (operations, kills, restarts) == (500, 1, 1)
    assert (lost, duplicated, unexpected) == (0, 0, 0)
