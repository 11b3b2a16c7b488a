"""The ledger keeps its tables to itself: no SQL outside ``ledger/`` (and the
migrations) names them. Other packages read through ``Ledger``'s methods or
the ledger's view (``ledger.reads.ACCOUNT_BALANCES``).

The import contracts cannot see SQL, so this test reads every string
literal of the domain and API packages (docstrings aside) as SQL would.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.reads import TABLES

ROOT = Path(__file__).resolve().parents[1]
#: Every package but the ledger itself (bench/ keeps bare baselines and a
#: crash harness that count the ledger's rows on purpose).
CHECKED = ("api", "core", "rewards", "partners", "finance")

_NAMES = "|".join(sorted(TABLES))
#: A ledger table where SQL names a relation, or a ledger sequence anywhere.
_SQL = re.compile(
    rf"\b(?:from|join|into|update|table|truncate|copy|lock)\s+(?:only\s+)?"
    rf"(?:public\.)?\"?({_NAMES})\b"
    rf"|\b(transfer_timestamp_seq|account_timestamp_seq)\b",
    re.IGNORECASE,
)
#: Calls whose first argument is a table's name (SQLAlchemy, asyncpg's COPY).
_TABLE_CALLS = {"Table", "table", "copy_records_to_table", "copy_to_table", "copy_from_table"}


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Each string literal, an f-string's literal parts joined."""
    skip = _docstrings(tree)
    parts_of_fstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            pieces = []
            for value in node.values:
                parts_of_fstrings.add(id(value))
                pieces.append(value.value if isinstance(value, ast.Constant) else " ? ")
            yield node.lineno, "".join(str(p) for p in pieces)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skip | parts_of_fstrings
        ):
            yield node.lineno, node.value


def _table_names(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Table names given to an ORM or to COPY."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name in _TABLE_CALLS and isinstance(first, ast.Constant):
                yield node.lineno, str(first.value)
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and any(isinstance(t, ast.Name) and t.id == "__tablename__" for t in node.targets)
        ):
            yield node.lineno, str(node.value.value)


def ledger_tables_named(source: str) -> list[tuple[int, str]]:
    """(line, table) for each place ``source`` names a ledger table."""
    tree = ast.parse(source)
    found = []
    for line, text in _strings(tree):
        found += [(line, next(g for g in m.groups() if g)) for m in _SQL.finditer(text)]
    found += [(line, name) for line, name in _table_names(tree) if name in TABLES]
    return sorted(found)


def _sources() -> Iterator[Path]:
    for package in CHECKED:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_no_package_outside_the_ledger_names_its_tables() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} names {table}"
        for path in _sources()
        for line, table in ledger_tables_named(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], (
        "read the ledger through Ledger's methods or its view ledger.reads.ACCOUNT_BALANCES:\n"
        + "\n".join(offenders)
    )


@pytest.mark.parametrize(
    "source",
    [
        'Q = """SELECT w.credits_posted FROM members m\nJOIN accounts w ON w.id = m.wallet"""',
        "q = f'select * from {schema}.x join transfers t using (id)'",
        "conn.execute('INSERT INTO transfer_rejections VALUES ($1)')",
        "await c.fetch(\"SELECT nextval('transfer_timestamp_seq')\")",
        "await c.copy_records_to_table('accounts', records=rows)",
        "t = Table('pending_expiries', metadata)",
        "class A(Base):\n    __tablename__ = 'ledgers'",
        "q = 'SELECT count(*) FROM public.\"transfers\"'",
    ],
)
def test_catches_each_way_of_naming_a_table(source: str) -> None:
    assert ledger_tables_named(source) != []


@pytest.mark.parametrize(
    "source",
    [
        'def f():\n    """Points move from accounts to accounts."""',
        "q = f'SELECT w.spendable FROM members m JOIN {ACCOUNT_BALANCES} w ON w.id = m.wallet'",
        "q = 'SELECT * FROM ledger_account_balances WHERE id = $1'",
        "message = 'transfers[0].amount: expected an integer'",
        "await ledger.create_transfers_within(connection, transfers)",
    ],
)
def test_lets_the_ledgers_view_and_prose_through(source: str) -> None:
    assert ledger_tables_named(source) == []
