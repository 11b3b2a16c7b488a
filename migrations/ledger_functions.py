"""The ledger's SQL functions and its view, as the migrations apply them.

Each one's text is a file under ``ledger/sql/`` (ledger/sql/README.md
explains the layout). A migration names the file it applies together with
the SHA-256 of the text it was released with: were that file edited later, a
new database upgraded to head would end with other definitions than one that
was upgraded step by step, so the migration refuses to run instead.
"""

from __future__ import annotations

import hashlib
from importlib.resources import files


def ledger_function(path: str, sha256: str) -> str:
    """The ``CREATE OR REPLACE FUNCTION`` (or ``VIEW``) statement in
    ``ledger/sql/<path>``, provided its text is still the one ``sha256`` pins."""
    # Text mode reads any line ending as "\n": the pin holds on every checkout.
    text = files("ledger").joinpath("sql", *path.split("/")).read_text(encoding="utf-8")
    found = hashlib.sha256(text.encode()).hexdigest()
    if found != sha256:
        raise RuntimeError(
            f"ledger/sql/{path} is not the text its migration was released with "
            f"(sha256 {found}, pinned {sha256}). A released migration's definition must "
            "not change: keep that text under ledger/sql/history/<revision>/ for the "
            "migrations that apply it, and put the change in a new migration "
            "(ledger/sql/README.md)."
        )
    return text
