"""The operator API of partner firms over HTTP: create (idempotent), list and
page, show, change, status moves and history, users; bad input answered
with a problem and nothing written; scopes and tenants."""

from __future__ import annotations

import itertools
from typing import Any

import asyncpg
import pytest

from tests.api.conftest import PROBLEM_JSON, Client, assert_problem

_programs = itertools.count(1)


async def open_program(client: Client) -> str:
    slug = f"coalition-{next(_programs)}"
    response = await client.post(
        "/programs",
        json={"slug": slug, "name": "Coalition", "currency": "ZAR", "point_value_minor": "1"},
    )
    assert response.status_code == 201, response.text
    return slug


def firm(slug: str, **fields: Any) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": "Fuel & Go",
        "legal_name": "Fuel & Go (Pty) Ltd",
        "country": "ZA",
        "contacts": [
            {"name": "Thandi", "email": "thandi@fuelandgo.example", "phone": "+27 21 555"}
        ],
        **fields,
    }


async def created(client: Client, path: str, body: Any, status: int = 201) -> dict[str, Any]:
    response = await client.post(path, json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def partner_rows(pool: asyncpg.Pool, program: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT to_jsonb(p)::text FROM partners p JOIN programs g ON g.id = p.program_id"
        " WHERE g.slug = $1 ORDER BY p.id",
        program,
    )
    return [row[0] for row in rows]


async def audit_count(pool: asyncpg.Pool, program: str) -> int:
    found: int = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE subject LIKE $1", f"program:{program}:partner:%"
    )
    return found


async def test_partners_are_created_listed_shown_and_changed(
    client: Client, pool: asyncpg.Pool
) -> None:
    program = await open_program(client)
    base = f"/programs/{program}/partners"

    group = await created(client, base, firm("group", status="active", tier="gold"))
    again = await created(client, base, firm("group", status="active", tier="gold"), status=200)
    other = await client.post(base, json=firm("group", country="NA"))
    for n in range(3):
        await created(client, base, firm(f"shop-{n}", parent="group"))

    assert again == group
    assert (group["status"], group["currency"], group["tier"]) == ("active", "ZAR", "gold")
    body = assert_problem(other, 409, "already-exists")
    assert body["field"] == "slug" and "country" in body["detail"]
    first = (await client.get(base, params={"limit": 3})).json()
    rest = (await client.get(base, params={"limit": 3, "cursor": first["next_cursor"]})).json()
    assert [p["slug"] for p in first["items"] + rest["items"]] == [
        "shop-2",
        "shop-1",
        "shop-0",
        "group",
    ]
    assert rest["next_cursor"] is None
    members = (await client.get(base, params={"parent": "group"})).json()["items"]
    assert {p["slug"] for p in members} == {"shop-0", "shop-1", "shop-2"}
    invited = (await client.get(base, params={"status": "invited"})).json()["items"]
    assert len(invited) == 3

    shown = await client.get(f"{base}/shop-0")
    assert shown.status_code == 200 and shown.json()["parent"] == "group"
    changed = await client.patch(f"{base}/shop-0", json={"parent": None, "tier": "silver"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["parent"], changed.json()["tier"]) == (None, "silver")
    cycle = await client.patch(f"{base}/group", json={"parent": "shop-1"})
    assert_problem(cycle, 422, "partner-hierarchy-refused")
    missing = await client.get(f"{base}/nobody")
    assert assert_problem(missing, 404, "not-found")["detail"] == "no partner 'nobody'"
    assert await audit_count(pool, program) == 5


async def test_status_moves_and_their_history(client: Client) -> None:
    program = await open_program(client)
    base = f"/programs/{program}/partners"
    await created(client, base, firm("p"))

    moved = await created(client, f"{base}/p/status", {"status": "active", "reason": "signed"})
    same = await created(client, f"{base}/p/status", {"status": "active"}, status=200)
    wrong = await client.post(f"{base}/p/status", json={"status": "invited"})
    history = (await client.get(f"{base}/p/status-history")).json()

    assert (moved["from_status"], moved["to_status"], moved["actor"]) == (
        "invited",
        "active",
        "admin",
    )
    assert same == moved
    assert assert_problem(wrong, 409, "partner-status-move-refused")["detail"] == (
        "partner 'p' is active: it can move to offboarded or suspended"
    )
    assert [(c["from_status"], c["to_status"]) for c in history["items"]] == [
        ("invited", "active"),
        (None, "invited"),
    ]
    assert (await client.get(f"{base}/p")).json()["status"] == "active"


async def test_partner_users(client: Client, pool: asyncpg.Pool) -> None:
    program = await open_program(client)
    users = f"/programs/{program}/partners/p/users"
    await created(client, f"/programs/{program}/partners", firm("p"))
    ann = {"email": "Ann@FuelAndGo.example", "name": "Ann", "role": "finance"}

    added = await created(client, users, ann)
    again = await created(client, users, ann, status=200)
    taken = await client.post(users, json={**ann, "role": "sales"})
    listed = (await client.get(users)).json()
    role = await client.patch(f"{users}/{added['id']}", json={"role": "admin"})
    removed = await client.delete(f"{users}/{added['id']}")
    removed_again = await client.delete(f"{users}/{added['id']}")
    after = (await client.get(users)).json()
    change_removed = await client.patch(f"{users}/{added['id']}", json={"role": "sales"})

    assert added["email"] == "ann@fuelandgo.example" and again == added
    assert assert_problem(taken, 409, "already-exists")["field"] == "email"
    assert [u["id"] for u in listed["items"]] == [added["id"]]
    assert role.status_code == 200 and role.json()["role"] == "admin"
    assert (removed.status_code, removed_again.status_code) == (204, 204)
    assert after["items"] == []
    assert_problem(change_removed, 404, "not-found")
    back = await created(client, users, ann)
    assert (back["id"], back["role"]) == (added["id"], "finance")
    actions = await pool.fetch(
        "SELECT action FROM audit_events WHERE subject = $1 ORDER BY occurred_at, id",
        f"program:{program}:partner:p:user:{added['id']}",
    )
    assert [a["action"] for a in actions] == [
        "partner-user.add",
        "partner-user.change",
        "partner-user.remove",
        "partner-user.restore",
    ]


BAD_FIRMS = {
    "lowercase country": firm("x", country="za"),
    "unknown currency form": firm("x", currency="rand"),
    "slug with capitals": firm("Bad-Slug"),
    "slug too long": firm("x" * 65),
    "empty name": firm("x", name=""),
    "NUL in legal name": firm("x", legal_name="Fuel\x00Go"),
    "legal name too long": firm("x", legal_name="L" * 301),
    "too many contacts": firm("x", contacts=[{"name": "N", "email": "n@x.example"}] * 21),
    "contact e-mail": firm("x", contacts=[{"name": "N", "email": "not-an-email"}]),
    "contact phone": firm("x", contacts=[{"name": "N", "email": "n@x.example", "phone": "call"}]),
    "unknown field": {**firm("x"), "vat": "1"},
    "created offboarded": firm("x", status="offboarded"),
    "tier code": firm("x", tier="Gold Tier"),
    "name not a string": firm("x", name=7),
}


@pytest.mark.parametrize("body", BAD_FIRMS.values(), ids=BAD_FIRMS.keys())
async def test_a_bad_firm_is_a_problem_and_writes_nothing(
    client: Client, pool: asyncpg.Pool, body: dict[str, Any]
) -> None:
    program = await open_program(client)
    base = f"/programs/{program}/partners"
    await created(client, base, firm("kept"))
    before = await partner_rows(pool, program), await audit_count(pool, program)

    response = await client.post(base, json=body)
    patched = await client.patch(
        f"{base}/kept", json={k: v for k, v in body.items() if k not in ("slug", "status")}
    )

    assert_problem(response, 400, "validation-error")
    if body.get("slug") == "x" and body.get("status") != "offboarded":
        assert_problem(patched, 400, "validation-error")
    assert (await partner_rows(pool, program), await audit_count(pool, program)) == before


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("POST", "/kept/status", {"status": "frozen"}),
        ("POST", "/kept/status", {"status": "active", "reason": "r" * 501}),
        ("POST", "/kept/users", {"email": "ann@x.example", "name": "Ann", "role": "boss"}),
        ("POST", "/kept/users", {"email": "ann", "name": "Ann", "role": "admin"}),
        ("GET", "?limit=0", None),
        ("GET", "?limit=201", None),
        ("GET", "?cursor=short", None),
        ("GET", "?status=frozen", None),
        ("GET", "/kept/users?cursor=" + "!" * 22, None),
        ("GET", "/Kept", None),
        ("DELETE", "/kept/users/not-a-uuid", None),
    ],
)
async def test_bad_requests_are_problems_and_write_nothing(
    client: Client, pool: asyncpg.Pool, method: str, suffix: str, body: Any
) -> None:
    program = await open_program(client)
    base = f"/programs/{program}/partners"
    await created(client, base, firm("kept"))
    before = await partner_rows(pool, program), await audit_count(pool, program)

    response = await client.request(method, base + suffix, json=body)

    assert response.status_code in (400, 404), response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert (await partner_rows(pool, program), await audit_count(pool, program)) == before


async def issue_key(client: Client, program: str, scopes: list[str]) -> dict[str, str]:
    issued = await created(
        client,
        "/api-keys",
        {"name": f"partners-{program}-{len(scopes)}", "scopes": scopes, "program": program},
    )
    return {"Authorization": f"Bearer {issued['key']}"}


async def test_keys_see_their_own_programs_partners_with_their_scopes(
    client: Client, pool: asyncpg.Pool
) -> None:
    a, b = await open_program(client), await open_program(client)
    await created(client, f"/programs/{a}/partners", firm("p"))
    of_b = await issue_key(client, b, ["partners:read", "partners:write"])
    reader_of_a = await issue_key(client, a, ["partners:read"])
    before = await partner_rows(pool, a), await audit_count(pool, a)

    shown = await client.get(f"/programs/{a}/partners/p", headers=of_b)
    made = await client.post(f"/programs/{a}/partners", json=firm("q"), headers=of_b)
    moved = await client.post(
        f"/programs/{a}/partners/p/status", json={"status": "active"}, headers=of_b
    )
    read = await client.get(f"/programs/{a}/partners/p", headers=reader_of_a)
    write = await client.patch(f"/programs/{a}/partners/p", json={"name": "X"}, headers=reader_of_a)

    for answer in (shown, made, moved):
        assert assert_problem(answer, 404, "not-found")["detail"] == f"no program {a!r}"
    assert read.status_code == 200
    assert_problem(write, 403, "forbidden")
    assert (await partner_rows(pool, a), await audit_count(pool, a)) == before
