"""The data-sharing API over HTTP: two partners' agreement from proposal
through both opt-ins to revocation; members' consent set through the member
API; the shared read, export and webhook push, each filtered by consent and
logged; the log seen by both partners and by the member; a third partner
finds nothing (404); bad input answers problem+json and writes nothing."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.settings import Settings
from tests.api.conftest import ADMIN_TOKEN, AUTH, SIGNING_SECRET, assert_problem, open_program
from tests.api.test_member_api import SECRET, bearer, token
from tests.api.test_partner_coalition import firm, ok, published
from tests.partners.tokens import api_partner_bearer

Client = AsyncTestClient[Litestar]
BASE = "/partner/data-sharing/agreements"


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        member_jwt_secret=SECRET,
        sweep_interval=0,
        signing_secret=SIGNING_SECRET,
    )
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        client.headers.update(AUTH)
        yield client


async def posted(client: Client, path: str, who: dict[str, str], body: Any = None) -> Any:
    return await client.post(path, json=body, headers={**who, "Idempotency-Key": str(uuid.uuid4())})


async def coalition(client: Client) -> dict[str, Any]:
    program = await open_program(client)
    world: dict[str, Any] = {"program": program}
    for side in ("a", "b", "c"):
        slug = await firm(client, program, name=f"Firm {side.upper()}")
        await published(client, program, slug)
        world[side] = slug
        world[f"{side}_token"] = await api_partner_bearer(
            client, program, slug, scopes=("data:share",)
        )
    for member in ("ann", "ben", "cy"):
        await ok(
            await client.post(
                f"/programs/{program}/members",
                json={
                    "external_id": member,
                    "email": f"{member}@example.com",
                    "phone": "+27115550000",
                },
            )
        )
        me = bearer(token(program, member))
        world[member] = me
        await ok(
            await client.put(
                f"/me/partner-links/{world['a']}", json={"identifier": f"card-{member}"}, headers=me
            )
        )
    return world


def proposal(world: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "counterparty": world["b"],
        "purpose": "Offers to our shared customers",
        "direction": "proposer_to_counterparty",
        "fields": ["email", "partner_identifier"],
        "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        **fields,
    }


async def consent(client: Client, who: dict[str, str], field: str, granted: bool = True) -> Any:
    return await ok(
        await client.put(
            f"/me/data-sharing/consents/{field}", json={"granted": granted}, headers=who
        )
    )


async def lines(pool: asyncpg.Pool, agreement: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT member_id, fields, channel, reference FROM data_disclosures"
            " WHERE agreement_id = $1 ORDER BY id",
            uuid.UUID(agreement),
        )
    )


async def member_id(pool: asyncpg.Pool, program: str, external_id: str) -> uuid.UUID:
    found: uuid.UUID = await pool.fetchval(
        "SELECT m.id FROM members m JOIN programs p ON p.id = m.program_id"
        " WHERE p.slug = $1 AND m.external_id = $2",
        program,
        external_id,
    )
    return found


async def endpoint(pool: asyncpg.Pool, program: str, partner: str) -> uuid.UUID:
    made = uuid.uuid4()
    await pool.execute(
        "INSERT INTO webhook_endpoints (id, program_id, partner_id, url, description, status,"
        " secret) SELECT $1, p.program_id, p.id, 'https://example.com/hook', 'test', 'enabled',"
        " 'whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q='"
        " FROM partners p JOIN programs g ON g.id = p.program_id WHERE g.slug = $2 AND p.slug = $3",
        made,
        program,
        partner,
    )
    return made


async def test_an_agreement_from_proposal_to_revocation(client: Client, pool: asyncpg.Pool) -> None:
    w = await coalition(client)
    a, b, c = w["a_token"], w["b_token"], w["c_token"]
    ann = await member_id(pool, w["program"], "ann")
    ben = await member_id(pool, w["program"], "ben")
    cy = await member_id(pool, w["program"], "cy")
    await consent(client, w["ann"], "email")
    await consent(client, w["ann"], "phone")  # not a field of the agreement
    await consent(client, w["cy"], "partner_identifier")
    await consent(client, w["ben"], "email")
    await consent(client, w["ben"], "email", granted=False)  # withdrawn

    made = await posted(client, BASE, a, proposal(w))
    assert made.status_code == 201, made.text
    agreement = made.json()
    assert agreement["status"] == "proposed" and agreement["counterparty"] == w["b"]
    path = f"{BASE}/{agreement['id']}"

    # Nothing before both opted in.
    assert_problem(
        await client.get(f"{path}/members", headers=b), 409, "data-sharing-agreement-not-in-force"
    )
    await ok(await posted(client, f"{path}/opt-in", a))
    assert_problem(
        await client.get(f"{path}/members", headers=b), 409, "data-sharing-agreement-not-in-force"
    )
    opted = await ok(await posted(client, f"{path}/opt-in", b))
    assert opted["status"] == "active"

    # A third partner finds nothing, whatever it asks.
    for response in (
        await client.get(path, headers=c),
        await client.get(f"{path}/members", headers=c),
        await client.get(f"{path}/export", headers=c),
        await client.get(f"{path}/disclosures", headers=c),
        await posted(client, f"{path}/opt-in", c),
        await posted(client, f"{path}/revoke", c),
        await posted(client, f"{path}/pushes", c, {"members": ["ann"]}),
    ):
        assert_problem(response, 404, "not-found")
    assert (await ok(await client.get(BASE, headers=c)))["items"] == []

    # B reads: only consented fields of the agreement, members with none left out.
    page = await ok(await client.get(f"{path}/members", headers=b))
    by_member = {item["member"]: item for item in page["items"]}
    assert set(by_member) == {str(ann), str(cy)}
    assert by_member[str(ann)] == {"member": str(ann), "email": "ann@example.com"}
    assert by_member[str(cy)] == {"member": str(cy), "partner_identifier": "card-cy"}
    # The direction shares nothing with A.
    assert_problem(
        await client.get(f"{path}/members", headers=a), 403, "data-sharing-not-a-recipient"
    )

    exported = await client.get(f"{path}/export", headers=b)
    assert exported.status_code == 200, exported.text
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["member", "email", "partner_identifier"]
    assert {r[0]: r[1:] for r in rows[1:]} == {
        str(ann): [by_member[str(ann)].get("email") or "", ""],
        str(cy): ["", "card-cy"],
    }
    export_id = exported.headers["export-id"]

    hook = await endpoint(pool, w["program"], w["b"])
    pushed = await ok(
        await posted(client, f"{path}/pushes", a, {"members": ["ann", "ben", "zed"]}), 202
    )
    assert pushed["members"] == 1 and len(pushed["deliveries"]) == 1
    delivery = uuid.UUID(hex=pushed["deliveries"][0].removeprefix("msg_"))
    body = await pool.fetchval("SELECT body FROM webhook_deliveries WHERE id = $1", delivery)
    assert agreement["id"] in body and str(ann) in body and str(ben) not in body
    assert (
        await pool.fetchval("SELECT endpoint_id FROM webhook_deliveries WHERE id = $1", delivery)
        == hook
    )

    log = await lines(pool, agreement["id"])
    assert [(r["member_id"], r["channel"]) for r in log] == [
        (ann, "api"),
        (cy, "api"),
        (ann, "export"),
        (cy, "export"),
        (ann, "webhook"),
    ]
    assert [r["reference"] for r in log if r["channel"] == "export"] == [export_id, export_id]
    assert all("phone" not in r["fields"] for r in log)

    # Both partners see the same log.
    seen_by_a = await ok(await client.get(f"{path}/disclosures", headers=a))
    seen_by_b = await ok(await client.get(f"{path}/disclosures", headers=b))
    assert seen_by_a == seen_by_b and len(seen_by_a["items"]) == 5
    assert {(i["from_partner"], i["to_partner"]) for i in seen_by_a["items"]} == {(w["a"], w["b"])}

    # The member sees what went to whom.
    mine = await ok(await client.get("/me/data-sharing/disclosures", headers=w["ann"]))
    assert [(i["to_partner"], i["channel"]) for i in mine["items"]] == [
        ("Firm B", "webhook"),
        ("Firm B", "export"),
        ("Firm B", "api"),
    ]
    assert (await ok(await client.get("/me/data-sharing/disclosures", headers=w["ben"])))[
        "items"
    ] == []

    # B revokes: the waiting delivery is cancelled, nothing more is shared.
    revoked = await ok(await posted(client, f"{path}/revoke", b))
    assert revoked["status"] == "revoked" and revoked["revoked_by"] == w["b"]
    assert (
        await pool.fetchval("SELECT status FROM webhook_deliveries WHERE id = $1", delivery)
        == "dead"
    )
    for response in (
        await client.get(f"{path}/members", headers=b),
        await client.get(f"{path}/export", headers=b),
        await posted(client, f"{path}/pushes", a, {"members": ["ann"]}),
    ):
        assert_problem(response, 409, "data-sharing-agreement-not-in-force")
    assert len(await lines(pool, agreement["id"])) == 4  # the unsent webhook's line went
    assert len((await ok(await client.get(f"{path}/disclosures", headers=a)))["items"]) == 4


async def test_consents_through_the_member_api(client: Client, pool: asyncpg.Pool) -> None:
    w = await coalition(client)
    views = await ok(await client.get("/me/data-sharing/consents", headers=w["ann"]))
    assert {v["field"]: v["granted"] for v in views} == dict.fromkeys(
        ("email", "phone", "tier", "member_since", "partner_identifier"), False
    )
    granted = await consent(client, w["ann"], "tier")
    assert granted["granted"] is True
    withdrawn = await consent(client, w["ann"], "tier", granted=False)
    assert withdrawn["granted"] is False and withdrawn["withdrawn_at"]
    views = await ok(await client.get("/me/data-sharing/consents", headers=w["ann"]))
    assert {v["field"]: v["granted"] for v in views}["tier"] is False


async def test_bad_input_writes_nothing(client: Client, pool: asyncpg.Pool) -> None:
    w = await coalition(client)
    before = await pool.fetchval("SELECT count(*) FROM data_sharing_agreements")
    for body, status, slug in (
        (proposal(w, fields=["email", "salary"]), 400, "validation-error"),
        (proposal(w, fields=[]), 400, "validation-error"),
        (proposal(w, direction="sideways"), 400, "validation-error"),
        (proposal(w, expires_at="2020-01-01T00:00:00Z"), 422, "invalid-data-sharing-agreement"),
        (proposal(w, fields=["email", "email"]), 422, "invalid-data-sharing-agreement"),
        (proposal(w, counterparty=w["a"]), 422, "invalid-data-sharing-agreement"),
        (proposal(w, counterparty="nobody"), 404, "not-found"),
        (proposal(w, surprise=1), 400, "validation-error"),
    ):
        assert_problem(await posted(client, BASE, w["a_token"], body), status, slug)
    assert await pool.fetchval("SELECT count(*) FROM data_sharing_agreements") == before
    consents = await pool.fetchval("SELECT count(*) FROM data_sharing_consents")
    assert_problem(
        await client.put(
            "/me/data-sharing/consents/salary", json={"granted": True}, headers=w["ann"]
        ),
        422,
        "unknown-data-sharing-field",
    )
    assert_problem(
        await client.put(
            "/me/data-sharing/consents/email", json={"granted": "yes"}, headers=w["ann"]
        ),
        400,
        "validation-error",
    )
    assert await pool.fetchval("SELECT count(*) FROM data_sharing_consents") == consents
    made = await ok(await posted(client, BASE, w["a_token"], proposal(w)))
    assert_problem(
        await posted(client, f"{BASE}/{made['id']}/pushes", w["a_token"], {"members": []}),
        400,
        "validation-error",
    )
