"""The ORM models against the schema the migrations build.

Alembic's autogenerate comparison of every model's table with the database
at head (the session's, migrated by ``conftest``): columns, types,
nullability, server defaults the model declares, indexes, unique and
foreign keys. Alembic does not compare CHECK constraints or triggers, nor
the predicate of a partial index: a second test has PostgreSQL render each
model index beside the migrated one.
Every table of the database either has a model or is listed in
``UNMODELLED`` with the reason; a new table must take one side.
"""

from __future__ import annotations

import importlib
import pkgutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import produce_migrations, render_python_code
from alembic.migration import MigrationContext
from sqlalchemy import Column, Connection, MetaData, Table, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateIndex

_LEDGER = (
    "the ledger's own table: written only by its SQL functions (ledger/sql) and"
    " read through ledger/, in SQL; no ORM model may reach it"
)
_SQL = "read and written by SQL statements of its use cases (asyncpg or text), no ORM model"

#: Tables with no ORM model, so nothing for the models to drift from.
UNMODELLED: dict[str, str] = {
    "ledgers": _LEDGER,
    "accounts": _LEDGER,
    "transfers": _LEDGER,
    "transfer_rejections": _LEDGER,
    "pending_expiries": _LEDGER,
    "ledger_lot_codes": _LEDGER,
    "lots": _LEDGER,
    "lot_movements": _LEDGER,
    "ledger_daily_totals": _LEDGER,
    "lot_daily_movements": _LEDGER,
    "account_class_changes": _LEDGER,
    "ledger_class_moves": _LEDGER,
    "api_keys": _SQL,
    "behaviour_events": _SQL,
    "points_purchases": _SQL,
    "rule_budgets": _SQL,
    "signing_keys": _SQL + " (partners.signing_keys, read outside any session)",
    "stripe_events": _SQL,
    "threshold_grants": _SQL,
}


def _app_packages() -> list[str]:
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    with pyproject.open("rb") as file:
        packages: list[str] = tomllib.load(file)["tool"]["importlinter"]["root_packages"]
    return packages


def model_tables() -> dict[str, Table]:
    """Every table a module of the application's packages defines, as a
    ``Table`` or as the table of a mapped class, by name."""
    found: dict[int, Table] = {}
    for root in _app_packages():
        package = importlib.import_module(root)
        names = [m.name for m in pkgutil.walk_packages(package.__path__, f"{root}.")]
        for module in [package, *(importlib.import_module(n) for n in names)]:
            for value in vars(module).values():
                table = value if isinstance(value, Table) else getattr(value, "__table__", None)
                if isinstance(table, Table):
                    found[id(table)] = table
    by_name: dict[str, Table] = {}
    for table in found.values():
        # Two models of one table could drift from each other unseen.
        assert table.name not in by_name, f"two models of the table {table.name}"
        by_name[table.name] = table
    return by_name


def _declared_defaults_only(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """Compare server defaults only where the model declares one: the
    migrations give columns defaults that models leave to Python (the ORM
    sends those values itself). ``None`` leaves the comparison to Alembic."""
    return False if metadata_default is None else None


def _drift(connection: Connection, tables: dict[str, Table]) -> tuple[str, set[str]]:
    """What a migration from the database to the models would do (empty when
    they agree), and the database's tables."""
    modelled = {id(t) for t in tables.values()}

    def include_object(
        obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if type_ != "table":
            return True
        if reflected:
            return name not in UNMODELLED
        # A metadata may hold tables of modules outside the application.
        return id(obj) in modelled

    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "compare_server_default": _declared_defaults_only,
            "include_object": include_object,
        },
    )
    metadata: list[MetaData] = list({id(t.metadata): t.metadata for t in tables.values()}.values())
    # Alembic accepts a sequence of MetaData where it is typed as one.
    script = produce_migrations(context, metadata)  # type: ignore[arg-type]
    assert script.upgrade_ops is not None
    steps = "" if script.upgrade_ops.is_empty() else render_python_code(script.upgrade_ops)
    return steps, set(inspect(connection).get_table_names())


async def test_models_match_the_migrated_schema(engine: AsyncEngine) -> None:
    tables = model_tables()
    async with engine.connect() as connection:
        steps, in_database = await connection.run_sync(_drift, tables)
    if steps:
        pytest.fail(f"the models differ from the migrations; to match the models:\n{steps}")
    # An exclusion outlives its reason when the table gets a model or goes.
    assert not set(UNMODELLED) & set(tables)
    assert set(UNMODELLED) <= in_database


def _index_differences(connection: Connection, tables: dict[str, Table]) -> list[str]:
    """Each model index built under another name and rendered by PostgreSQL
    (``pg_get_indexdef``) beside the migrated index of its name; rolled back."""
    differences = []
    definition = text("SELECT pg_get_indexdef(to_regclass(:name))")
    try:
        for table in tables.values():
            for index in table.indexes:
                name = str(index.name)
                migrated = connection.execute(definition, {"name": name}).scalar()
                ddl = str(CreateIndex(index).compile(dialect=connection.dialect))
                probe = "schema_drift_probe"
                assert ddl.count(f" {name} ON ") == 1, ddl
                connection.execute(text(ddl.replace(f" {name} ON ", f" {probe} ON ")))
                modelled = str(connection.execute(definition, {"name": probe}).scalar())
                modelled = modelled.replace(f" {probe} ON ", f" {name} ON ")
                connection.execute(text(f"DROP INDEX {probe}"))
                if modelled != migrated:
                    differences.append(f"model: {modelled}\ndatabase: {migrated}")
    finally:
        connection.rollback()
    return differences


async def test_model_indexes_are_the_migrated_ones(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        differences = await connection.run_sync(_index_differences, model_tables())
    assert not differences, "\n".join(differences)
