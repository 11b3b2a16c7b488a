"""A program's own webhook endpoints over HTTP (``/programs/{slug}/
webhook-endpoints``): made, read, changed, rotated, tested, replayed and
deleted by the operator; bad input (a URL the platform does not send to,
an unknown event type, one endpoint too many) answered with a problem and
nothing written; a partner's endpoint is not the program's; the scopes."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from tests.api.conftest import AUTH, PROBLEMS, Client, assert_problem
from tests.api.test_partner_webhook_routes import partner_token


async def own_rows(pool: asyncpg.Pool, slug: str) -> list[Any]:
    """The program's own endpoints and their deliveries, as stored."""
    return list(
        await pool.fetch(
            "SELECT e.id, e.url, e.event_types, e.status, e.secret, d.id AS delivery, d.status"
            " AS delivery_status FROM webhook_endpoints e JOIN programs p ON p.id = e.program_id"
            " LEFT JOIN webhook_deliveries d ON d.endpoint_id = e.id"
            " WHERE p.slug = $1 AND e.partner_id IS NULL ORDER BY e.id, d.id",
            slug,
        )
    )


async def key_with(client: Client, *scopes: str) -> dict[str, str]:
    issued = await client.post(
        "/api-keys", json={"name": f"hooks-{uuid.uuid4().hex[:8]}", "scopes": list(scopes)}
    )
    assert issued.status_code == 201, issued.text
    return {"Authorization": f"Bearer {issued.json()['key']}"}


async def test_the_operator_manages_the_programs_own_endpoints(
    client: Client, pool: asyncpg.Pool, program: str
) -> None:
    base = f"/programs/{program}/webhook-endpoints"
    made = await client.post(
        base,
        json={
            "url": "https://hooks.ops.example.com/coalition",
            "event_types": ["finance.reconciliation_differences"],
            "description": "Finance on call",
        },
    )
    assert made.status_code == 201, made.text
    endpoint = made.json()
    assert endpoint["secret"].startswith("whsec_") and endpoint["status"] == "enabled"
    assert "partner_id" not in endpoint
    path = f"{base}/{endpoint['id']}"

    listed = await client.get(base)
    shown = await client.get(path)
    changed = await client.patch(
        path,
        json={"event_types": ["rewards.sunset_scheduled", "finance.reconciliation_differences"]},
    )
    rotated = await client.post(f"{path}/secret-rotations", json={"overlap_seconds": 0})
    test = await client.post(f"{path}/test-events")

    assert [e["id"] for e in listed.json()["items"]] == [endpoint["id"]]
    assert shown.status_code == 200 and "secret" not in shown.json()
    assert changed.json()["event_types"] == [
        "finance.reconciliation_differences",
        "rewards.sunset_scheduled",
    ]
    assert rotated.status_code == 201 and rotated.json()["secret"] != endpoint["secret"]
    assert rotated.json()["previous_secret_expires_at"] is None
    assert test.status_code == 201 and test.json()["id"].startswith("msg_")
    msg = test.json()["id"]
    log = await client.get(f"{path}/deliveries")
    assert [d["id"] for d in log.json()["items"]] == [msg]
    detail = await client.get(f"/programs/{program}/webhook-deliveries/{msg}")
    assert detail.json()["payload"]["type"] == "webhook.test"
    # Still pending: sent anyway, not replayed.
    again = await client.post(f"/programs/{program}/webhook-deliveries/{msg}/replays")
    assert_problem(again, 409, "delivery-not-replayable")
    disabled = await client.patch(path, json={"status": "disabled"})
    assert disabled.json()["status"] == "disabled" and disabled.json()["disabled_at"]
    # Disabling dead-letters what was due.
    assert [r["delivery_status"] for r in await own_rows(pool, program)] == ["dead"]
    assert_problem(await client.post(f"{path}/test-events"), 409, "delivery-not-replayable")

    gone = await client.delete(path)
    assert gone.status_code == 204
    assert_problem(await client.get(path), 404, "not-found")
    assert await own_rows(pool, program) == []


async def test_bad_input_is_a_problem_and_writes_nothing(
    client: Client, pool: asyncpg.Pool, program: str
) -> None:
    base = f"/programs/{program}/webhook-endpoints"
    bodies = [
        ({"url": "ftp://x.example.com/"}, 400, "validation-error"),
        ({"url": "http://127.0.0.1:8080/hooks"}, 422, "webhook-url-refused"),
        ({"url": "https://10.0.0.7/hooks"}, 422, "webhook-url-refused"),
        ({"url": "https://user:pw@x.example.com/"}, 422, "webhook-url-refused"),
        (
            {"url": "https://x.example.com/", "event_types": ["partner.points_issued"]},
            422,
            "unknown-event-type",
        ),
        ({"url": "https://x.example.com/", "event_types": []}, 400, "validation-error"),
        ({"url": "https://x.example.com/", "surprise": 1}, 400, "validation-error"),
        ({"url": "https://x.example.com/\x00"}, 400, "validation-error"),
        ({"url": "https://x.example.com/", "description": "x" * 501}, 400, "validation-error"),
    ]
    for body, status, slug in bodies:
        refused = await client.post(base, json=body)
        problem = assert_problem(refused, status, slug)
        assert problem["detail"], problem
    unknown = await client.post(
        base, json={"url": "https://x.example.com/", "event_types": ["lead.offered"]}
    )
    assert "finance.reconciliation_differences" in unknown.json()["detail"]
    assert_problem(
        await client.get(f"/programs/{program}/webhook-deliveries/msg_nothex"),
        400,
        "validation-error",
    )
    missing = await client.get(f"/programs/{program}/webhook-deliveries/msg_{uuid.uuid4().hex}")
    assert_problem(missing, 404, "not-found")
    assert await own_rows(pool, program) == []

    for n in range(20):
        made = await client.post(base, json={"url": f"https://hooks.example.com/{n}"})
        assert made.status_code == 201, made.text
    kept = await own_rows(pool, program)
    too_many = await client.post(base, json={"url": "https://hooks.example.com/21"})
    assert_problem(too_many, 409, "too-many-webhook-endpoints")
    first = kept[0]["id"]
    refused = await client.patch(f"{base}/{first}", json={"url": "http://169.254.169.254/"})
    assert_problem(refused, 422, "webhook-url-refused")
    assert await own_rows(pool, program) == kept


async def test_a_partners_endpoint_is_not_the_programs_and_the_reverse(
    client: Client, pool: asyncpg.Pool, session: Any
) -> None:
    theirs, program = await partner_token(client, session)
    made = await client.post(
        "/partner/webhook-endpoints",
        json={"url": "https://hooks.example.com/theirs"},
        headers={**theirs, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert made.status_code == 201, made.text
    partners = made.json()["id"]
    own = (
        await client.post(
            f"/programs/{program}/webhook-endpoints", json={"url": "https://hooks.example.com/own"}
        )
    ).json()["id"]
    base = f"/programs/{program}/webhook-endpoints"
    for method, path, body in [
        ("GET", f"{base}/{partners}", None),
        ("PATCH", f"{base}/{partners}", {"description": "ours"}),
        ("DELETE", f"{base}/{partners}", None),
        ("POST", f"{base}/{partners}/secret-rotations", {}),
        ("POST", f"{base}/{partners}/test-events", None),
        ("GET", f"{base}/{partners}/deliveries", None),
    ]:
        answer = await client.request(method, path, json=body)
        assert answer.status_code == 404, (method, path, answer.text)
        assert answer.json()["type"] == PROBLEMS + "not-found"
    assert [e["id"] for e in (await client.get(base)).json()["items"]] == [own]
    # And the partner never sees the program's.
    assert (
        await client.get(f"/partner/webhook-endpoints/{own}", headers=theirs)
    ).status_code == 404
    listed = await client.get("/partner/webhook-endpoints", headers=theirs)
    assert [e["id"] for e in listed.json()["items"]] == [partners]


async def test_reading_and_writing_take_their_scopes(client: Client, program: str) -> None:
    base = f"/programs/{program}/webhook-endpoints"
    reader = await key_with(client, "webhooks:read")
    other = await key_with(client, "finance:write", "finance:read")
    body = {"url": "https://hooks.example.com/scoped"}

    assert (await client.get(base, headers=reader)).status_code == 200
    assert_problem(await client.post(base, json=body, headers=reader), 403, "forbidden")
    assert_problem(await client.get(base, headers=other), 403, "forbidden")
    anonymous = await client.get(base, headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert (await client.post(base, json=body, headers=AUTH)).status_code == 201
