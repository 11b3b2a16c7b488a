"""The HTTP app on the session's test database, and ledgers of its own.

Ledger ids created here come from ``itertools.count(100000)``, so they never
meet the ids of ``new_ledger`` (which counts from 1).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.database import fresh_database, migrate
from api.settings import Settings
from ledger import AccountFlags

# The partner tests' firms, for the API tests of partners too.
from tests.partners.conftest import new_partner  # noqa: F401

ADMIN_TOKEN = "test-admin-token-0123456789"
#: Seals the partner tokens' signing keys (a Fernet key), so that test apps
#: issue partner tokens.
SIGNING_SECRET = "dGVzdC1zaWduaW5nLXNlY3JldC0wMTIzNDU2Nzg5YWI="
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PROBLEM_JSON = "application/problem+json"
PROBLEMS = "https://coalition.dev/problems/"

ISSUANCE_CODE = 1
WALLET_CODE = 10

_api_ledger_ids = itertools.count(100000)
_program_slugs = itertools.count(1)

Client = AsyncTestClient[Litestar]


# Test apps do not sweep: a sweeper voids due holds in the whole shared
# database, under the feet of the tests that check expiry (test_sweeper.py
# runs its own).
@pytest.fixture(scope="session")
def app(database_url: str) -> Litestar:
    return create_app(
        Settings(admin_token=ADMIN_TOKEN, sweep_interval=0, signing_secret=SIGNING_SECRET),
        database_url=database_url,
    )


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """A client bearing the admin token."""
    async with AsyncTestClient(app=app) as client:
        client.headers.update(AUTH)
        yield client


@pytest.fixture(scope="session")
async def anonymous_client(database_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(
        Settings(admin_token=ADMIN_TOKEN, sweep_interval=0, signing_secret=SIGNING_SECRET),
        database_url=database_url,
    )
    async with AsyncTestClient(app=app) as client:
        yield client


@pytest.fixture
def new_api_ledger(client: AsyncTestClient[Litestar]) -> Callable[[], Awaitable[int]]:
    """Creates a ledger through the API that no other test touches; its id."""

    async def make() -> int:
        ledger_id = next(_api_ledger_ids)
        response = await client.post(
            "/ledger/ledgers", json={"id": ledger_id, "name": f"api-test-{ledger_id}"}
        )
        assert response.status_code == 201, response.text
        return ledger_id

    return make


class Book:
    """A ledger with an issuance account and two member wallets."""

    def __init__(self, ledger: int) -> None:
        self.ledger = ledger
        self.issuance = uuid.uuid4()
        self.alice = uuid.uuid4()
        self.bob = uuid.uuid4()

    def accounts(self) -> list[dict[str, Any]]:
        wallet = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        return [
            {"id": str(self.issuance), "ledger": self.ledger, "code": ISSUANCE_CODE},
            {"id": str(self.alice), "ledger": self.ledger, "code": WALLET_CODE, "flags": wallet},
            {"id": str(self.bob), "ledger": self.ledger, "code": WALLET_CODE, "flags": wallet},
        ]

    def transfer(
        self, debit: uuid.UUID, credit: uuid.UUID, amount: int, **fields: Any
    ) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "debit_account_id": str(debit),
            "credit_account_id": str(credit),
            "amount": amount,
            "ledger": self.ledger,
            "code": 1,
            **fields,
        }


@pytest.fixture
async def book(
    client: AsyncTestClient[Litestar], new_api_ledger: Callable[[], Awaitable[int]]
) -> Book:
    book = Book(await new_api_ledger())
    response = await client.post("/ledger/accounts", json={"accounts": book.accounts()})
    assert response.status_code == 200, response.text
    assert [r["result"] for r in response.json()["results"]] == ["ok", "ok", "ok"]
    return book


async def post_transfers(
    client: AsyncTestClient[Litestar], *transfers: dict[str, Any]
) -> list[dict[str, Any]]:
    response = await client.post("/ledger/transfers", json={"transfers": list(transfers)})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


async def count_writes(pool: asyncpg.Pool, ledger: int) -> tuple[int, int]:
    """Transfers recorded in the ledger, and transfers rejected with its id."""
    recorded = await pool.fetchval("SELECT count(*) FROM transfers WHERE ledger = $1", ledger)
    rejected = await pool.fetchval(
        "SELECT count(*) FROM transfer_rejections WHERE ledger = $1", ledger
    )
    return recorded, rejected


def assert_problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEMS + slug
    assert body["status"] == status
    assert body["title"]
    return body


@pytest.fixture
def private_database(server_url: str) -> Iterator[str]:
    """A migrated database of this test's own, for commands that read or
    change a whole database (demo, ledger check, serve)."""
    with fresh_database(server_url) as url:
        migrate(url)
        yield url


@pytest.fixture
async def program(client: Client) -> str:
    """A program with version 1 of its rules (1 point per unit) in force."""
    return await open_program(client)


async def open_program(client: Client) -> str:
    slug = f"shop-{next(_program_slugs)}"
    response = await client.post(
        "/programs",
        json={
            "slug": slug,
            "name": "Shop rewards",
            "currency": "ZAR",
            "point_value_minor": "0.5",
            "return_window_days": 0,
        },
    )
    assert response.status_code == 201, response.text
    draft = await client.post(
        f"/programs/{slug}/rules", json={"rules": {"points_per_unit": "1"}, "note": "launch"}
    )
    assert draft.status_code == 201, draft.text
    await publish_now(client, slug, 1)
    return slug


#: How far ahead of the clock a test publishes rules meant to start now,
#: try after try (0.3 s to 9.6 s).
PUBLISH_LEADS = [timedelta(milliseconds=300 * 2**n) for n in range(6)]


def refused_as_past(response: Any) -> bool:
    """Whether the server refused a publication because its start had
    passed by the time it read the request (nothing was published)."""
    return bool(
        response.status_code == 422 and response.json().get("type") == PROBLEMS + "publish-in-past"
    )


async def publish_now(client: Client, slug: str, version: int) -> None:
    """Publishes the version to start as soon as the server allows, and
    returns once it is in force. The server refuses a start that has passed
    when it reads the request, and on a busy machine a request can take
    longer than any lead: such a refusal is tried again with a longer one."""
    for lead in PUBLISH_LEADS:
        start = datetime.now(UTC) + lead
        published = await client.post(
            f"/programs/{slug}/rules/{version}/publish", json={"effective_from": start.isoformat()}
        )
        if not refused_as_past(published):
            break
    assert published.status_code == 200, published.text
    # Purchases from then on are priced by this version.
    await asyncio.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()) + 0.001)


def purchase(order: str, amount: int, member: str = "m-1", **extra: Any) -> dict[str, Any]:
    return {
        "member": member,
        "order_id": order,
        "amount_minor": amount,
        "currency": "ZAR",
        "occurred_at": datetime.now(UTC).isoformat(),
        **extra,
    }


# For ``fund``, below.
from core.codes import TransferCode  # noqa: E402
from core.models import Member, Program  # noqa: E402
from ledger import Ledger, Transfer  # noqa: E402


async def fund(ledger: Ledger, program: Program, member: Member, points: int) -> None:
    """Credit ``points`` to the member's wallet from the program's issuance."""
    [funding] = await ledger.create_transfers(
        [
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=program.issuance_account_id,
                credit_account_id=member.wallet_account_id,
                amount=points,
                ledger=program.ledger_id,
                code=TransferCode.ADJUSTMENT,
            )
        ]
    )
    assert funding.result == "ok"
