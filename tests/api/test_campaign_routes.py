"""The partner API of joint campaigns over HTTP: propose, approve, the start
and end jobs, the bonus on a purchase reported at a participant's till (the
``partner.points_issued`` subscriber as the worker runs it), attribution,
stop; a partner that takes no part sees nothing (404); bad input answers
problem+json and writes nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from api.modules import SUBSCRIBERS
from core.outbox import OutboxEvent
from partners import events
from tests.api.conftest import PROBLEM_JSON, assert_problem, open_program
from tests.api.test_partner_coalition import firm, ok, published
from tests.partners.tokens import api_partner_bearer

Client = AsyncTestClient[Litestar]
SCOPES = ("points:issue", "campaigns:manage")


async def _posted(client: Client, path: str, token: dict[str, str], body: Any = None) -> Any:
    return await client.post(
        f"/partner{path}", json=body, headers={**token, "Idempotency-Key": str(uuid.uuid4())}
    )


async def coalition(client: Client) -> dict[str, Any]:
    program = await open_program(client)
    world: dict[str, Any] = {"program": program}
    for side in ("a", "b", "c"):
        slug = await firm(client, program)
        await published(client, program, slug)
        await ok(
            await client.post(
                f"/programs/{program}/partners/{slug}/funding",
                json={"reference": f"INV-{side}", "points": 5000, "amount_minor": 7500},
            )
        )
        world[side] = slug
        world[f"{side}_token"] = await api_partner_bearer(client, program, slug, scopes=SCOPES)
    for member in ("ann", "ben"):
        await ok(await client.post(f"/programs/{program}/members", json={"external_id": member}))
    return world


def proposal(world: dict[str, Any], **fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "reference": f"camp-{uuid.uuid4().hex[:8]}",
        "name": "Winter double points",
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(days=7)).isoformat(),
        "participants": [
            {"partner": world["a"], "share_bp": 6000},
            {"partner": world["b"], "share_bp": 4000},
        ],
        "segment": {"kind": "all"},
        "rules": {"multiplier_bp": 10000},
        "budget_points": 1000,
        "holdout_bp": 0,
        **fields,
    }


async def written(pool: asyncpg.Pool, program: str) -> tuple[int, int]:
    campaigns = await pool.fetchval(
        "SELECT count(*) FROM campaigns c JOIN programs p ON p.id = c.program_id WHERE p.slug = $1",
        program,
    )
    lines = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE subject LIKE $1", f"program:{program}:campaign:%"
    )
    return campaigns, lines


async def handle_issuance(engine: AsyncEngine, pool: asyncpg.Pool, issuance_id: str) -> None:
    """What the worker's drain does with the issuance's event: every
    subscriber of its topic, in one transaction."""
    row = await pool.fetchrow(
        "SELECT * FROM outbox_events WHERE topic = $1 AND payload->>'issuance_id' = $2",
        events.POINTS_ISSUED,
        issuance_id,
    )
    assert row is not None
    event = OutboxEvent(
        id=row["id"],
        position=row["position"],
        topic=row["topic"],
        subject=row["subject"],
        # The pool decodes jsonb (ledger.connection's codec).
        payload=row["payload"],
        created_at=row["created_at"],
    )
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session, session.begin():
        await SUBSCRIBERS[events.POINTS_ISSUED](session, event)


async def test_a_campaign_from_proposal_to_release(
    client: Client, pool: asyncpg.Pool, engine: AsyncEngine
) -> None:
    world = await coalition(client)
    made = await _posted(client, "/campaigns", world["a_token"], proposal(world))
    assert made.status_code == 201, made.text
    campaign = made.json()
    assert campaign["status"] == "proposed"
    path = f"/campaigns/{campaign['id']}"
    # B sees it, in its list too.
    listed = await client.get("/partner/campaigns", headers=world["b_token"])
    assert [c["id"] for c in listed.json()["items"]] == [campaign["id"]]
    approved = await _posted(client, f"{path}/approvals", world["b_token"])
    assert approved.status_code == 200 and approved.json()["status"] == "approved"
    assert (await client.post("/jobs/start-campaigns/runs")).status_code in (200, 201)
    shown = (await client.get(f"/partner{path}", headers=world["a_token"])).json()
    assert shown["status"] == "running" and shown["segment_size"] == 2
    # A purchase at A's till: 20 points issued by the program's rules, as
    # many again as bonus (12 from A, 8 from B).
    issued = await _posted(
        client,
        "/issuances",
        world["a_token"],
        {
            "transaction_id": "T-1",
            "member": "ann",
            "purchase_amount_minor": 2000,
            "currency": "ZAR",
        },
    )
    assert issued.status_code == 201, issued.text
    await handle_issuance(engine, pool, issued.json()["id"])
    figures = (await client.get(f"/partner{path}/attribution", headers=world["b_token"])).json()
    assert figures["bonus_points"] == 20 and figures["members_reached"] == 1
    assert [p["cost_points"] for p in figures["participants"]] == [12, 8]
    assert figures["targeted"]["spend_minor"] == 2000
    stopped = await _posted(client, f"{path}/stop", world["b_token"])
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert (await client.post("/jobs/end-campaigns/runs")).status_code in (200, 201)
    shown = (await client.get(f"/partner{path}", headers=world["a_token"])).json()
    assert shown["released_at"] is not None


async def test_a_partner_that_takes_no_part_sees_nothing(client: Client) -> None:
    world = await coalition(client)
    campaign = (await _posted(client, "/campaigns", world["a_token"], proposal(world))).json()
    path = f"/campaigns/{campaign['id']}"
    outsider = world["c_token"]
    for response in (
        await client.get(f"/partner{path}", headers=outsider),
        await client.get(f"/partner{path}/attribution", headers=outsider),
        await _posted(client, f"{path}/approvals", outsider),
        await _posted(client, f"{path}/stop", outsider),
    ):
        assert_problem(response, 404, "not-found")
    # The same answer as for a campaign that does not exist.
    assert_problem(
        await client.get(f"/partner/campaigns/{uuid.uuid4()}", headers=outsider), 404, "not-found"
    )
    assert (await client.get("/partner/campaigns", headers=outsider)).json()["items"] == []
    shown = (await client.get(f"/partner{path}", headers=world["a_token"])).json()
    assert shown["status"] == "proposed" and shown["stopped_by"] is None


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"participants": [{"partner": "x", "share_bp": 6000}]}, 400),
        ({"budget_points": 0}, 400),
        ({"participants": [{"partner": "fuel-a", "share_bp": 6000}]}, 400),
        ({"holdout_bp": 6000}, 400),
        ({"rules": {}}, 400),
        ({"segment": {"kind": "tiers"}}, 400),
        ({"segment": {"kind": "all", "members": ["ann"]}}, 400),
        ({"ends_at": "2020-01-01T00:00:00Z"}, 400),
        ({"name": "bad\u0000name"}, 400),
        ({"stores": ["nobody-here"]}, 422),
    ],
)
async def test_bad_proposals_are_problems_and_write_nothing(
    client: Client, pool: asyncpg.Pool, change: dict[str, Any], status: int
) -> None:
    world = await coalition(client)
    before = await written(pool, world["program"])
    response = await _posted(client, "/campaigns", world["a_token"], proposal(world) | change)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert await written(pool, world["program"]) == before


async def test_shares_of_unknown_or_other_partners_are_refused(
    client: Client, pool: asyncpg.Pool
) -> None:
    world = await coalition(client)
    before = await written(pool, world["program"])
    other = await open_program(client)
    foreign = await firm(client, other)
    for participants in (
        [{"partner": world["b"], "share_bp": 10000}],  # the proposer takes no part
        [{"partner": world["a"], "share_bp": 5000}, {"partner": foreign, "share_bp": 5000}],
    ):
        assert_problem(
            await _posted(
                client, "/campaigns", world["a_token"], proposal(world, participants=participants)
            ),
            422,
            "invalid-campaign",
        )
    assert await written(pool, world["program"]) == before


async def test_the_operator_proposes_and_every_participant_approves(client: Client) -> None:
    world = await coalition(client)
    base = f"/programs/{world['program']}/campaigns"
    made = await client.post(base, json=proposal(world))
    assert made.status_code == 201, made.text
    campaign = made.json()
    # The operator funds and approves nothing: both participants must.
    assert [p["approved_at"] for p in campaign["participants"]] == [None, None]
    path = f"/campaigns/{campaign['id']}"
    after_a = await _posted(client, f"{path}/approvals", world["a_token"])
    assert after_a.json()["status"] == "proposed"
    after_b = await _posted(client, f"{path}/approvals", world["b_token"])
    assert after_b.json()["status"] == "approved"
    listed = (await client.get(base)).json()["items"]
    assert [c["id"] for c in listed] == [campaign["id"]]
    stopped = await client.post(f"{base}/{campaign['id']}/stop")
    assert stopped.status_code == 200 and stopped.json()["stopped_by"] == "admin"
    # Approving a stopped campaign: nothing left to approve for A, who did.
    assert (await _posted(client, f"{path}/approvals", world["a_token"])).status_code == 200
