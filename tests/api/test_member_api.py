"""The member app API: tokens checked for real, own data only, ETag, limits."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import jwt
import pytest
import time_machine
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession

from api.app import create_app
from api.member_auth import InvalidToken, TokenVerifier
from api.settings import Settings, SettingsError
from core.principal import system
from ledger import Ledger
from rewards.programs import Enrolment, enrol_member
from rewards.purchase_recording import record_purchase
from rewards.purchases import PurchaseEvent
from rewards.rule_versions import draft_rules, publish_rules
from rewards.rules import EarnRules
from tests.api.conftest import ADMIN_TOKEN, PROBLEMS, fund
from tests.conftest import NewProgram

SECRET = "a-development-secret-of-32-chars!"
AUDIENCE = "coalition-members"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
_orders = itertools.count(1)


def jwks() -> str:
    keys = []
    for kid, key, algorithm in (
        ("rsa-1", RSA_KEY, jwt.algorithms.RSAAlgorithm),
        ("ec-1", EC_KEY, jwt.algorithms.ECAlgorithm),
    ):
        jwk = json.loads(algorithm.to_jwk(key.public_key()))
        keys.append({**jwk, "kid": kid, "use": "sig"})
    return json.dumps({"keys": keys})


def token(
    program: str,
    member: str,
    *,
    key: Any = SECRET,
    algorithm: str = "HS256",
    kid: str | None = None,
    audience: str = AUDIENCE,
    expires_in: int = 300,
) -> str:
    claims = {
        "sub": member,
        "program": program,
        "aud": audience,
        "exp": int(time.time()) + expires_in,
    }
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid} if kid else None)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


@pytest.fixture(scope="module")
async def member_client(database_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        member_jwt_secret=SECRET,
        member_jwt_jwks=jwks(),
        member_rate_limit=1000,
        sweep_interval=0,
    )
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        yield client


@pytest.fixture
async def shop(session: AsyncSession, ledger: Ledger, new_program: NewProgram) -> str:
    program = await new_program()
    now = datetime.now(UTC)
    version = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(1)), principal=system("test")
    )
    await publish_rules(
        session,
        program,
        version.version,
        now - timedelta(days=1),
        now=now - timedelta(days=1),
        principal=system("test"),
    )
    for name, amount in (("ann", 2500), ("ben", 900)):
        await enrol_member(
            session, ledger, program, Enrolment(external_id=name), principal=system("test")
        )
        await record_purchase(
            session,
            ledger,
            program,
            PurchaseEvent(
                member=name,
                order_id=f"M-{next(_orders)}",
                amount_minor=amount,
                currency="ZAR",
                occurred_at=now,
            ),
            now,
            principal=system("test"),
        )
    await session.commit()
    return program.slug


async def test_member_sees_own_balance_and_history(
    member_client: AsyncTestClient[Litestar], shop: str, session: AsyncSession, ledger: Ledger
) -> None:
    ann = bearer(token(shop, "ann"))
    balance = await member_client.get("/me/balance", headers=ann)
    assert balance.status_code == 200, balance.text
    assert (balance.json()["pending"], balance.json()["available"]) == (25, 0)
    ben = await member_client.get("/me/balance", headers=bearer(token(shop, "ben")))
    assert ben.json()["pending"] == 9
    history = await member_client.get("/me/transactions", headers=ann)
    [movement] = history.json()["movements"]
    assert (movement["points"], movement["kind"], movement["state"]) == (25, "earn", "pending")
    # Once settled, the earning shows once, as posted.
    from core.programs import get_program as load_program
    from rewards.settlement import settle_matured_earnings

    program = await load_program(session, system("test"), shop)
    await settle_matured_earnings(
        session, ledger, datetime.now(UTC) + timedelta(days=60), program=program
    )
    await session.commit()
    settled = (await member_client.get("/me/transactions", headers=ann)).json()["movements"]
    assert [(m["points"], m["state"]) for m in settled] == [(25, "posted")]
    profile = await member_client.get("/me", headers=ann)
    assert profile.json()["external_id"] == "ann"
    expiring = await member_client.get("/me/expiring", headers=ann)
    assert (expiring.status_code, expiring.json()["points"]) == (200, 0)
    tier = await member_client.get("/me/tier", headers=ann)
    assert tier.status_code == 200, tier.text
    assert (tier.json()["basis"], tier.json()["qualifying"]) == ("spend", 2500)


async def test_balance_etag(member_client: AsyncTestClient[Litestar], shop: str) -> None:
    headers = bearer(token(shop, "ann"))
    first = await member_client.get("/me/balance", headers=headers)
    etag = first.headers["etag"]
    again = await member_client.get("/me/balance", headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304
    stale = await member_client.get("/me/balance", headers={**headers, "If-None-Match": '"x"'})
    assert stale.status_code == 200


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda s: token(s, "ann", expires_in=-10), "expired"),
        (lambda s: token(s, "ann", audience="someone-else"), "audience"),
        (lambda s: token(s, "ann", key="another-secret-that-is-32-chars!!"), "signature"),
        (lambda s: token(s, "ann")[:-3] + "abc", "tampered"),
        (
            lambda s: jwt.encode(
                {"sub": "ann", "program": s, "aud": AUDIENCE, "exp": int(time.time()) + 60},
                None,
                algorithm="none",
            ),
            "none",
        ),
        (lambda s: "not-a-token", "garbage"),
    ],
)
async def test_bad_tokens_are_401(
    member_client: AsyncTestClient[Litestar], shop: str, make: Any, why: str
) -> None:
    response = await member_client.get("/me/balance", headers=bearer(make(shop)))
    assert response.status_code == 401, why
    assert response.json()["type"] == PROBLEMS + "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_asymmetric_tokens_from_the_key_set(
    member_client: AsyncTestClient[Litestar], shop: str
) -> None:
    for key, algorithm, kid in ((RSA_KEY, "RS256", "rsa-1"), (EC_KEY, "ES256", "ec-1")):
        signed = token(shop, "ann", key=key, algorithm=algorithm, kid=kid)
        response = await member_client.get("/me/balance", headers=bearer(signed))
        assert response.status_code == 200, (algorithm, response.text)
    # An ES256 header pointing at the RSA key: refused, not a crash.
    crossed = token(shop, "ann", key=EC_KEY, algorithm="ES256", kid="rsa-1")
    assert (await member_client.get("/me/balance", headers=bearer(crossed))).status_code == 401
    unknown_kid = token(shop, "ann", key=RSA_KEY, algorithm="RS256", kid="rsa-2")
    assert (await member_client.get("/me/balance", headers=bearer(unknown_kid))).status_code == 401


async def test_unknown_member_is_404(member_client: AsyncTestClient[Litestar], shop: str) -> None:
    response = await member_client.get("/me/balance", headers=bearer(token(shop, "nobody")))
    assert response.status_code == 404


async def test_rate_limit_per_member(database_url: str, shop: str) -> None:
    settings = Settings(
        admin_token=ADMIN_TOKEN, member_jwt_secret=SECRET, member_rate_limit=3, sweep_interval=0
    )
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        ann, ben = bearer(token(shop, "ann")), bearer(token(shop, "ben"))
        statuses = [(await client.get("/me/balance", headers=ann)).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        limited = await client.get("/me/balance", headers=ann)
        assert limited.headers["content-type"].startswith("application/problem+json")
        # Another member has a quota of their own.
        assert (await client.get("/me/balance", headers=ben)).status_code == 200


def test_a_broken_key_set_is_a_settings_error(database_url: str) -> None:
    with pytest.raises(SettingsError, match="MEMBER_JWT_JWKS"):
        create_app(Settings(member_jwt_jwks='{"keys": "nope"}'), database_url=database_url)


async def test_redeem_and_gift_over_http(
    member_client: AsyncTestClient[Litestar],
    client: AsyncTestClient[Litestar],
    shop: str,
    session: AsyncSession,
    ledger: Ledger,
) -> None:
    from core.members import get_member
    from core.programs import get_program

    added = await client.post(
        f"/programs/{shop}/rewards",
        json={"sku": "MUG", "name": "Mug", "points_price": 40, "stock": 5},
    )
    assert added.status_code == 201, added.text
    program = await get_program(session, system("test"), shop)
    ann = await get_member(session, program, "ann")
    await fund(ledger, program, ann, 100)
    headers = bearer(token(shop, "ann"))
    catalog = await member_client.get("/me/rewards", headers=headers)
    assert [r["sku"] for r in catalog.json()] == ["MUG"]

    missing_key = await member_client.post("/me/redemptions", json={"sku": "MUG"}, headers=headers)
    assert missing_key.status_code == 400
    keyed = {**headers, "Idempotency-Key": "r-1"}
    first = await member_client.post("/me/redemptions", json={"sku": "MUG"}, headers=keyed)
    assert first.status_code == 201, first.text
    replay = await member_client.post("/me/redemptions", json={"sku": "MUG"}, headers=keyed)
    assert (replay.status_code, replay.json()["replayed"]) == (200, True)
    too_much = await member_client.post(
        "/me/redemptions",
        json={"sku": "MUG", "quantity": 2},
        headers={**headers, "Idempotency-Key": "r-2"},
    )
    assert too_much.status_code == 422
    assert too_much.json()["type"] == PROBLEMS + "insufficient-points"

    gift = await member_client.post(
        "/me/gifts", json={"to": "ben", "points": 25}, headers={**headers, "Idempotency-Key": "g-1"}
    )
    assert gift.status_code == 201, gift.text
    balance = (await member_client.get("/me/balance", headers=headers)).json()
    assert balance["available"] == 100 - 40 - 25
    to_self = await member_client.post(
        "/me/gifts", json={"to": "ann", "points": 1}, headers={**headers, "Idempotency-Key": "g-2"}
    )
    assert to_self.status_code == 422
    assert to_self.json()["type"] == PROBLEMS + "gift-to-self"


def test_a_remembered_token_still_expires() -> None:
    """The clock stands still (the verifier's and PyJWT's): on a real one, a
    token given a second or two could expire on a busy machine before its
    first check."""
    verifier = TokenVerifier(Settings(member_jwt_secret=SECRET))
    with time_machine.travel(datetime(2026, 12, 2, 12, tzinfo=UTC), tick=False) as clock:
        claims = {"sub": "ann", "program": "shop", "aud": AUDIENCE, "exp": int(time.time()) + 60}
        token = jwt.encode(claims, SECRET, algorithm="HS256")
        assert verifier.verify(token).member == "ann"
        assert verifier.verify(token).member == "ann"  # from memory this time
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        with pytest.raises(InvalidToken):
            verifier.verify(forged)
        clock.shift(59)
        assert verifier.verify(token).member == "ann"
        clock.shift(1)  # the second of its expiry
        with pytest.raises(InvalidToken):
            verifier.verify(token)
