"""Collecting a partner's statement through Stripe (localstripe on
loopback): a customer, the lines as invoice items, an off-session
PaymentIntent; its signed webhook pays the statement (and gives a postpaid
partner its headroom back) or schedules the next attempt."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import stripe
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.app import create_app
from api.settings import Settings
from api.stripe.collection import retry_collections
from core.codes import TransferCode
from ledger import Ledger
from partners.statement_schemas import StatementRequest
from partners.statements import issue_statement
from tests.api.conftest import ADMIN_TOKEN, AUTH
from tests.api.test_partner_funding_purchases import prepaid_partner
from tests.api.test_stripe import WEBHOOK_SECRET, deliver_event, localstripe  # noqa: F401
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import OPERATOR, enrolled, issuable
from tests.partners.conftest import NewPartner, new_partner  # noqa: F401
from tests.partners.settlement_helpers import label, months_back, move, settled_partner


@pytest.fixture(scope="module")
async def collecting(
    database_url: str,
    localstripe: str,  # noqa: F811
) -> AsyncIterator[tuple[AsyncTestClient[Litestar], Settings]]:
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        sweep_interval=0,
        stripe_api_key="sk_test_coalition",
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=localstripe,
    )
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        yield client, settings


async def owing_partner(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, maker: NewPartner
) -> tuple[str, str, Any]:
    """A postpaid partner whose statement 1 bills 10,000 points issued (15000)."""
    program = await new_program()
    partner = await settled_partner(
        session,
        ledger,
        program,
        maker,
        funding=0,
        funding_model="postpaid",
        credit_limit_points=10_000,
    )
    member = await enrolled(session, ledger, program)
    await move(
        ledger, program, partner, member, TransferCode.PARTNER_ISSUANCE, 10_000, months_back(2)[0]
    )
    await issue_statement(
        session,
        ledger,
        program,
        partner,
        StatementRequest(period=label(2)),
        datetime.now(UTC),
        principal=OPERATOR,
    )
    await session.commit()
    return program.slug, partner.slug, (program, partner)


async def test_a_statement_is_collected_and_paid_by_its_webhook_once(
    collecting: tuple[AsyncTestClient[Litestar], Settings],
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,  # noqa: F811
    localstripe: str,  # noqa: F811
) -> None:
    client, _ = collecting
    slug, firm, (program, partner) = await owing_partner(session, ledger, new_program, new_partner)
    base = f"/programs/{slug}/partners/{firm}"
    no_method = await client.post(f"{base}/statements/1/collection", headers=AUTH)
    assert no_method.status_code == 409, no_method.text
    assert no_method.json()["type"].endswith("no-payment-method")
    saved = await client.put(
        f"{base}/payment-method", json={"payment_method_id": "pm_card_visa"}, headers=AUTH
    )
    assert saved.status_code == 200, saved.text

    started = await client.post(f"{base}/statements/1/collection", headers=AUTH)
    assert started.status_code == 202, started.text
    view = started.json()
    assert (view["status"], view["attempts"], view["amount_due_minor"]) == ("pending", 1, 15_000)
    # Asked again while pending: the same attempt, the lines not billed twice.
    again = await client.post(f"{base}/statements/1/collection", headers=AUTH)
    assert again.json()["attempts"] == 1
    customer = await pool.fetchval(
        "SELECT stripe_customer_id FROM partner_payment_accounts WHERE partner_id = $1",
        partner.id,
    )
    stripe_client = stripe.StripeClient("sk_test_coalition", base_addresses={"api": localstripe})
    items = await stripe_client.v1.invoice_items.list_async(params={"customer": customer})
    billed = [i.to_dict() for i in items.data]
    assert [(i["amount"], i["metadata"]["line"]) for i in billed] == [(15_000, "1")]

    intent = await stripe_client.v1.payment_intents.retrieve_async(again.json()["payment_intent"])
    assert intent.status == "succeeded" and intent.metadata["kind"] == "partner_statement"
    sessions = async_sessionmaker(session.bind, expire_on_commit=False)
    outcome = await deliver_event(
        client, sessions, ledger, pool, "payment_intent.succeeded", intent.to_dict()
    )
    assert outcome == "statement 1 payment: 15000 ZAR"
    statement = await pool.fetchrow(
        "SELECT payment_status, paid_minor FROM partner_statements"
        " WHERE partner_id = $1 AND number = 1",
        partner.id,
    )
    assert statement is not None
    assert (statement["payment_status"], statement["paid_minor"]) == ("paid", 15_000)
    assert await issuable(ledger, program, partner) == 10_000
    # The same outcome again (another event id) records nothing more.
    replay = await deliver_event(
        client, sessions, ledger, pool, "payment_intent.succeeded", intent.to_dict()
    )
    assert replay == "ignored: payment recorded already"
    assert await issuable(ledger, program, partner) == 10_000
    events = await pool.fetchval(
        "SELECT count(*) FROM outbox_events"
        " WHERE topic = 'partner.payment_succeeded' AND subject = $1",
        f"partner:{partner.id}",
    )
    assert events == 1
    # Collected: asking again answers it, nothing asked of Stripe.
    done = await client.post(f"{base}/statements/1/collection", headers=AUTH)
    assert (done.status_code, done.json()["status"]) == (202, "succeeded")


async def test_a_declined_collection_is_retried_then_given_up(
    collecting: tuple[AsyncTestClient[Litestar], Settings],
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,  # noqa: F811
    localstripe: str,  # noqa: F811
) -> None:
    client, settings = collecting
    slug, firm, (_, partner) = await owing_partner(session, ledger, new_program, new_partner)
    base = f"/programs/{slug}/partners/{firm}"
    await client.put(
        f"{base}/payment-method",
        json={"payment_method_id": "pm_card_chargeCustomerFail"},
        headers=AUTH,
    )
    stripe_client = stripe.StripeClient("sk_test_coalition", base_addresses={"api": localstripe})
    sessions = async_sessionmaker(session.bind, expire_on_commit=False)

    async def fail_last() -> str:
        intent_id = await pool.fetchval(
            "SELECT payment_intent_id FROM partner_collections WHERE partner_id = $1", partner.id
        )
        intent = await stripe_client.v1.payment_intents.retrieve_async(intent_id)
        return await deliver_event(
            client, sessions, ledger, pool, "payment_intent.payment_failed", intent.to_dict()
        )

    started = await client.post(f"{base}/statements/1/collection", headers=AUTH)
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "pending"
    now = datetime.now(UTC)
    outcomes = [await fail_last()]
    # Reported twice: the attempt fails once.
    assert await fail_last() == "ignored: attempt reported already"
    for later in (
        timedelta(days=1, minutes=1),
        timedelta(days=4, minutes=2),
        timedelta(days=11, minutes=3),
    ):
        assert await retry_collections(settings, sessions, now + later) == 1
        outcomes.append(await fail_last())
    assert [o.rsplit(": ", 1)[1] for o in outcomes] == ["failed", "failed", "failed", "given_up"]
    row = await pool.fetchrow(
        "SELECT c.status, c.attempts, c.next_attempt_at, s.payment_status"
        " FROM partner_collections c JOIN partner_statements s ON s.id = c.statement_id"
        " WHERE c.partner_id = $1",
        partner.id,
    )
    assert row is not None
    assert (row["status"], row["attempts"], row["next_attempt_at"], row["payment_status"]) == (
        "given_up",
        4,
        None,
        "failed",
    )
    assert await retry_collections(settings, sessions, now + timedelta(days=60)) == 0
    failed = await pool.fetchval(
        "SELECT count(*) FROM outbox_events"
        " WHERE topic = 'partner.payment_failed' AND subject = $1",
        f"partner:{partner.id}",
    )
    assert failed == 4


async def card(stripe_client: stripe.StripeClient, number: str) -> str:
    """A PaymentMethod of its own (localstripe makes a new object each time
    a test id such as ``pm_card_visa`` is named, so none could be read back)."""
    made = await stripe_client.v1.payment_methods.create_async(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    return made.id


async def customer_of(stripe_client: stripe.StripeClient, payment_method: str) -> str | None:
    found = await stripe_client.v1.payment_methods.retrieve_async(payment_method)
    owner = found.customer
    return owner if isinstance(owner, str) or owner is None else owner.id


async def test_a_method_saved_after_the_customer_is_attached_before_it_is_charged(
    collecting: tuple[AsyncTestClient[Litestar], Settings],
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,  # noqa: F811
    localstripe: str,  # noqa: F811
) -> None:
    """The first card is declined; the partner gives another, and the retry
    charges that one on the same customer."""
    client, _ = collecting
    slug, firm, (_, partner) = await owing_partner(session, ledger, new_program, new_partner)
    base = f"/programs/{slug}/partners/{firm}"
    stripe_client = stripe.StripeClient("sk_test_coalition", base_addresses={"api": localstripe})
    sessions = async_sessionmaker(session.bind, expire_on_commit=False)
    declined = await card(stripe_client, "4000000000000341")
    saved = await client.put(
        f"{base}/payment-method", json={"payment_method_id": declined}, headers=AUTH
    )
    assert (saved.status_code, saved.json()["has_customer"]) == (200, False), saved.text
    first = await client.post(f"{base}/statements/1/collection", headers=AUTH)
    assert first.status_code == 202, first.text
    intent = await stripe_client.v1.payment_intents.retrieve_async(first.json()["payment_intent"])
    customer = intent.customer
    assert isinstance(customer, str) and intent.payment_method == declined
    assert await customer_of(stripe_client, declined) == customer
    outcome = await deliver_event(
        client, sessions, ledger, pool, "payment_intent.payment_failed", intent.to_dict()
    )
    assert outcome.endswith("attempt 1 failed: failed"), outcome

    other = await card(stripe_client, "4242424242424242")
    saved = await client.put(
        f"{base}/payment-method", json={"payment_method_id": other}, headers=AUTH
    )
    assert (saved.status_code, saved.json()["has_customer"]) == (200, True), saved.text
    assert await customer_of(stripe_client, other) is None
    second = await client.post(f"{base}/statements/1/collection", headers=AUTH)
    assert second.status_code == 202, second.text
    assert second.json()["attempts"] == 2
    retried = await stripe_client.v1.payment_intents.retrieve_async(second.json()["payment_intent"])
    assert (retried.customer, retried.payment_method, retried.status) == (
        customer,
        other,
        "succeeded",
    )
    assert await customer_of(stripe_client, other) == customer
    methods = await stripe_client.v1.payment_methods.list_async(
        params={"customer": customer, "type": "card"}
    )
    assert sorted(m.id for m in methods.data) == sorted([declined, other])
    account = await pool.fetchrow(
        "SELECT stripe_customer_id, attached_payment_method_id FROM partner_payment_accounts"
        " WHERE partner_id = $1",
        partner.id,
    )
    assert account is not None and tuple(account) == (customer, other)
    # Our record of it lost (a crash before the commit): Stripe has it there
    # already, and the next attempt charges it on the same customer.
    await pool.execute(
        "UPDATE partner_payment_accounts SET attached_payment_method_id = NULL"
        " WHERE partner_id = $1",
        partner.id,
    )
    await deliver_event(
        client, sessions, ledger, pool, "payment_intent.payment_failed", retried.to_dict()
    )
    third = await client.post(f"{base}/statements/1/collection", headers=AUTH)
    assert (third.status_code, third.json()["attempts"]) == (202, 3), third.text
    again = await stripe_client.v1.payment_intents.retrieve_async(third.json()["payment_intent"])
    assert (again.customer, again.payment_method) == (customer, other)
    assert (
        await pool.fetchval(
            "SELECT attached_payment_method_id FROM partner_payment_accounts WHERE partner_id = $1",
            partner.id,
        )
        == other
    )


async def test_a_block_bought_on_a_method_saved_since_charges_it_attached(
    collecting: tuple[AsyncTestClient[Litestar], Settings],
    localstripe: str,  # noqa: F811
) -> None:
    client, _ = collecting
    stripe_client = stripe.StripeClient("sk_test_coalition", base_addresses={"api": localstripe})
    first_card = await card(stripe_client, "4242424242424242")
    # The funding purchases' helpers send no header of their own.
    client.headers.update(AUTH)
    try:
        program, firm = await prepaid_partner(client, payment_method=first_card)
    finally:
        del client.headers["Authorization"]
    base = f"/programs/{program}/partners/{firm}"
    bought = await client.post(
        f"{base}/funding/purchases", json={"purchase_id": "block-1", "points": 1_000}, headers=AUTH
    )
    assert bought.status_code == 201, bought.text
    intent = await stripe_client.v1.payment_intents.retrieve_async(bought.json()["payment_intent"])
    customer = intent.customer
    assert isinstance(customer, str) and await customer_of(stripe_client, first_card) == customer

    other = await card(stripe_client, "4242424242424242")
    saved = await client.put(
        f"{base}/payment-method", json={"payment_method_id": other}, headers=AUTH
    )
    assert saved.status_code == 200, saved.text
    bought = await client.post(
        f"{base}/funding/purchases", json={"purchase_id": "block-2", "points": 1_000}, headers=AUTH
    )
    assert bought.status_code == 201, bought.text
    intent = await stripe_client.v1.payment_intents.retrieve_async(bought.json()["payment_intent"])
    assert (intent.customer, intent.payment_method) == (customer, other)
    assert await customer_of(stripe_client, other) == customer
