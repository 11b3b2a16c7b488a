"""Segments against a brute force: on a generated program, each kind of
criterion (tier, recency, frequency, monetary value, RFM scores, partner,
cohort, custom filters) selects exactly the members the Python model of its
meaning selects; saved segments counted (one query) and exported (CSV and
Parquet read back); bad definitions refused with nothing written."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.audit import audit_events
from core.exports import ExportFormat, export_chunks
from core.principal import system
from ledger import Ledger
from partners.segments.compiler import resolve, segment_query
from partners.segments.definition import SegmentChange, SegmentDefinition, SegmentSpec
from partners.segments.errors import InvalidSegment
from partners.segments.filters import FIELDS, FilterSyntaxError, parse_filter
from partners.segments.members import EXPORT_SCHEMA, count_members, export_rows
from partners.segments.models import SavedSegment
from partners.segments.saved import (
    change_segment,
    delete_segment,
    list_segments,
    resolved_segment,
    save_segment,
)
from tests.partners.segment_world import TIERS, World, build_world, expected, facts_of

OPERATOR = system("segments-test")


@pytest.fixture(scope="module")
async def world(engine: AsyncEngine, ledger: Ledger) -> AsyncIterator[World]:
    async with AsyncSession(engine, expire_on_commit=False) as session:
        yield await build_world(session, ledger, seed=20261203)


async def selected(session: AsyncSession, world: World, values: dict[str, Any]) -> set[str]:
    definition = msgspec.convert(values, SegmentDefinition)
    resolved = await resolve(session, world.program, definition)
    rows = (await session.execute(segment_query(world.program, resolved, world.as_of))).all()
    return {row.external_id for row in rows}


async def check(session: AsyncSession, world: World, values: dict[str, Any]) -> set[str]:
    got = await selected(session, world, values)
    assert got == expected(world, msgspec.convert(values, SegmentDefinition)), values
    return got


def _bounds(rng: random.Random, low: str, high: str, values: list[int]) -> dict[str, int]:
    a, b = sorted(rng.sample(values, 2)) if len(set(values)) > 1 else (values[0], values[0])
    choice = rng.choice(("both", "low", "high"))
    if choice == "low":
        return {low: a}
    if choice == "high":
        return {high: b}
    return {low: a, high: b}


async def test_statuses_and_tiers(session: AsyncSession, world: World) -> None:
    everyone = await check(session, world, {"statuses": ["active", "frozen", "closed"]})
    assert len(everyone) == len(world.people) - 1  # the one enrolling later is out
    active = await check(session, world, {})
    assert active < everyone
    sizes = set()
    for tiers in (["gold"], ["bronze", "silver"], list(TIERS)):
        sizes.add(len(await check(session, world, {"tiers": tiers, "statuses": ["active"]})))
    assert len(sizes) > 1


async def test_recency_frequency_monetary(session: AsyncSession, world: World) -> None:
    rng = random.Random(1)
    facts = facts_of(world, 365)
    days = [f.days_since_last_purchase for f in facts if f.days_since_last_purchase is not None]
    nonempty = 0
    for _ in range(12):
        window = rng.choice((30, 90, 365, 1000))
        counts = [f.purchases for f in facts_of(world, window)]
        spends = [f.spend_minor for f in facts_of(world, window)]
        criteria: list[dict[str, Any]] = [
            {"recency": _bounds(rng, "min_days", "max_days", days)},
            {"frequency": _bounds(rng, "min_purchases", "max_purchases", counts)},
            {"monetary": _bounds(rng, "min_minor", "max_minor", spends)},
        ]
        for values in criteria:
            values |= {"window_days": window, "statuses": ["active", "frozen"]}
            nonempty += bool(await check(session, world, values))
    assert nonempty > 10


async def test_rfm_scores(session: AsyncSession, world: World) -> None:
    rng = random.Random(2)
    seen = set()
    for _ in range(10):
        rfm = {}
        for name in rng.sample(("recency", "frequency", "monetary"), rng.randint(1, 3)):
            low = rng.randint(0, 5)
            rfm[name] = {"min_score": low, "max_score": rng.randint(low, 5)}
        got = await check(session, world, {"rfm": rfm, "window_days": rng.choice((90, 365))})
        seen.add(frozenset(got))
    assert len(seen) > 3
    # Scores are quintiles: every score 1 to 5 is someone's.
    facts = facts_of(world, 365)
    assert {f.scores["monetary_score"] for f in facts if f.purchases} == {1, 2, 3, 4, 5}


async def test_partner_activity(session: AsyncSession, world: World) -> None:
    sizes = set()
    for partners in (["fuel"], ["books"], ["fuel", "books"]):
        for action in ("earned", "redeemed", "either"):
            for within in (None, 30, 200):
                values: dict[str, Any] = {
                    "partner": {"partners": partners, "action": action},
                    "statuses": ["active", "frozen", "closed"],
                }
                if within:
                    values["partner"]["within_days"] = within
                sizes.add(len(await check(session, world, values)))
    assert len(sizes) > 3


async def test_cohorts(session: AsyncSession, world: World) -> None:
    rng = random.Random(3)
    today = world.as_of.date()
    months = sorted({(today - timedelta(days=30 * n)).replace(day=1) for n in range(0, 20)})
    sizes = set()
    for _ in range(12):
        first, last = sorted(rng.sample(months, 2))
        values: dict[str, Any] = {
            "cohort": {"basis": rng.choice(("enrolment", "first_earning"))},
            "statuses": ["active", "frozen", "closed"],
        }
        if rng.random() < 0.8:
            values["cohort"]["from_month"] = first.strftime("%Y-%m")
        if rng.random() < 0.8 or "from_month" not in values["cohort"]:
            values["cohort"]["to_month"] = last.strftime("%Y-%m")
        sizes.add(len(await check(session, world, values)))
    assert len(sizes) > 3


async def test_criteria_combined(session: AsyncSession, world: World) -> None:
    values = {
        "statuses": ["active", "frozen"],
        "tiers": ["silver", "gold"],
        "recency": {"max_days": 400},
        "partner": {"partners": ["fuel", "books"]},
        "filter": "has_email or spend_minor > 1000",
    }
    await check(session, world, values)


# Custom filters: random trees over every field, rendered to text, against
# their Python meaning.


def _literal(rng: random.Random, world: World, field: str) -> str:
    kind = FIELDS[field][0].value
    if kind == "integer":
        return str(rng.choice((0, 1, 2, 3, 5, 30, 90, 365, 1000, 2500, 10_000, -1)))
    if kind == "date":
        day = world.as_of.date() - timedelta(days=rng.randint(0, 500))
        if field.endswith("cohort"):
            day = day.replace(day=1)
        return f"'{day.isoformat()}'"
    if kind == "boolean":
        return rng.choice(("true", "false"))
    if kind == "partners":
        return rng.choice(("'fuel'", "'books'"))
    pool = {
        "status": ("active", "frozen", "closed"),
        "tier": (*TIERS, "platinum"),
        "external_id": ("m-001", "m-010", "m-030", "x"),
    }[field]
    return "'" + rng.choice(pool) + "'"


def random_filter(rng: random.Random, world: World, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 3 and roll < 0.25:
        joiner = rng.choice((" and ", " or "))
        return "(" + joiner.join(random_filter(rng, world, depth + 1) for _ in range(2)) + ")"
    if depth < 3 and roll < 0.35:
        return "not " + random_filter(rng, world, depth + 1)
    field = rng.choice(sorted(FIELDS))
    kind = FIELDS[field][0].value
    if kind == "partners":
        if rng.random() < 0.5:
            return f"{field} = {_literal(rng, world, field)}"
        return f"{field} in ('fuel', {_literal(rng, world, field)})"
    if kind == "boolean":
        return rng.choice((field, f"{field} = {_literal(rng, world, field)}"))
    form = rng.choice(("op", "op", "in", "not in", "between", "null"))
    if form == "in" or form == "not in":
        items = ", ".join(_literal(rng, world, field) for _ in range(rng.randint(1, 3)))
        return f"{field} {form} ({items})"
    if form == "between":
        a, b = sorted((_literal(rng, world, field), _literal(rng, world, field)), key=_key)
        return f"{field} between {a} and {b}"
    if form == "null":
        return f"{field} is {rng.choice(('null', 'not null'))}"
    return f"{field} {rng.choice(('=', '!=', '<', '<=', '>', '>='))} {_literal(rng, world, field)}"


def _key(literal: str) -> Any:
    return int(literal) if literal.lstrip("-").isdigit() else literal


async def test_custom_filters_match_brute_force(session: AsyncSession, world: World) -> None:
    rng = random.Random(4)
    everyone = ["active", "frozen", "closed"]
    sizes = set()
    for _ in range(150):
        source = random_filter(rng, world)
        got = await check(
            session, world, {"filter": source, "statuses": everyone, "window_days": 200}
        )
        sizes.add(len(got))
    assert len(sizes) > 10


@given(st.text(max_size=60))
def test_filter_parser_refuses_with_a_position_or_parses(source: str) -> None:
    message = "at (parsed)"
    try:
        parse_filter(source)
    except FilterSyntaxError as error:
        message = str(error)
    assert message.startswith("at ")


@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        ("tier = ", "at 8: expected a quoted text, found the end"),
        ("spend_minor = 'a lot'", "expected an integer"),
        ("nonsense = 1", "no field 'nonsense'"),
        ("has_email < true", "takes no '<'"),
        ("earned_at != 'fuel'", "takes no '!='"),
        ("tier = 'gold' tier = 'silver'", "expected 'and', 'or' or the end"),
        ("enrolled_on = '2026-02-30'", "is not a date"),
        ("(" * 20 + "has_email" + ")" * 20, "nested deeper than"),
        ("tier = 'gold'; DROP TABLE members", "unexpected"),
    ],
)
def test_bad_filters_say_where(source: str, complaint: str) -> None:
    with pytest.raises(FilterSyntaxError, match=complaint.replace("(", r"\(")):
        parse_filter(source)


async def test_values_are_bound_never_inlined(session: AsyncSession, world: World) -> None:
    statements: list[str] = []
    bind = session.bind
    assert bind is not None
    sync_engine = bind.sync_engine if hasattr(bind, "sync_engine") else bind

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(sync_engine, "before_cursor_execute", seen)
    try:
        await check(session, world, {"filter": "external_id = 'm-001'' or ''1''=''1'"})
    finally:
        event.remove(sync_engine, "before_cursor_execute", seen)
    assert statements and not any("m-001" in s for s in statements)


# Saved segments.


def spec(name: str, **definition: Any) -> SegmentSpec:
    return msgspec.convert({"name": name, "definition": definition}, SegmentSpec)


async def test_saved_segment_counted_and_exported(
    session: AsyncSession, engine: AsyncEngine, world: World
) -> None:
    definition = {"tiers": ["gold", "silver"], "statuses": ["active", "frozen"]}
    await save_segment(session, world.program, spec("valued", **definition), principal=OPERATOR)
    await session.commit()
    want = expected(world, msgspec.convert(definition, SegmentDefinition))
    assert want
    resolved = await resolved_segment(session, world.program, "valued", principal=OPERATOR)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        counted = await count_members(session, world.program, resolved, world.as_of)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert counted == len(want)
    assert len(statements) == 1

    facts = {f.person.external_id: f for f in facts_of(world, 365)}
    for export_format in ExportFormat:
        async with engine.connect() as connection:
            body = b"".join(
                [
                    chunk
                    async for chunk in export_chunks(
                        export_format,
                        EXPORT_SCHEMA,
                        export_rows(connection, world.program, resolved, world.as_of),
                        chunk_rows=7,
                    )
                ]
            )
        if export_format is ExportFormat.CSV:
            rows = list(csv.DictReader(io.StringIO(body.decode())))
            members = [r["member"] for r in rows]
            spend = {r["member"]: int(r["spend_minor"]) for r in rows}
        else:
            table = pq.read_table(io.BytesIO(body))
            assert table.schema.equals(EXPORT_SCHEMA)
            members = table.column("member").to_pylist()
            spend = dict(zip(members, table.column("spend_minor").to_pylist(), strict=True))
            enrolled = dict(zip(members, table.column("enrolled_on").to_pylist(), strict=True))
            assert all(isinstance(d, date) for d in enrolled.values())
        assert sorted(members) == sorted(want)
        assert len(members) == len(set(members))
        assert spend == {m: facts[m].spend_minor for m in members}


async def test_saved_segments_change_list_and_delete(session: AsyncSession, world: World) -> None:
    await save_segment(
        session, world.program, spec("lapsed", recency={"min_days": 90}), principal=OPERATOR
    )
    await session.commit()
    with pytest.raises(Exception, match="exists"):
        await save_segment(session, world.program, spec("lapsed"), principal=OPERATOR)
    await session.rollback()
    change = msgspec.convert({"definition": {"recency": {"min_days": 180}}}, SegmentChange)
    changed = await change_segment(session, world.program, "lapsed", change, principal=OPERATOR)
    assert changed.definition.recency is not None and changed.definition.recency.min_days == 180
    await session.commit()
    page = await list_segments(session, world.program, principal=OPERATOR, limit=100, cursor=None)
    assert "lapsed" in [s.name for s in page.items]
    await delete_segment(session, world.program, "lapsed", principal=OPERATOR)
    await session.commit()
    with pytest.raises(Exception, match="no segment"):
        await resolved_segment(session, world.program, "lapsed", principal=OPERATOR)


@pytest.mark.parametrize(
    ("definition", "complaint"),
    [
        ({"filter": "tier = "}, "filter: at 8"),
        ({"filter": "spend_minor >= 'x'"}, "expected an integer"),
        ({"tiers": ["platinum"]}, "no tier 'platinum'"),
        ({"partner": {"partners": ["nobody"]}}, "no partner 'nobody'"),
        ({"filter": "earned_at = 'nobody'"}, "no partner 'nobody'"),
        ({"recency": {"min_days": 30, "max_days": 10}}, "minimum is above"),
        ({"frequency": {}}, "give a minimum"),
        ({"rfm": {}}, "at least one"),
        ({"rfm": {"recency": {"min_score": 5, "max_score": 2}}}, "minimum is above"),
        ({"cohort": {"from_month": "2026-05", "to_month": "2026-01"}}, "comes after"),
    ],
)
async def test_bad_definitions_refused_nothing_written(
    session: AsyncSession, world: World, definition: dict[str, Any], complaint: str
) -> None:
    async def written() -> tuple[int, int]:
        segments = await session.scalar(select(func.count()).select_from(SavedSegment))
        audits = await session.scalar(select(func.count()).select_from(audit_events))
        return int(segments or 0), int(audits or 0)

    before = await written()
    with pytest.raises(InvalidSegment, match=complaint):
        await save_segment(session, world.program, spec("bad", **definition), principal=OPERATOR)
    await session.rollback()
    assert await written() == before
