"""The token endpoint (RFC 6749 client credentials), the JWKS that verifies
its tokens, client secret rotation, and signing key rotation."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from core.principal import system
from partners.client_schemas import SecretRotation
from partners.clients import rotate_secret
from partners.models import Partner, PartnerStatus
from tests.api.conftest import AUTH, assert_problem
from tests.api.partner_probe import probe_app
from tests.conftest import NewProgram
from tests.partners.conftest import NewPartner
from tests.partners.tokens import bearer, new_client, token_of

Client = AsyncTestClient[Litestar]
GRANT = {"grant_type": "client_credentials"}


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=probe_app(database_url)) as client:
        client.headers.update(AUTH)
        yield client


@pytest.fixture
async def firm(new_program: NewProgram, new_partner: NewPartner) -> tuple[Program, Partner]:
    program = await new_program()
    return program, await new_partner(program)


def basic(client_id: str, secret: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def oauth_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    return body


async def test_a_client_gets_a_token_that_the_published_keys_verify(
    client: Client, session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm
    issued = await new_client(session, program, partner, scopes=["points:issue", "statements:read"])

    response = await client.post(
        "/oauth/token", data=GRANT, headers=basic(issued.client_id, issued.client_secret)
    )

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    answer = response.json()
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 600
    assert answer["scope"] == "points:issue statements:read"
    header = jwt.get_unverified_header(answer["access_token"])
    assert (header["alg"], header["typ"]) == ("ES256", "at+jwt")
    keys = await client.get("/.well-known/jwks.json")
    assert keys.status_code == 200
    assert "max-age" in keys.headers["cache-control"]
    [jwk] = [k for k in keys.json()["keys"] if k["kid"] == header["kid"]]
    assert "d" not in jwk
    claims = jwt.decode(
        answer["access_token"],
        jwt.PyJWK(jwk).key,
        algorithms=["ES256"],
        audience="coalition-partner-api",
        issuer="coalition",
    )
    assert claims["sub"] == claims["client_id"] == issued.client_id
    assert (claims["program"], claims["partner"]) == (str(program.id), str(partner.id))
    assert claims["reach"] == "company"
    assert claims["exp"] - claims["iat"] == 600
    assert claims["jti"]
    # The form's fields authenticate as well as HTTP Basic does.
    again = await token_of(client, issued.client_id, issued.client_secret)
    assert again["access_token"] != answer["access_token"]


async def test_the_document_describes_the_token_and_the_oauth_errors(
    client: Client, session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    """A generated client reads the token and the RFC 6749 errors from the
    document: each answer is there, as JSON (not problem+json), with the
    fields the endpoint really sends, each described."""
    program, partner = firm
    issued = await new_client(session, program, partner, scopes=["points:issue"])
    document = (await client.get("/schema/openapi.json")).json()
    schemas = document["components"]["schemas"]
    responses = document["paths"]["/oauth/token"]["post"]["responses"]

    def described(status: str) -> dict[str, Any]:
        response = responses[status]
        assert response["description"].strip(), status
        assert list(response["content"]) == ["application/json"], status
        reference = response["content"]["application/json"]["schema"]["$ref"]
        schema: dict[str, Any] = schemas[reference.removeprefix("#/components/schemas/")]
        for field, definition in schema["properties"].items():
            assert definition.get("description", "").strip(), f"{status} {field}"
        return schema

    token = described("200")
    granted = await client.post(
        "/oauth/token", data=GRANT, headers=basic(issued.client_id, issued.client_secret)
    )
    assert granted.status_code == 200, granted.text
    assert (
        set(token["properties"])
        == set(granted.json())
        == {
            "access_token",
            "token_type",
            "expires_in",
            "scope",
        }
    )
    assert set(token["required"]) == set(token["properties"])
    refused = oauth_error(
        await client.post("/oauth/token", data={**GRANT, "client_id": issued.client_id}),
        401,
        "invalid_client",
    )
    for status in ("400", "401"):
        error = described(status)
        assert set(error["properties"]) == set(refused) == {"error", "error_description"}
        assert error["required"] == ["error"]
        assert {"invalid_request", "invalid_client"} <= set(error["properties"]["error"]["enum"])


async def test_bad_client_credentials_are_invalid_client(
    client: Client, session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm
    issued = await new_client(session, program, partner)
    form = {**GRANT, "client_id": issued.client_id}

    wrong = await client.post("/oauth/token", data={**form, "client_secret": "pcs_wrong"})
    unknown = await client.post(
        "/oauth/token", data={**GRANT, "client_id": "pc_" + "0" * 24, "client_secret": "x"}
    )
    malformed = await client.post(
        "/oauth/token", data=GRANT, headers={"Authorization": "Basic !!not-base64"}
    )
    none = await client.post("/oauth/token", data=GRANT)

    for response in (wrong, unknown, malformed, none):
        oauth_error(response, 401, "invalid_client")
        assert response.headers["www-authenticate"].startswith("Basic")
    # The same answer whether the client exists or not.
    assert wrong.json() == unknown.json()


async def test_malformed_requests_are_refused_as_oauth_says(
    client: Client, session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm
    issued = await new_client(session, program, partner)
    both = await client.post(
        "/oauth/token",
        data={**GRANT, "client_id": issued.client_id, "client_secret": issued.client_secret},
        headers=basic(issued.client_id, issued.client_secret),
    )
    no_grant = await client.post(
        "/oauth/token", data={}, headers=basic(issued.client_id, issued.client_secret)
    )
    password = await client.post(
        "/oauth/token",
        data={"grant_type": "password"},
        headers=basic(issued.client_id, issued.client_secret),
    )
    repeated = await client.post(
        "/oauth/token",
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers={
            **basic(issued.client_id, issued.client_secret),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )

    oauth_error(both, 400, "invalid_request")
    oauth_error(no_grant, 400, "invalid_request")
    oauth_error(password, 400, "unsupported_grant_type")
    oauth_error(repeated, 400, "invalid_request")


async def test_a_token_may_carry_fewer_scopes_never_more(
    client: Client, session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm
    issued = await new_client(session, program, partner, scopes=["points:issue", "statements:read"])
    auth = basic(issued.client_id, issued.client_secret)

    narrowed = await client.post(
        "/oauth/token", data={**GRANT, "scope": "points:issue"}, headers=auth
    )
    wider = await client.post(
        "/oauth/token", data={**GRANT, "scope": "points:issue webhooks:manage"}, headers=auth
    )

    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["scope"] == "points:issue"
    token = narrowed.json()["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["scope"] == "points:issue"
    # The probe's GET needs statements:read, which the narrowed token lacks.
    refused = await client.get("/partner/probe", headers=bearer(token))
    assert_problem(refused, 403, "forbidden")
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
    body = oauth_error(wider, 400, "invalid_scope")
    assert "webhooks:manage" in body["error_description"]


async def test_a_rotated_secret_works_beside_the_old_one_until_the_window_ends(
    client: Client, session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm
    issued = await new_client(session, program, partner)
    rotated = await client.post(
        f"/programs/{program.slug}/partners/{partner.slug}/clients/{issued.client_id}"
        "/secret-rotations",
        json={},
    )
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    until = datetime.fromisoformat(new["previous_valid_until"])
    assert timedelta(hours=23) < until - datetime.now(UTC) <= timedelta(hours=24)

    # Both work during the overlap.
    await token_of(client, issued.client_id, issued.client_secret)
    await token_of(client, issued.client_id, new["client_secret"])

    # A rotation whose overlap has ended (it happened 25 hours ago): only
    # the newest secret works.
    latest = await rotate_secret(
        session,
        program,
        partner,
        issued.client_id,
        SecretRotation(overlap_seconds=24 * 3600),
        principal=system("test"),
        now=datetime.now(UTC) - timedelta(hours=25),
    )
    await session.commit()
    for stale in (issued.client_secret, new["client_secret"]):
        refused = await client.post(
            "/oauth/token",
            data={**GRANT, "client_id": issued.client_id, "client_secret": stale},
        )
        oauth_error(refused, 401, "invalid_client")
    await token_of(client, issued.client_id, latest.client_secret)


async def test_a_firm_that_is_not_active_gets_no_token(
    client: Client,
    session: AsyncSession,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    for status in (PartnerStatus.INVITED, PartnerStatus.SUSPENDED, PartnerStatus.OFFBOARDED):
        partner = await new_partner(program, status=PartnerStatus.ACTIVE)
        # Made while the firm was active (an offboarded firm gets no new client).
        issued = await new_client(session, program, partner)
        partner.status = status
        await session.commit()
        refused = await client.post(
            "/oauth/token", data=GRANT, headers=basic(issued.client_id, issued.client_secret)
        )
        body = oauth_error(refused, 400, "unauthorized_client")
        assert str(status) in body["error_description"]
    # A wrong secret of such a client says nothing of its firm.
    wrong = await client.post(
        "/oauth/token", data={**GRANT, "client_id": issued.client_id, "client_secret": "nope"}
    )
    oauth_error(wrong, 401, "invalid_client")


async def test_a_key_rotation_keeps_the_old_keys_tokens_valid_until_retired(
    client: Client, session: AsyncSession, firm: tuple[Program, Partner], pool: Any
) -> None:
    program, partner = firm
    issued = await new_client(session, program, partner)
    before = (await token_of(client, issued.client_id, issued.client_secret))["access_token"]
    old_kid = jwt.get_unverified_header(before)["kid"]

    rotated = await client.post("/partner-signing-keys/rotations")

    assert rotated.status_code == 201, rotated.text
    new_kid = rotated.json()["kid"]
    assert new_kid != old_kid and rotated.json()["status"] == "current"
    after = (await token_of(client, issued.client_id, issued.client_secret))["access_token"]
    assert jwt.get_unverified_header(after)["kid"] == new_kid
    published = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
    assert {old_kid, new_kid} <= published
    for token in (before, after):
        assert (await client.get("/partner/probe", headers=bearer(token))).status_code == 200
    listed = {k["kid"]: k for k in (await client.get("/partner-signing-keys")).json()}
    assert listed[old_kid]["status"] == "published"
    assert await pool.fetchval(
        "SELECT private_key_sealed IS NULL FROM signing_keys WHERE kid = $1", old_kid
    )

    # Once retired, the old key verifies nothing.
    access = client.app.state.partner_access
    notices = access.notices
    await pool.execute(
        "UPDATE signing_keys SET retire_at = now() - interval '1 second' WHERE kid = $1", old_kid
    )
    await asyncio.wait_for(access.changed(notices), 30)
    refused = await client.get("/partner/probe", headers=bearer(before))
    assert_problem(refused, 401, "unauthorized")
    assert (await client.get("/partner/probe", headers=bearer(after))).status_code == 200
    published = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
    assert old_kid not in published


async def test_a_key_bound_to_a_program_cannot_rotate_the_signing_key(
    client: Client, firm: tuple[Program, Partner], pool: Any
) -> None:
    program, _ = firm
    issued = await client.post(
        "/api-keys",
        json={"name": f"bound-{program.slug}", "scopes": ["keys:manage"], "program": program.slug},
    )
    assert issued.status_code == 201, issued.text
    keys_before = await pool.fetchval("SELECT count(*) FROM signing_keys")

    refused = await client.post(
        "/partner-signing-keys/rotations",
        headers={"Authorization": f"Bearer {issued.json()['key']}"},
    )

    assert_problem(refused, 403, "forbidden")
    assert await pool.fetchval("SELECT count(*) FROM signing_keys") == keys_before


async def test_token_requests_are_limited_per_client(
    database_url: str, session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm
    issued = await new_client(session, program, partner)
    other = await new_client(session, program, partner)
    async with AsyncTestClient(app=probe_app(database_url, token_rate_limit=2)) as limited:
        for _ in range(2):
            await token_of(limited, issued.client_id, issued.client_secret)
        refused = await limited.post(
            "/oauth/token", data=GRANT, headers=basic(issued.client_id, issued.client_secret)
        )
        assert_problem(refused, 429, "too-many-requests")
        assert int(refused.headers["retry-after"]) >= 1
        # Another client has its own count.
        await token_of(limited, other.client_id, other.client_secret)
