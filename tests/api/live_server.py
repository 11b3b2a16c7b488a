"""A real Granian server on a database of its own, with a program, members
and the tokens to call it: what schemathesis and the generated client test
run against (over the network, as clients do)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt

from api.database import fresh_database, migrate
from api.settings import ENVIRONMENT
from partners.module import PARTNER_SCOPES
from tests.api.conftest import ADMIN_TOKEN, PUBLISH_LEADS, SIGNING_SECRET, refused_as_past

MEMBER_SECRET = "a-development-secret-of-32-chars!"
AUDIENCE = "coalition-members"
PROGRAM = "live-shop"
MEMBERS = ("ann", "ben")
REWARD_SKU = "mug"
#: A partner firm of ``PROGRAM``, with one user (``LiveApi.partner_user``).
PARTNER = "live-partner"
WEBHOOK_SECRET = "whsec_coalition_test_secret"


@dataclass(frozen=True)
class LiveApi:
    base_url: str
    admin_token: str
    #: A token of member ``ann`` (who holds points) of ``PROGRAM``.
    member_token: str
    #: The id of a user of the partner firm ``PARTNER``.
    partner_user: str = ""
    #: A partner token of ``PARTNER`` (every partner scope), from /oauth/token.
    partner_token: str = ""
    #: The ``client_id`` of another client of ``PARTNER``, for paths to name
    #: (rotated or revoked, it leaves ``partner_token``'s client alone).
    partner_client: str = ""


def member_token(member: str, program: str = PROGRAM) -> str:
    claims = {
        "sub": member,
        "program": program,
        "aud": AUDIENCE,
        # Long enough for the slowest run of the suite.
        "exp": int(time.time()) + 3600,
    }
    return jwt.encode(claims, MEMBER_SECRET, algorithm="HS256")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until_healthy(
    server: subprocess.Popen[Any], base_url: str, *, within: float = 120
) -> None:
    # A server answers within seconds; the bound is for one that never will,
    # and is wide: on a busy machine the whole test of ``serve`` took 17 s.
    deadline = time.monotonic() + within
    while True:
        assert server.poll() is None, "the server exited early"
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"no healthy answer within {within:.0f} s"
        time.sleep(0.2)


@dataclass(frozen=True)
class Seeded:
    partner_user: str
    partner_token: str
    partner_client: str


def _seed(base_url: str) -> Seeded:
    """A program in force, two enrolled members, ann with points to spend,
    a reward in the catalog, and a partner firm (active) with a user and
    two OAuth clients, one with a token."""
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as admin:

        def post(path: str, body: object) -> None:
            response = admin.post(path, json=body)
            assert response.status_code in (200, 201), (path, response.text)

        post(
            "/programs",
            {"slug": PROGRAM, "name": "Live shop", "currency": "ZAR", "point_value_minor": "0.5"},
        )
        post(f"/programs/{PROGRAM}/rules", {"rules": {"points_per_unit": "1"}})
        # As ``publish_now``, over the network.
        for lead in PUBLISH_LEADS:
            start = datetime.now(UTC) + lead
            published = admin.post(
                f"/programs/{PROGRAM}/rules/1/publish", json={"effective_from": start.isoformat()}
            )
            if not refused_as_past(published):
                break
        assert published.status_code == 200, published.text
        for member in MEMBERS:
            post(f"/programs/{PROGRAM}/members", {"external_id": member})
        post(
            f"/programs/{PROGRAM}/members/ann/adjustments",
            {"adjustment_id": "seed", "points": 1_000_000, "reason": "seed points"},
        )
        post(
            f"/programs/{PROGRAM}/rewards",
            {"sku": REWARD_SKU, "name": "A mug", "points_price": 10, "stock": 1_000_000},
        )
        post(
            f"/programs/{PROGRAM}/partners",
            {
                "slug": PARTNER,
                "name": "Live partner",
                "legal_name": "Live Ltd",
                "country": "ZA",
                "status": "active",
            },
        )
        user = admin.post(
            f"/programs/{PROGRAM}/partners/{PARTNER}/users",
            json={"email": "ops@live-partner.example", "name": "Ops", "role": "admin"},
        )
        assert user.status_code == 201, user.text
        # The rules are in force from then on.
        time.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()) + 0.001)
        clients = []
        for name in ("live-token", "live-path"):
            made = admin.post(
                f"/programs/{PROGRAM}/partners/{PARTNER}/clients",
                json={"name": name, "scopes": sorted(PARTNER_SCOPES)},
            )
            assert made.status_code == 201, made.text
            clients.append(made.json())
        token = httpx.post(
            f"{base_url}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(clients[0]["client_id"], clients[0]["client_secret"]),
            timeout=30,
        )
        assert token.status_code == 200, token.text
        return Seeded(
            partner_user=user.json()["id"],
            partner_token=token.json()["access_token"],
            partner_client=clients[1]["client_id"],
        )


@contextmanager
def _stopping(process: subprocess.Popen[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def localstripe() -> Iterator[str]:
    """Stripe's API on loopback, so that payment routes answer as in production."""
    port = free_port()
    main = Path(__file__).with_name("localstripe_main.py")
    process = subprocess.Popen(
        [sys.executable, str(main), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    with _stopping(process):
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, "localstripe exited early"
            assert time.monotonic() < deadline, "localstripe did not start"
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"


@contextmanager
def live_api(server_url: str) -> Iterator[LiveApi]:
    """Serves the API with one Granian worker on a fresh, migrated database."""
    with (
        fresh_database(server_url, prefix="coalition_live") as database_url,
        localstripe() as stripe_base,
    ):
        migrate(database_url)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT}
        env |= {
            "DATABASE_URL": database_url,
            "COALITION_ADMIN_TOKEN": ADMIN_TOKEN,
            "MEMBER_JWT_SECRET": MEMBER_SECRET,
            # Generated requests come fast; the limit itself is tested elsewhere.
            "COALITION_MEMBER_RATE_LIMIT": "100000",
            "COALITION_SWEEP_INTERVAL": "0",
            "COALITION_DB_POOL_SIZE": "4",
            "COALITION_LEDGER_POOL_SIZE": "2",
            "COALITION_LOG_LEVEL": "warning",
            "STRIPE_API_KEY": "sk_test_coalition",
            "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "STRIPE_API_BASE": stripe_base,
            "COALITION_SIGNING_SECRET": SIGNING_SECRET,
            # The partner token must outlive the slowest run.
            "COALITION_PARTNER_TOKEN_SECONDS": "3600",
            "COALITION_PARTNER_RATE_LIMIT": "1000000",
            "COALITION_TOKEN_RATE_LIMIT": "100000",
        }
        command = [
            str(Path(sys.executable).with_name("granian")),
            "--interface",
            "asgi",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "api.asgi:app_from_environment",
        ]
        base_url = f"http://127.0.0.1:{port}"
        with _stopping(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)) as server:
            wait_until_healthy(server, base_url)
            seeded = _seed(base_url)
            yield LiveApi(
                base_url=base_url,
                admin_token=ADMIN_TOKEN,
                member_token=member_token("ann"),
                partner_user=seeded.partner_user,
                partner_token=seeded.partner_token,
                partner_client=seeded.partner_client,
            )
