"""The operator API of programs: scopes, audit, and the purchase flow over HTTP."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from api.access import issue_key
from core.principal import system
from tests.api.conftest import AUTH, PROBLEM_JSON, PROBLEMS, Client, assert_problem, purchase


async def test_purchase_flow_over_http(client: Client, program: str, pool: asyncpg.Pool) -> None:
    enrol = await client.post(
        f"/programs/{program}/members", json={"external_id": "m-1", "email": "m1@example.com"}
    )
    assert enrol.status_code == 201, enrol.text
    again = await client.post(f"/programs/{program}/members", json={"external_id": "m-1"})
    assert again.status_code == 200

    order = purchase("O-1", 1999)
    first = await client.post(f"/programs/{program}/purchases", json=order)
    assert first.status_code == 201, first.text
    assert first.json()["points"] == 19
    replay = await client.post(f"/programs/{program}/purchases", json=order)
    assert replay.status_code == 200, replay.text
    assert replay.json()["replayed"] is True
    conflict = await client.post(
        f"/programs/{program}/purchases", json={**order, "amount_minor": 2000}
    )
    assert conflict.status_code == 409
    assert conflict.headers["content-type"].startswith(PROBLEM_JSON)
    assert conflict.json()["type"] == PROBLEMS + "idempotency-conflict"

    member = (await client.get(f"/programs/{program}/members/m-1")).json()
    assert member["balance"]["pending"] == 19

    returned = await client.post(
        f"/programs/{program}/purchases/O-1/returns",
        json={"return_id": "R-1", "amount_minor": 1000},
    )
    assert returned.status_code == 201, returned.text
    assert returned.json()["points_reversed"] == 9
    too_much = await client.post(
        f"/programs/{program}/purchases/O-1/returns",
        json={"return_id": "R-2", "amount_minor": 1000},
    )
    assert too_much.status_code == 422
    assert too_much.json()["type"] == PROBLEMS + "return-exceeds-purchase"

    actions = await pool.fetch(
        "SELECT action FROM audit_events WHERE subject LIKE $1 ORDER BY occurred_at",
        f"program:{program}%",
    )
    assert [a["action"] for a in actions] == [
        "program.open",
        "rules.draft",
        "rules.publish",
        "member.enrol",
        "purchase.record",
        "purchase.return",
    ]


async def test_bad_requests_are_problems_and_write_nothing(
    client: Client, program: str, pool: asyncpg.Pool
) -> None:
    await client.post(f"/programs/{program}/members", json={"external_id": "m-1"})
    cases = [
        (purchase("B-1", -5), 400, "validation-error"),
        (purchase("B-2", 100, currency="usd"), 400, "validation-error"),
        (purchase("B-3", 100, currency="USD"), 422, "invalid-purchase"),
        (purchase("B-4", 100, member="nobody"), 404, "not-found"),
        ({**purchase("B-5", 100), "occurred_at": "2026-01-01T00:00:00"}, 400, "validation-error"),
    ]
    for body, status, slug in cases:
        response = await client.post(f"/programs/{program}/purchases", json=body)
        assert response.status_code == status, response.text
        assert response.json()["type"] == PROBLEMS + slug
    malformed = await client.post(
        f"/programs/{program}/purchases",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 400
    written = await pool.fetchval(
        "SELECT count(*) FROM purchases p JOIN programs g ON g.id = p.program_id WHERE g.slug = $1",
        program,
    )
    assert written == 0
    bad_rules = await client.post(
        f"/programs/{program}/rules", json={"rules": {"points_per_unit": "-1"}}
    )
    assert bad_rules.status_code == 422
    assert bad_rules.json()["type"] == PROBLEMS + "invalid-rules"
    past = await client.post(
        f"/programs/{program}/rules/1/publish", json={"effective_from": "2020-01-01T00:00:00Z"}
    )
    assert past.status_code == 422


BONUS = {
    "name": "double",
    "multiplier": "2",
    "starts_at": "2026-01-01T00:00:00Z",
    "ends_at": "2026-02-01T00:00:00Z",
}


@pytest.mark.parametrize(
    "rules",
    [
        {"points_per_unit": "1", "events": {"gym": {"points": "10"}}},
        {"points_per_unit": "1", "min_spend_minor": "100"},
        {"points_per_unit": "1", "bonuses": [BONUS | {"budget_points": "500"}]},
    ],
)
async def test_a_rules_document_is_converted_strictly(
    client: Client, program: str, pool: asyncpg.Pool, rules: dict[str, Any]
) -> None:
    """Inside a rules document as in any JSON body, "10" is not the integer 10."""
    response = await client.post(f"/programs/{program}/rules", json={"rules": rules})

    body = assert_problem(response, 422, "invalid-rules")
    assert "got `str`" in body["detail"], body
    drafted = await pool.fetchval(
        "SELECT count(*) FROM earn_rule_versions v JOIN programs g ON g.id = v.program_id"
        " WHERE g.slug = $1",
        program,
    )
    assert drafted == 1  # the program's first version only


async def test_api_keys_carry_scopes(
    anonymous_client: Client, program: str, pool: asyncpg.Pool
) -> None:
    reader = await issue_key(pool, f"reader-{program}", ["programs:read"], principal=system("test"))
    headers = {"Authorization": f"Bearer {reader.key}"}
    shown = await anonymous_client.get(f"/programs/{program}", headers=headers)
    assert shown.status_code == 200, shown.text
    denied = await anonymous_client.post(
        f"/programs/{program}/members", json={"external_id": "x"}, headers=headers
    )
    assert denied.status_code == 403
    assert denied.json()["type"] == PROBLEMS + "forbidden"
    forged = await anonymous_client.get(
        f"/programs/{program}", headers={"Authorization": reader.key[:-2] + "xx"}
    )
    assert forged.status_code == 401
    anonymous = await anonymous_client.get(f"/programs/{program}")
    assert anonymous.status_code == 401
    with pytest.raises(ValueError, match="unknown scopes"):
        await issue_key(pool, "bad", ["everything"], principal=system("test"))
    events_key = await issue_key(
        pool, f"events-{program}", ["events:write"], principal=system("test")
    )
    assert events_key.scopes == ["events:write"]
    assert AUTH  # the admin token still reaches everything (used by `client`)


async def test_manual_adjustments_need_a_reason_and_are_audited(
    client: Client, program: str, pool: asyncpg.Pool
) -> None:
    await client.post(f"/programs/{program}/members", json={"external_id": "adj"})
    url = f"/programs/{program}/members/adj/adjustments"
    no_reason = await client.post(url, json={"adjustment_id": "A-0", "points": 10})
    assert no_reason.status_code == 400
    zero = await client.post(url, json={"adjustment_id": "A-0", "points": 0, "reason": "oops"})
    assert zero.status_code == 400
    added = await client.post(
        url,
        json={"adjustment_id": "A-1", "points": 300, "reason": "goodwill after a late delivery"},
    )
    assert added.status_code == 201, added.text
    again = await client.post(
        url,
        json={"adjustment_id": "A-1", "points": 300, "reason": "goodwill after a late delivery"},
    )
    assert again.status_code == 200
    too_much = await client.post(
        url, json={"adjustment_id": "A-2", "points": -301, "reason": "correction"}
    )
    assert too_much.status_code == 422
    taken = await client.post(
        url, json={"adjustment_id": "A-3", "points": -100, "reason": "double credit"}
    )
    assert taken.status_code == 201
    member = (await client.get(f"/programs/{program}/members/adj")).json()
    assert member["balance"]["available"] == 200
    reasons = await pool.fetch(
        "SELECT details->>'reason' AS reason FROM audit_events WHERE action = 'member.adjust'"
        " AND subject = $1 ORDER BY occurred_at",
        f"program:{program}:member:adj",
    )
    assert [r["reason"] for r in reasons] == ["goodwill after a late delivery", "double credit"]


async def test_export_and_erasure(client: Client, program: str, pool: asyncpg.Pool) -> None:
    await client.post(
        f"/programs/{program}/members",
        json={"external_id": "priv", "email": "p@example.com", "consents": {"marketing": True}},
    )
    order = purchase("P-1", 4200, member="priv")
    assert (await client.post(f"/programs/{program}/purchases", json=order)).status_code == 201
    export = await client.get(f"/programs/{program}/members/priv/export")
    assert export.status_code == 200, export.text
    data = export.json()
    assert data["member"]["email"] == "p@example.com"
    assert [p["order_id"] for p in data["purchases"]] == ["P-1"]
    assert [t["amount"] for t in data["ledger"]] == [42]
    erased = await client.post(f"/programs/{program}/members/priv/erase")
    assert erased.status_code == 200, erased.text
    alias = erased.json()["pseudonym"]
    assert alias.startswith("erased-")
    assert (await client.get(f"/programs/{program}/members/priv")).status_code == 404
    row = await pool.fetchrow(
        "SELECT email, phone, consents, status FROM members WHERE external_id = $1", alias
    )
    assert dict(row) == {"email": None, "phone": None, "consents": {}, "status": "closed"}
    # The ledger keeps the history: the pending points are still accounted for.
    after = await client.get(f"/programs/{program}/members/{alias}/export")
    assert [t["amount"] for t in after.json()["ledger"]] == [42]
