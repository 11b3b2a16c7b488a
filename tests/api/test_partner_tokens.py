"""The partner guard: forged, expired, tampered and wrong-scope tokens, a
revoked client or a firm leaving ``active`` stopping live tokens at once in
every process, the reach of a token, and the per-partner rate limit."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.utils import base64url_encode
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession

from api.partner_access import PartnerAccess
from core.models import Program
from core.principal import Reach
from partners.access_tokens import sign_access_token
from partners.models import Partner
from tests.api.conftest import AUTH, assert_problem
from tests.api.partner_probe import probe_app
from tests.conftest import NewProgram
from tests.partners.conftest import NewPartner
from tests.partners.tokens import bearer, new_client, partner_bearer, token_of

Client = AsyncTestClient[Litestar]
NOTICE_WAIT = 30.0


@pytest.fixture(scope="module")
async def client(database_url: str) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=probe_app(database_url)) as client:
        client.headers.update(AUTH)
        yield client


@pytest.fixture(scope="module")
async def other_process(database_url: str) -> AsyncIterator[Client]:
    """A second app on the same database: another server process."""
    async with AsyncTestClient(app=probe_app(database_url)) as client:
        yield client


def access_of(client: Client) -> PartnerAccess:
    access: PartnerAccess = client.app.state.partner_access
    return access


async def listening(client: Client) -> PartnerAccess:
    access = access_of(client)
    deadline = time.monotonic() + NOTICE_WAIT
    while not access.listening:
        assert time.monotonic() < deadline, "the app never listened for changes"
        await asyncio.sleep(0.01)
    return access


@pytest.fixture
async def firm(new_program: NewProgram, new_partner: NewPartner) -> tuple[Program, Partner]:
    program = await new_program()
    return program, await new_partner(program)


def segment(part: dict[str, Any]) -> str:
    return base64url_encode(json.dumps(part).encode()).decode()


def refused(response: Any) -> str:
    assert_problem(response, 401, "unauthorized")
    challenge: str = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer")
    return challenge


async def test_a_valid_token_names_its_firm_and_scopes(
    client: Client, session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm
    headers = await partner_bearer(client, session, program, partner, scopes=["statements:read"])

    me = await client.get("/partner/probe", headers=headers)

    assert me.status_code == 200, me.text
    assert me.json()["program_id"] == str(program.id)
    assert me.json()["partner_ids"] == [str(partner.id)]
    assert me.json()["scopes"] == ["statements:read"]
    assert me.json()["actor"].startswith("partner:pc_")


async def test_forged_expired_and_malformed_tokens_are_refused(
    client: Client, session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm
    issued = await new_client(session, program, partner)
    good = (await token_of(client, issued.client_id, issued.client_secret))["access_token"]
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    access = access_of(client)
    signer = await access.signer()

    def signed(**changes: Any) -> str:
        return jwt.encode(
            {**claims, **changes}, signer.private_key, algorithm="ES256", headers=header
        )

    expired = sign_access_token(
        signer,
        client_id=issued.client_id,
        program_id=program.id,
        partner_id=partner.id,
        reach=Reach.COMPANY,
        scopes=["statements:read"],
        issuer=access.issuer,
        now=datetime.now(UTC) - timedelta(hours=1),
        lifetime=timedelta(minutes=10),
    )
    head, _, signature = good.split(".")
    tampered = f"{head}.{segment({**claims, 'partner': str(program.id)})}.{signature}"
    unsigned = jwt.encode(claims, "", algorithm="none", headers={"kid": header["kid"]})
    [jwk] = [
        k
        for k in (await client.get("/.well-known/jwks.json")).json()["keys"]
        if k["kid"] == header["kid"]
    ]
    public_pem = jwt.PyJWK(jwk).key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    # The classic confusion: HS256 keyed with the published public key.
    confused_head = segment({"alg": "HS256", "kid": header["kid"], "typ": "at+jwt"})
    confused_body = segment(claims)
    mac = hmac.new(public_pem, f"{confused_head}.{confused_body}".encode(), hashlib.sha256)
    confused = f"{confused_head}.{confused_body}.{base64url_encode(mac.digest()).decode()}"
    bad = {
        "expired": expired,
        "tampered": tampered,
        "alg none": unsigned,
        "HS256 with the public key": confused,
        "wrong audience": signed(aud="someone-else"),
        "wrong issuer": signed(iss="elsewhere"),
        "unknown kid": jwt.encode(
            claims, signer.private_key, algorithm="ES256", headers={"kid": "no-such-key"}
        ),
        "not a jwt": "garbage",
        "an operator key": AUTH["Authorization"].removeprefix("Bearer "),
    }
    for name, token in bad.items():
        response = await client.get("/partner/probe", headers=bearer(token))
        assert 'error="invalid_token"' in refused(response), name
    assert (
        "expired"
        in (await client.get("/partner/probe", headers=bearer(expired))).json()["detail"].lower()
    )
    missing = await client.get("/partner/probe", headers={"Authorization": ""})
    assert "error=" not in refused(missing)
    assert (await client.get("/partner/probe", headers=bearer(good))).status_code == 200


async def test_a_revoked_client_is_refused_at_once_in_every_process(
    client: Client,
    other_process: Client,
    session: AsyncSession,
    firm: tuple[Program, Partner],
) -> None:
    program, partner = firm
    issued = await new_client(session, program, partner)
    token = bearer((await token_of(client, issued.client_id, issued.client_secret))["access_token"])
    other = await listening(other_process)
    # Both processes trust the token, and remember its client.
    assert (await client.get("/partner/probe", headers=token)).status_code == 200
    assert (await other_process.get("/partner/probe", headers=token)).status_code == 200
    notices = other.notices

    revoked = await client.delete(
        f"/programs/{program.slug}/partners/{partner.slug}/clients/{issued.client_id}"
    )

    assert revoked.status_code == 204, revoked.text
    # The process that revoked it refuses it without waiting for a notice;
    # the other, as soon as the commit's notice reaches it.
    refused(await client.get("/partner/probe", headers=token))
    await asyncio.wait_for(other.changed(notices), NOTICE_WAIT)
    assert "revoked" in (await other_process.get("/partner/probe", headers=token)).json()["detail"]
    no_token = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": issued.client_id,
            "client_secret": issued.client_secret,
        },
    )
    assert (no_token.status_code, no_token.json()["error"]) == (401, "invalid_client")
    listed = await client.get(f"/programs/{program.slug}/partners/{partner.slug}/clients")
    assert listed.json()["items"][0]["status"] == "revoked"


async def test_a_suspended_firms_live_tokens_stop_working(
    client: Client, other_process: Client, session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm
    token = await partner_bearer(client, session, program, partner)
    other = await listening(other_process)
    assert (await other_process.get("/partner/probe", headers=token)).status_code == 200
    notices = other.notices

    moved = await client.post(
        f"/programs/{program.slug}/partners/{partner.slug}/status",
        json={"status": "suspended", "reason": "unpaid statement"},
    )

    assert moved.status_code == 201, moved.text
    await asyncio.wait_for(other.changed(notices), NOTICE_WAIT)
    refused(await other_process.get("/partner/probe", headers=token))
    # Active again: the same token works again (it has not expired).
    notices = other.notices
    back = await client.post(
        f"/programs/{program.slug}/partners/{partner.slug}/status", json={"status": "active"}
    )
    assert back.status_code == 201, back.text
    await asyncio.wait_for(other.changed(notices), NOTICE_WAIT)
    assert (await other_process.get("/partner/probe", headers=token)).status_code == 200


async def test_without_notices_nothing_of_a_client_is_remembered(
    database_url: str, session: AsyncSession, firm: tuple[Program, Partner], pool: Any
) -> None:
    program, partner = firm
    async with AsyncTestClient(app=probe_app(database_url)) as deaf:
        access = await listening(deaf)
        issued = await new_client(session, program, partner)
        token = bearer(
            (await token_of(deaf, issued.client_id, issued.client_secret))["access_token"]
        )
        # As if the listening connection were down: every request asks.
        access._listening = False
        assert (await deaf.get("/partner/probe", headers=token)).status_code == 200
        listener = access._on_notice
        access._on_notice = lambda *_: None  # type: ignore[method-assign]
        try:
            await pool.execute(
                "UPDATE partner_clients SET revoked_at = now() WHERE client_id = $1",
                issued.client_id,
            )
            refused(await deaf.get("/partner/probe", headers=token))
        finally:
            access._on_notice = listener  # type: ignore[method-assign]


async def test_a_token_reaches_the_companies_of_its_reach(
    client: Client, session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    group = await new_partner(program)
    company = await new_partner(program, parent=group)
    store = await new_partner(program, parent=company)
    sibling = await new_partner(program, parent=group)
    reaches = {
        Reach.COMPANY: {company.id},
        Reach.SUBSIDIARIES: {company.id, store.id},
        Reach.GROUP: {group.id, company.id, store.id, sibling.id},
    }
    for reach, expected in reaches.items():
        headers = await partner_bearer(client, session, program, company, reach=reach)
        me = (await client.get("/partner/probe", headers=headers)).json()
        assert set(me["partner_ids"]) == {str(i) for i in expected}, reach
        assert me["partner_id"] == str(company.id)


async def test_each_partner_firm_has_its_own_rate_limit(
    database_url: str, session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    first, second = await new_partner(program), await new_partner(program)
    async with AsyncTestClient(app=probe_app(database_url, partner_rate_limit=2)) as limited:
        token = await partner_bearer(limited, session, program, first)
        # Two clients of one firm share its count.
        same_firm = await partner_bearer(limited, session, program, first)
        assert (await limited.get("/partner/probe", headers=token)).status_code == 200
        ok = await limited.get("/partner/probe", headers=same_firm)
        assert ok.status_code == 200 and ok.headers["ratelimit-remaining"] == "0"

        over = await limited.get("/partner/probe", headers=token)

        assert_problem(over, 429, "too-many-requests")
        assert int(over.headers["retry-after"]) >= 1
        other_firm = await partner_bearer(limited, session, program, second)
        assert (await limited.get("/partner/probe", headers=other_firm)).status_code == 200
