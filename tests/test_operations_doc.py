"""docs/operations.md lists every setting the environment can give and every
scheduled job: an operator reads them there, not in the code."""

from __future__ import annotations

import re
from pathlib import Path

from api.modules import JOBS
from api.settings import ENVIRONMENT

DOC = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()


def _first_cells() -> set[str]:
    """The names in backticks in a table row's first cell (``| `A`, `B` | ...``)."""
    cells = re.findall(r"^\| ([^|]+) \|", DOC, flags=re.MULTILINE)
    return {name for cell in cells for name in re.findall(r"`([^`]+)`", cell)}


def test_every_environment_variable_is_documented() -> None:
    missing = sorted(set(ENVIRONMENT) - _first_cells())
    assert not missing, f"settings missing from docs/operations.md: {missing}"


def test_every_job_is_documented() -> None:
    missing = sorted(set(JOBS) - _first_cells())
    assert not missing, f"jobs missing from docs/operations.md: {missing}"
