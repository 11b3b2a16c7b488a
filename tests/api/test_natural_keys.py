"""Creates idempotent by a natural key (a SKU, a tier or threshold code, the
latest draft's document, an erased external id): the same request again
answers 200 with what the first made and writes nothing, no second audit
line; the same key with other fields stays 409 already-exists naming it."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from tests.api.conftest import AUTH, Client, assert_problem
from tests.api.test_idempotency import serving


async def trail(pool: asyncpg.Pool, program: str) -> list[str]:
    """The program's audit lines, as action and subject, oldest first."""
    lines = await pool.fetch(
        "SELECT action, subject FROM audit_events WHERE subject LIKE $1 ORDER BY occurred_at, id",
        f"program:{program}:%",
    )
    return [f"{line['action']} {line['subject']}" for line in lines]


async def rows(pool: asyncpg.Pool, table: str, program: str) -> int:
    count = await pool.fetchval(
        f"SELECT count(*) FROM {table} t JOIN programs p ON p.id = t.program_id WHERE p.slug = $1",
        program,
    )
    return int(count)


#: path, table, the body, a change of it, the field a change is refused by.
CREATES: dict[str, tuple[str, str, dict[str, Any], dict[str, Any], str]] = {
    "reward": (
        "rewards",
        "catalog_rewards",
        {
            "sku": "MUG",
            "name": "Mug",
            "points_price": 40,
            "stock": 5,
            "valid_until": "2030-01-01T02:00:00+02:00",
        },
        {"points_price": 41},
        "sku",
    ),
    "tier": (
        "tiers",
        "tiers",
        {"code": "gold", "name": "Gold", "rank": 2, "threshold": 1000, "perks": ["lounge"]},
        {"perks": []},
        "code",
    ),
    "threshold": (
        "thresholds",
        "threshold_rewards",
        {"code": "big-spender", "amount_minor": 1000, "bonus_points": 50},
        {"amount_minor": 999},
        "code",
    ),
}


@pytest.mark.parametrize("kind", sorted(CREATES))
async def test_the_same_create_again_answers_it_and_writes_nothing(
    client: Client, program: str, pool: asyncpg.Pool, kind: str
) -> None:
    path, table, body, other, field = CREATES[kind]
    first = await client.post(f"/programs/{program}/{path}", json=body)
    assert first.status_code == 201, first.text
    before = (await trail(pool, program), await rows(pool, table, program))

    again = await client.post(f"/programs/{program}/{path}", json=body)

    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert (await trail(pool, program), await rows(pool, table, program)) == before
    changed = await client.post(f"/programs/{program}/{path}", json=body | other)
    problem = assert_problem(changed, 409, "already-exists")
    assert problem["field"] == field
    assert next(iter(other)) in problem["detail"]
    assert (await trail(pool, program), await rows(pool, table, program)) == before


async def test_a_tier_of_a_taken_rank_stays_already_exists(client: Client, program: str) -> None:
    gold = {"code": "gold", "name": "Gold", "rank": 2, "threshold": 1000}
    assert (await client.post(f"/programs/{program}/tiers", json=gold)).status_code == 201
    taken = await client.post(f"/programs/{program}/tiers", json=gold | {"code": "platinum"})
    assert assert_problem(taken, 409, "already-exists")["field"] == "rank"


DRAFT = {"rules": {"points_per_unit": "2", "bonuses": []}, "note": "double"}


async def test_the_same_draft_again_is_the_latest_draft(
    client: Client, program: str, pool: asyncpg.Pool
) -> None:
    # The fixture's version 1 is published: the same document drafts anew.
    first = await client.post(f"/programs/{program}/rules", json=DRAFT)
    assert first.status_code == 201, first.text
    assert first.json()["version"] == 2
    before = await trail(pool, program)

    again = await client.post(f"/programs/{program}/rules", json=DRAFT)

    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert await trail(pool, program) == before
    other_note = await client.post(f"/programs/{program}/rules", json=DRAFT | {"note": "x2"})
    assert other_note.status_code == 201, other_note.text
    assert other_note.json()["version"] == 3
    # Version 2 is no longer the latest: drafting it again is a new version.
    once_more = await client.post(f"/programs/{program}/rules", json=DRAFT)
    assert (once_more.status_code, once_more.json()["version"]) == (201, 4)


async def test_a_published_latest_version_is_drafted_anew(client: Client, program: str) -> None:
    launch = {"rules": {"points_per_unit": "1"}, "note": "launch"}  # as the fixture's v1

    again = await client.post(f"/programs/{program}/rules", json=launch)

    assert (again.status_code, again.json()["version"]) == (201, 2)


async def test_identical_drafts_at_once_give_one_version(
    database_url: str, client: Client, program: str
) -> None:
    async with serving(database_url) as concurrent:
        answers = await asyncio.gather(
            *(
                concurrent.post(f"/programs/{program}/rules", json=DRAFT, headers=AUTH)
                for _ in range(4)
            )
        )

    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201], [a.text for a in answers]
    assert {a.json()["version"] for a in answers} == {2}
    listed = (await client.get(f"/programs/{program}/rules")).json()
    assert [v["version"] for v in listed] == [1, 2]


async def erase(client: Client, program: str, external_id: str) -> Any:
    return await client.post(f"/programs/{program}/members/{external_id}/erase")


async def test_an_erasure_again_answers_the_pseudonym_and_writes_nothing(
    client: Client, program: str, pool: asyncpg.Pool
) -> None:
    enrolled = await client.post(f"/programs/{program}/members", json={"external_id": "ann"})
    assert enrolled.status_code == 201, enrolled.text
    first = await erase(client, program, "ann")
    assert first.status_code == 200, first.text
    alias = first.json()["pseudonym"]
    before = await trail(pool, program)

    again = await erase(client, program, "ann")

    assert (again.status_code, again.json()) == (200, {"pseudonym": alias})
    assert await trail(pool, program) == before
    assert [line for line in before if line.startswith("member.erase")] == [
        f"member.erase program:{program}:member:{alias}"
    ]
    # Enrolled again, the id names a new member, erased under a new pseudonym.
    assert (
        await client.post(f"/programs/{program}/members", json={"external_id": "ann"})
    ).status_code == 201
    second = await erase(client, program, "ann")
    assert second.status_code == 200, second.text
    assert second.json()["pseudonym"] not in (alias, "ann")
    assert (await erase(client, program, "ann")).json() == second.json()


async def test_erasing_an_id_never_enrolled_is_not_found(
    client: Client, program: str, pool: asyncpg.Pool
) -> None:
    before = await trail(pool, program)

    assert_problem(await erase(client, program, "nobody"), 404, "not-found")

    assert await trail(pool, program) == before
