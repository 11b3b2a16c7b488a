"""The posting functions' result numbers are the enums' positions.

``ledger_create_transfers`` and ``ledger_create_accounts`` return smallints
that ``ledger.schemas`` reads as positions in ``CreateTransferResult`` and
``CreateAccountResult``. Each function declares every result once, as a
constant named like the enum member, and uses only the names: these tests
read the current files under ``ledger/sql`` (the texts a database at head
runs, as ``tests/test_migrations.py`` checks) and hold the two together.
"""

from __future__ import annotations

import enum
import re
from importlib.resources import files

import pytest

from ledger.schemas import CreateAccountResult, CreateTransferResult

FUNCTIONS = [
    ("ledger_create_transfers.sql", CreateTransferResult),
    ("ledger_create_accounts.sql", CreateAccountResult),
]

_DECLARATION = re.compile(r"^\s*result_(\w+)\s+constant\s+smallint\s*:=\s*(-?\d+)\s*;", re.M)

#: A result written as a number where its name belongs: assigned, compared,
#: or chosen by a CASE.
_BARE_RESULT = [
    re.compile(r"\b(code|r\[\w+\])\s*:=\s*\d"),
    re.compile(r"\b(code|res|r\[\w+\])\s*(=|<>|>)\s*\d"),
    re.compile(r"\b(code|res)\s+(NOT\s+)?IN\s*\(\s*\d", re.I),
    re.compile(r"\b(THEN|ELSE)\s+\d"),
]


def _source(name: str) -> str:
    return files("ledger").joinpath("sql", name).read_text(encoding="utf-8")


@pytest.mark.parametrize(("name", "results"), FUNCTIONS)
def test_declared_numbers_are_the_enum_positions(name: str, results: type[enum.Enum]) -> None:
    declared = {f"result_{m[1]}": int(m[2]) for m in _DECLARATION.finditer(_source(name))}
    expected = {f"result_{member.name.lower()}": i for i, member in enumerate(results)}
    assert declared == expected


@pytest.mark.parametrize(("name", "results"), FUNCTIONS)
def test_results_are_used_by_name_only(name: str, results: type[enum.Enum]) -> None:
    bare = []
    for number, line in enumerate(_source(name).splitlines(), start=1):
        code = line.split("--", 1)[0]
        # The status of a pending transfer (0 open, 1 posted, 2 voided), read
        # from the flags of the transfer that resolved it, is no result.
        if _DECLARATION.match(code) or "res.flags" in code:
            continue
        if any(pattern.search(code) for pattern in _BARE_RESULT):
            bare.append(f"{name}:{number}: {line.strip()}")
    assert not bare, "results written as numbers:\n" + "\n".join(bare)
