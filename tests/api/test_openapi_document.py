"""The OpenAPI document is the API's reference: every property of every
schema and every parameter says what it means, and every bound is the one the
server enforces, written exactly."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from api.app import create_app
from api.settings import Settings
from ledger.bounds import BIGINT_MAX

#: Beyond this a float no longer holds every integer: a bound written as one
#: may not be the bound the server enforces (float(2**63 - 1) is 2**63).
FLOAT_EXACT_MAX = 2**53
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


@cache
def _document() -> dict[str, Any]:
    app = create_app(Settings(admin_token="x" * 16), database_url="postgresql://unused")
    document: dict[str, Any] = app.openapi_schema.to_schema()
    return document


def _schemas(node: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema object nested in ``node``, with where it is."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            yield from _schemas(value, f"{where}.{key}")
    elif isinstance(node, list):
        for n, value in enumerate(node):
            yield from _schemas(value, f"{where}[{n}]")


def test_every_schema_property_is_described() -> None:
    undescribed = [
        f"{name}.{field}"
        for name, schema in sorted(_document()["components"]["schemas"].items())
        for field, definition in sorted(schema.get("properties", {}).items())
        if not definition.get("description", "").strip()
    ]
    assert not undescribed, f"{len(undescribed)} properties without a description:\n" + "\n".join(
        undescribed
    )


def test_every_parameter_is_described() -> None:
    undescribed = [
        f"{method.upper()} {path} {parameter['in']} {parameter['name']}"
        for path, item in sorted(_document()["paths"].items())
        for method, operation in sorted(item.items())
        for parameter in operation.get("parameters", [])
        if not parameter.get("description", "").strip()
    ]
    assert not undescribed, f"{len(undescribed)} parameters without a description:\n" + "\n".join(
        undescribed
    )


def test_flags_are_described_bit_by_bit() -> None:
    """Each bit by its value ("1 ...", "2 ...") up to the largest one allowed."""
    vague = []
    for name, schema in sorted(_document()["components"]["schemas"].items()):
        flags = schema.get("properties", {}).get("flags")
        if flags is None:
            continue
        text = flags.get("description", "")
        bits = [1 << n for n in range(int(flags.get("maximum", 3)).bit_length())]
        if missing := [bit for bit in bits if f"{bit} " not in text]:
            vague.append(f"{name}.flags: no bit {missing}")
    assert not vague, "\n".join(vague)


def test_integer_bounds_are_written_exactly() -> None:
    inexact = [
        f"{where}.{bound} = {schema[bound]!r}"
        for where, schema in _schemas(_document(), "")
        for bound in BOUNDS
        if isinstance(schema.get(bound), float)
        and not (schema[bound].is_integer() and abs(schema[bound]) <= FLOAT_EXACT_MAX)
    ]
    assert not inexact, "bounds a float cannot hold exactly:\n" + "\n".join(inexact)


def test_the_largest_amount_is_the_bigint_maximum() -> None:
    amount = _document()["components"]["schemas"]["Transfer"]["properties"]["amount"]
    assert type(amount["maximum"]) is int
    assert amount["maximum"] == BIGINT_MAX
