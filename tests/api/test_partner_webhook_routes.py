"""The partner API of webhooks over HTTP, and the operator's view: endpoints
made, read, changed, rotated and deleted; the delivery log, replays and test
events; bad input answered with a problem and nothing written; another
partner's ids answer 404 and change nothing.

Each partner calls with a real token of a client of its firm, from the
token endpoint (``tests.partners.tokens``).
"""

from __future__ import annotations

import itertools
import uuid

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from partners.models import Partner
from tests.api.conftest import AUTH, PROBLEMS, assert_problem
from tests.partners.tokens import partner_bearer

Client = AsyncTestClient[Litestar]
_keys = itertools.count(1)
_firms = itertools.count(1)


async def partner_token(
    client: Client, session: AsyncSession, program: str = "", scopes: list[str] | None = None
) -> tuple[dict[str, str], str]:
    """A firm (of ``program``, or a new one) and a bearer header of a client
    of it, from the token endpoint."""
    if not program:
        program = f"hooks-{uuid.uuid4().hex[:8]}"
        opened = await client.post(
            "/programs",
            json={"slug": program, "name": "Hooks", "currency": "ZAR", "point_value_minor": "1"},
            headers=AUTH,
        )
        assert opened.status_code == 201, opened.text
    slug = f"firm-{next(_firms)}"
    made = await client.post(
        f"/programs/{program}/partners",
        json={
            "slug": slug,
            "name": "F",
            "legal_name": "F Ltd",
            "country": "ZA",
            "status": "active",
        },
        headers=AUTH,
    )
    assert made.status_code == 201, made.text
    found = await session.scalar(select(Program).where(Program.slug == program))
    assert found is not None
    firm = await session.scalar(
        select(Partner).where(Partner.program_id == found.id, Partner.slug == slug)
    )
    assert firm is not None
    headers = await partner_bearer(
        client, session, found, firm, scopes=scopes or ["webhooks:manage"]
    )
    return headers, program


def posting(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Idempotency-Key": f"key-{next(_keys)}"}


async def endpoint_rows(pool: asyncpg.Pool, program: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT to_jsonb(e)::text FROM webhook_endpoints e JOIN programs g"
        " ON g.id = e.program_id WHERE g.slug = $1 ORDER BY e.id",
        program,
    )
    return [row[0] for row in rows]


async def test_a_partner_manages_its_endpoints(
    client: Client, pool: asyncpg.Pool, session: AsyncSession
) -> None:
    me, _ = await partner_token(client, session)
    made = await client.post(
        "/partner/webhook-endpoints",
        json={"url": "https://hooks.example.com/a", "event_types": ["partner.points_issued"]},
        headers=posting(me),
    )
    assert made.status_code == 201, made.text
    endpoint = made.json()
    assert endpoint["secret"].startswith("whsec_") and endpoint["status"] == "enabled"
    path = f"/partner/webhook-endpoints/{endpoint['id']}"

    shown = await client.get(path, headers=me)
    listed = await client.get("/partner/webhook-endpoints", headers=me)
    changed = await client.patch(
        path, json={"description": "till", "event_types": None}, headers=me
    )
    rotated = await client.post(
        f"{path}/secret-rotations", json={"overlap_seconds": 60}, headers=posting(me)
    )
    test = await client.post(f"{path}/test-events", headers=posting(me))
    log = await client.get(f"{path}/deliveries", headers=me)

    assert shown.status_code == 200 and "secret" not in shown.json()
    assert [e["id"] for e in listed.json()["items"]] == [endpoint["id"]]
    assert (changed.json()["description"], changed.json()["event_types"]) == ("till", None)
    assert rotated.status_code == 201 and rotated.json()["secret"] != endpoint["secret"]
    assert test.status_code == 201 and test.json()["id"].startswith("msg_")
    assert [d["id"] for d in log.json()["items"]] == [test.json()["id"]]
    delivery = await client.get(f"/partner/webhook-deliveries/{test.json()['id']}", headers=me)
    assert delivery.json()["payload"]["type"] == "webhook.test"
    assert delivery.json()["attempt_log"] == []
    replay = await client.post(
        f"/partner/webhook-deliveries/{test.json()['id']}/replays", headers=posting(me)
    )
    assert_problem(replay, 409, "delivery-not-replayable")
    gone = await client.delete(path, headers=me)
    assert gone.status_code == 204
    assert (await client.get(path, headers=me)).status_code == 404


async def test_bad_input_is_a_problem_and_writes_nothing(
    client: Client, pool: asyncpg.Pool, session: AsyncSession
) -> None:
    me, program = await partner_token(client, session)
    bodies = [
        ({"url": "ftp://x.example.com/"}, 400),
        ({"url": "https://x.example.com/", "event_types": ["partner.nothing"]}, 422),
        ({"url": "https://x.example.com/", "event_types": []}, 400),
        ({"url": "https://x.example.com/", "surprise": 1}, 400),
        ({"url": "https://x.example.com/\x00"}, 400),
        ({"url": "https://user:pw@x.example.com/"}, 422),
        ({"url": "https://x.example.com/", "description": "x" * 501}, 400),
    ]
    for body, status in bodies:
        refused = await client.post("/partner/webhook-endpoints", json=body, headers=posting(me))
        assert refused.status_code == status, (body, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert_problem(
        await client.get("/partner/webhook-deliveries/msg_nothex", headers=me),
        400,
        "validation-error",
    )
    missing = await client.get(f"/partner/webhook-deliveries/msg_{uuid.uuid4().hex}", headers=me)
    assert_problem(missing, 404, "not-found")
    assert await endpoint_rows(pool, program) == []


async def test_another_partners_ids_are_not_found_and_nothing_changes(
    client: Client, pool: asyncpg.Pool, session: AsyncSession
) -> None:
    theirs, program = await partner_token(client, session)
    mine, _ = await partner_token(client, session, program)
    made = await client.post(
        "/partner/webhook-endpoints",
        json={"url": "https://hooks.example.com/theirs"},
        headers=posting(theirs),
    )
    endpoint = made.json()["id"]
    test = await client.post(
        f"/partner/webhook-endpoints/{endpoint}/test-events", headers=posting(theirs)
    )
    msg = test.json()["id"]
    before = await endpoint_rows(pool, program)
    tries = [
        ("GET", f"/partner/webhook-endpoints/{endpoint}", None),
        ("PATCH", f"/partner/webhook-endpoints/{endpoint}", {"description": "mine"}),
        ("DELETE", f"/partner/webhook-endpoints/{endpoint}", None),
        ("POST", f"/partner/webhook-endpoints/{endpoint}/secret-rotations", {}),
        ("POST", f"/partner/webhook-endpoints/{endpoint}/test-events", None),
        ("GET", f"/partner/webhook-endpoints/{endpoint}/deliveries", None),
        (
            "POST",
            f"/partner/webhook-endpoints/{endpoint}/replays",
            {"since": "2020-01-01T00:00:00Z"},
        ),
        ("GET", f"/partner/webhook-deliveries/{msg}", None),
        ("POST", f"/partner/webhook-deliveries/{msg}/replays", None),
    ]
    for method, path, body in tries:
        answer = await client.request(method, path, json=body, headers=posting(mine))
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["type"] == PROBLEMS + "not-found"
    assert (await client.get("/partner/webhook-endpoints", headers=mine)).json()["items"] == []
    assert await endpoint_rows(pool, program) == before


async def test_without_a_token_or_its_scope_nothing_is_answered(
    client: Client, pool: asyncpg.Pool, session: AsyncSession
) -> None:
    narrow, _ = await partner_token(client, session, scopes=["points:issue"])
    anonymous = await client.get("/partner/webhook-endpoints")
    refused = await client.get("/partner/webhook-endpoints", headers=narrow)
    assert anonymous.status_code == 401 and "WWW-Authenticate" in anonymous.headers
    assert refused.status_code == 403


async def test_the_operator_reads_and_disables_a_firms_endpoint(
    client: Client, pool: asyncpg.Pool, session: AsyncSession
) -> None:
    me, program = await partner_token(client, session)
    made = await client.post(
        "/partner/webhook-endpoints",
        json={"url": "https://hooks.example.com/"},
        headers=posting(me),
    )
    endpoint = made.json()["id"]
    firm = (await client.get(f"/programs/{program}/partners", headers=AUTH)).json()["items"][0]
    base = f"/programs/{program}/partners/{firm['slug']}/webhook-endpoints"

    listed = await client.get(base, headers=AUTH)
    disabled = await client.post(
        f"{base}/{endpoint}/disable", json={"reason": "abuse"}, headers=AUTH
    )
    seen = await client.get(f"/partner/webhook-endpoints/{endpoint}", headers=me)
    enabled = await client.post(f"{base}/{endpoint}/enable", json={}, headers=AUTH)

    assert [e["id"] for e in listed.json()["items"]] == [endpoint]
    assert (disabled.json()["status"], disabled.json()["disabled_reason"]) == ("disabled", "abuse")
    assert seen.json()["status"] == "disabled"
    assert enabled.json()["status"] == "enabled"
    assert "secret" not in listed.json()["items"][0]
