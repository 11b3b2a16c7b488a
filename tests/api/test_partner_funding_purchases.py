"""A prepaid partner buys a block of points through Stripe (localstripe on
loopback): priced at its contract's issue price, charged off session on
its saved payment method; the signed webhook funds the block once, or
marks the purchase failed and funds nothing. Bad input writes nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import stripe
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from api.app import create_app
from api.settings import Settings
from core.codes import AccountCode, partner_account_id
from ledger import Ledger
from tests.api.conftest import ADMIN_TOKEN, AUTH, SIGNING_SECRET, assert_problem, open_program
from tests.api.test_partner_coalition import firm, published
from tests.api.test_stripe import WEBHOOK_SECRET, deliver_event, localstripe  # noqa: F401
from tests.partners.tokens import api_partner_bearer

Client = AsyncTestClient[Litestar]


@pytest.fixture(scope="module")
async def client(
    database_url: str,
    localstripe: str,  # noqa: F811
) -> AsyncIterator[Client]:
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        signing_secret=SIGNING_SECRET,
        sweep_interval=0,
        partner_rate_limit=1_000_000,
        stripe_api_key="sk_test_coalition",
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=localstripe,
    )
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        client.headers.update(AUTH)
        yield client


@pytest.fixture
def stripe_client(localstripe: str) -> stripe.StripeClient:  # noqa: F811
    return stripe.StripeClient("sk_test_coalition", base_addresses={"api": localstripe})


async def prepaid_partner(
    client: Client, payment_method: str | None = "pm_card_visa", **terms: Any
) -> tuple[str, str]:
    """A program and a firm with a prepaid contract in force (1.5 minor
    units per point) and, unless none, a saved payment method."""
    program = await open_program(client)
    partner = await firm(client, program)
    await published(client, program, partner, **terms)
    if payment_method is not None:
        saved = await client.put(
            f"/programs/{program}/partners/{partner}/payment-method",
            json={"payment_method_id": payment_method},
        )
        assert saved.status_code == 200, saved.text
    return program, partner


async def issuable(pool: asyncpg.Pool, ledger: Ledger, program: str, partner: str) -> int:
    row = await pool.fetchrow(
        "SELECT g.id AS program_id, p.id AS partner_id FROM programs g JOIN partners p"
        " ON p.program_id = g.id WHERE g.slug = $1 AND p.slug = $2",
        program,
        partner,
    )
    assert row is not None
    [account] = await ledger.lookup_accounts(
        [partner_account_id(row["program_id"], row["partner_id"], AccountCode.PARTNER_ISSUANCE)]
    )
    return account.credits_posted - account.debits_posted - account.debits_pending


async def written(pool: asyncpg.Pool, program: str) -> tuple[int, int, int]:
    """The program's purchases and fundings, and the whole audit trail's length."""
    found = []
    for table in ("partner_funding_purchases", "partner_fundings"):
        found.append(
            await pool.fetchval(
                f"SELECT count(*) FROM {table} t JOIN programs g ON g.id = t.program_id"
                " WHERE g.slug = $1",
                program,
            )
        )
    found.append(await pool.fetchval("SELECT count(*) FROM audit_events"))
    return found[0], found[1], found[2]


async def events_of(pool: asyncpg.Pool, topic: str, program: str, partner: str) -> int:
    count: int = await pool.fetchval(
        "SELECT count(*) FROM outbox_events e JOIN partners p ON e.subject = 'partner:' || p.id"
        " JOIN programs g ON g.id = p.program_id"
        " WHERE e.topic = $1 AND g.slug = $2 AND p.slug = $3",
        topic,
        program,
        partner,
    )
    return count


async def test_a_bought_block_is_funded_by_its_webhook_once(
    client: Client,
    engine: AsyncEngine,
    ledger: Ledger,
    pool: asyncpg.Pool,
    stripe_client: stripe.StripeClient,
) -> None:
    program, partner = await prepaid_partner(client)
    base = f"/programs/{program}/partners/{partner}/funding/purchases"
    # 10,003 x 1.5 = 15,004.5: half-even to 15,004 (half-up would say 15,005).
    bought = await client.post(base, json={"purchase_id": "block-1", "points": 10_003})
    assert bought.status_code == 201, bought.text
    view = bought.json()
    assert (view["status"], view["amount_minor"], view["currency"]) == ("pending", 15_004, "ZAR")
    assert (view["contract_version"], view["funding_id"], view["replayed"]) == (1, None, False)
    # Asked again while pending: Stripe asked under the same key, the same PaymentIntent.
    again = await client.post(base, json={"purchase_id": "block-1", "points": 10_003})
    assert again.status_code == 200, again.text
    assert again.json()["replayed"] is True
    assert again.json()["payment_intent"] == view["payment_intent"] is not None
    intent = await stripe_client.v1.payment_intents.retrieve_async(view["payment_intent"])
    assert (intent.amount, intent.currency, intent.status) == (15_004, "zar", "succeeded")
    assert intent.metadata["kind"] == "partner_funding"
    assert intent.metadata["purchase"] == view["id"]
    assert await issuable(pool, ledger, program, partner) == 0

    sessions = async_sessionmaker(engine, expire_on_commit=False)
    outcome = await deliver_event(
        client, sessions, ledger, pool, "payment_intent.succeeded", intent.to_dict()
    )
    assert outcome == "funding purchase block-1: 10003 points funded"
    assert await issuable(pool, ledger, program, partner) == 10_003
    funding = await pool.fetchrow(
        "SELECT f.id, f.points, f.amount_minor, f.currency FROM partner_fundings f"
        " JOIN partners p ON p.id = f.partner_id WHERE p.slug = $1 AND f.reference = $2",
        partner,
        intent.id,
    )
    assert funding is not None
    assert (funding["points"], funding["amount_minor"], funding["currency"]) == (
        10_003,
        15_004,
        "ZAR",
    )
    # The same outcome again (another event id): nothing more funded.
    replay = await deliver_event(
        client, sessions, ledger, pool, "payment_intent.succeeded", intent.to_dict()
    )
    assert replay == "ignored: block funded already"
    assert await issuable(pool, ledger, program, partner) == 10_003
    assert await events_of(pool, "partner.funding_purchased", program, partner) == 1

    shown = await client.get(f"{base}/block-1")
    assert shown.status_code == 200, shown.text
    assert (shown.json()["status"], shown.json()["funding_id"]) == ("succeeded", str(funding["id"]))
    assert shown.json()["completed_at"] is not None
    listed = await client.get(base)
    assert [p["purchase_id"] for p in listed.json()["items"]] == ["block-1"]
    # Bought already: answered, nothing asked of Stripe, nothing funded.
    done = await client.post(base, json={"purchase_id": "block-1", "points": 10_003})
    assert (done.status_code, done.json()["status"]) == (200, "succeeded")
    assert await issuable(pool, ledger, program, partner) == 10_003


async def test_a_declined_purchase_fails_and_funds_nothing(
    client: Client,
    engine: AsyncEngine,
    ledger: Ledger,
    pool: asyncpg.Pool,
    stripe_client: stripe.StripeClient,
) -> None:
    """Through the partner API, by the partner's own client."""
    program, partner = await prepaid_partner(client, payment_method="pm_card_chargeCustomerFail")
    token = await api_partner_bearer(client, program, partner, scopes=["points:issue"])
    bought = await client.post(
        "/partner/funding/purchases",
        json={"purchase_id": "declined-1", "points": 2_000},
        headers={**token, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert bought.status_code == 201, bought.text
    view = bought.json()
    assert (view["status"], view["amount_minor"], view["partner"]) == ("pending", 3_000, partner)
    intent = await stripe_client.v1.payment_intents.retrieve_async(view["payment_intent"])
    assert intent.status != "succeeded"

    sessions = async_sessionmaker(engine, expire_on_commit=False)
    outcome = await deliver_event(
        client, sessions, ledger, pool, "payment_intent.payment_failed", intent.to_dict()
    )
    assert outcome == "funding purchase declined-1 failed"
    again = await deliver_event(
        client, sessions, ledger, pool, "payment_intent.payment_failed", intent.to_dict()
    )
    assert again == "ignored: purchase failed already"
    assert await issuable(pool, ledger, program, partner) == 0
    purchases, fundings, _ = await written(pool, program)
    assert (purchases, fundings) == (1, 0)
    assert await events_of(pool, "partner.funding_purchase_failed", program, partner) == 1

    shown = await client.get("/partner/funding/purchases/declined-1", headers=token)
    assert shown.status_code == 200, shown.text
    assert shown.json()["status"] == "failed" and shown.json()["failure"]
    listed = await client.get("/partner/funding/purchases", headers=token)
    assert [p["purchase_id"] for p in listed.json()["items"]] == ["declined-1"]
    # Another firm's client finds none of it.
    other = await firm(client, program)
    other_token = await api_partner_bearer(client, program, other, scopes=["points:issue"])
    hidden = await client.get("/partner/funding/purchases/declined-1", headers=other_token)
    assert_problem(hidden, 404, "not-found")
    assert (await client.get("/partner/funding/purchases", headers=other_token)).json()[
        "items"
    ] == []


async def test_purchases_refused_write_nothing(client: Client, pool: asyncpg.Pool) -> None:
    program, partner = await prepaid_partner(client)
    base = f"/programs/{program}/partners/{partner}/funding/purchases"
    postpaid_program, postpaid = await prepaid_partner(
        client, funding_model="postpaid", credit_limit_points=1_000
    )
    bare_program = await open_program(client)
    bare = await firm(client, bare_program)
    unpaid_program, unpaid = await prepaid_partner(client, payment_method=None)
    free_program, free = await prepaid_partner(client, issue_price_per_point="0.000001")
    # One purchase made, to ask for again with other points.
    made = await client.post(base, json={"purchase_id": "taken", "points": 10})
    assert made.status_code == 201, made.text
    refused: list[tuple[str, str, dict[str, Any], int, str]] = [
        (postpaid_program, postpaid, {"points": 10}, 409, "partner-not-prepaid"),
        (bare_program, bare, {"points": 10}, 409, "no-contract-in-force"),
        (unpaid_program, unpaid, {"points": 10}, 409, "no-payment-method"),
        (free_program, free, {"points": 1}, 422, "invalid-funding-purchase"),
        (program, partner, {"points": 66_666_667}, 422, "invalid-funding-purchase"),
        (program, partner, {"purchase_id": "taken", "points": 11}, 409, "idempotency-conflict"),
        (program, partner, {"points": 0}, 400, "validation-error"),
        (program, partner, {"points": 2**63}, 400, "validation-error"),
        (program, partner, {"points": "10"}, 400, "validation-error"),
        (program, partner, {"purchase_id": "a/b", "points": 10}, 400, "validation-error"),
        (program, partner, {"purchase_id": "", "points": 10}, 400, "validation-error"),
        (program, partner, {"purchase_id": "x" * 201, "points": 10}, 400, "validation-error"),
        (program, partner, {"points": 10, "price": "1"}, 400, "validation-error"),
    ]
    for slug, firm_slug, fields, status, problem in refused:
        before = await written(pool, slug)
        body = {"purchase_id": f"p-{uuid.uuid4().hex[:8]}"} | fields
        answer = await client.post(
            f"/programs/{slug}/partners/{firm_slug}/funding/purchases", json=body
        )
        assert_problem(answer, status, problem)
        assert await written(pool, slug) == before, (fields, problem)
    # 66,666,666 x 1.5 = 99,999,999: the most one payment takes.
    assert (
        await client.post(base, json={"purchase_id": "largest", "points": 66_666_666})
    ).status_code == 201
    missing = await client.get(f"{base}/nowhere")
    assert_problem(missing, 404, "not-found")
    # The partner API: without points:issue, refused at the door.
    token = await api_partner_bearer(client, program, partner, scopes=["statements:read"])
    before = await written(pool, program)
    forbidden = await client.post(
        "/partner/funding/purchases",
        json={"purchase_id": "no-scope", "points": 10},
        headers={**token, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert_problem(forbidden, 403, "forbidden")
    assert await written(pool, program) == before
