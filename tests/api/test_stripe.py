"""Stripe: signed webhooks into the inbox once, processed into purchases,
returns and bought points; PaymentIntents made with the real `stripe`
package against localstripe on loopback."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import jwt
import pytest
import stripe
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from api.app import create_app
from api.modules import SUBSCRIBERS
from api.settings import Settings
from api.stripe import refunds
from api.stripe.inbox import process_inbox
from core.codes import TransferCode
from core.members import get_member
from core.outbox import drain
from core.principal import system
from core.programs import get_program
from ledger import Ledger, Transfer
from rewards import bought_points
from rewards.programs import Enrolment, enrol_member, member_balance
from rewards.rule_versions import draft_rules, publish_rules
from rewards.rules import EarnRules
from rewards.sunset import SunsetRequest, schedule_sunset
from tests.api import live_server
from tests.api.conftest import ADMIN_TOKEN, PROBLEMS
from tests.conftest import NewProgram

WEBHOOK_SECRET = "whsec_coalition_test_secret"
MEMBER_SECRET = "a-development-secret-of-32-chars!"


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    with live_server.localstripe() as base_url:
        yield base_url


@pytest.fixture(scope="module")
async def stripe_client(
    database_url: str, localstripe: str
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        sweep_interval=0,
        member_jwt_secret=MEMBER_SECRET,
        stripe_api_key="sk_test_coalition",
        stripe_webhook_secret=WEBHOOK_SECRET,
        stripe_api_base=localstripe,
    )
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        yield client


def signed(event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    """The body and header Stripe sends: HMAC-SHA256 of "<timestamp>.<body>"."""
    payload = json.dumps(event).encode()
    timestamp = int(time.time())
    signature = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    return payload, {
        "Stripe-Signature": f"t={timestamp},v1={signature}",
        "Content-Type": "application/json",
    }


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": kind,
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "data": {"object": obj},
    }


@pytest.fixture
async def shop(session: AsyncSession, ledger: Ledger, new_program: NewProgram) -> str:
    program = await new_program()
    past = datetime.now(UTC) - timedelta(days=1)
    version = await draft_rules(
        session, program, EarnRules(points_per_unit=Decimal(1)), principal=system("test")
    )
    await publish_rules(session, program, version.version, past, now=past, principal=system("test"))
    await enrol_member(
        session, ledger, program, Enrolment(external_id="payer"), principal=system("test")
    )
    await session.commit()
    return program.slug


async def test_bad_signature_is_refused_and_nothing_stored(
    stripe_client: AsyncTestClient[Litestar], pool: asyncpg.Pool
) -> None:
    body, headers = signed(event("payment_intent.succeeded", {"id": "pi_x"}), "whsec_other")
    response = await stripe_client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["type"] == PROBLEMS + "invalid-signature"
    unsigned = await stripe_client.post("/webhooks/stripe", content=body)
    assert unsigned.status_code == 400
    stored = await pool.fetchval(
        "SELECT count(*) FROM stripe_events WHERE payload->'data'->'object'->>'id' = 'pi_x'"
    )
    assert stored == 0


async def test_payment_becomes_a_purchase_once_and_a_refund_a_return(
    stripe_client: AsyncTestClient[Litestar],
    engine: AsyncEngine,
    session: AsyncSession,
    ledger: Ledger,
    shop: str,
) -> None:
    intent = {
        "id": f"pi_{uuid.uuid4().hex[:12]}",
        "object": "payment_intent",
        "amount": 25_000,
        "amount_received": 25_000,
        "currency": "zar",
        "created": int(time.time()) - 5,
        "metadata": {"program": shop, "member": "payer"},
    }
    body, headers = signed(event("payment_intent.succeeded", intent))
    first = await stripe_client.post("/webhooks/stripe", content=body, headers=headers)
    again = await stripe_client.post("/webhooks/stripe", content=body, headers=headers)
    assert (first.status_code, first.json()["stored"]) == (201, True)
    # A replay creates nothing: 200, as a repeated Idempotency-Key answers.
    assert (again.status_code, again.json()["stored"]) == (200, False)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    await process_inbox(sessions, ledger)
    await process_inbox(sessions, ledger)  # nothing left: processed once
    program = await get_program(session, system("test"), shop)
    member = await get_member(session, program, "payer")
    assert (await member_balance(ledger, program, member)).pending == 250

    charge = {
        "id": f"ch_{uuid.uuid4().hex[:12]}",
        "object": "charge",
        "amount": 25_000,
        "amount_refunded": 10_000,
        "currency": "zar",
        "payment_intent": intent["id"],
        "created": int(time.time()),
        "metadata": {"program": shop, "member": "payer"},
    }
    body, headers = signed(event("charge.refunded", charge))
    assert (
        await stripe_client.post("/webhooks/stripe", content=body, headers=headers)
    ).status_code == 201
    await process_inbox(sessions, ledger)
    # Points of the refunded part (100 of 250) will not be posted.
    async with sessions() as fresh:
        returned = await fresh.scalar(
            __import__("sqlalchemy").text(
                "SELECT points_reversed FROM purchases WHERE order_id = :o"
            ),
            {"o": intent["id"]},
        )
    assert returned == 100


async def test_buying_points_through_stripe(
    stripe_client: AsyncTestClient[Litestar],
    engine: AsyncEngine,
    session: AsyncSession,
    ledger: Ledger,
    shop: str,
    localstripe: str,
) -> None:
    token = jwt.encode(
        {
            "sub": "payer",
            "program": shop,
            "aud": "coalition-members",
            "exp": int(time.time()) + 300,
        },
        MEMBER_SECRET,
        algorithm="HS256",
    )
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "buy-1"}
    response = await stripe_client.post(
        "/me/points-purchases", json={"points": 500}, headers=headers
    )
    assert response.status_code == 201, response.text
    payment = response.json()
    assert payment["payment_intent"].startswith("pi_")
    assert payment["amount_minor"] == 500  # 1 minor unit per point
    # The PaymentIntent exists at "Stripe" with the metadata the webhook needs.
    client = stripe.StripeClient("sk_test_coalition", base_addresses={"api": localstripe})
    intent = client.v1.payment_intents.retrieve(payment["payment_intent"])
    assert intent.metadata["points"] == "500"
    succeeded = intent.to_dict()
    body, signed_headers = signed(event("payment_intent.succeeded", succeeded))
    assert (
        await stripe_client.post("/webhooks/stripe", content=body, headers=signed_headers)
    ).status_code == 201
    await process_inbox(async_sessionmaker(engine, expire_on_commit=False), ledger)
    program = await get_program(session, system("test"), shop)
    member = await get_member(session, program, "payer")
    assert (await member_balance(ledger, program, member)).available == 500


async def test_points_are_not_credited_beyond_the_payment(
    stripe_client: AsyncTestClient[Litestar],
    engine: AsyncEngine,
    session: AsyncSession,
    ledger: Ledger,
    shop: str,
    pool: asyncpg.Pool,
) -> None:
    underpaid = {
        "id": f"pi_{uuid.uuid4().hex[:12]}",
        "object": "payment_intent",
        "amount": 10,
        "amount_received": 10,
        "currency": "zar",
        "created": int(time.time()),
        "metadata": {
            "kind": "points_purchase",
            "program": shop,
            "member": "payer",
            "points": "5000",
        },
    }
    body, headers = signed(event("payment_intent.succeeded", underpaid))
    sent = await stripe_client.post("/webhooks/stripe", content=body, headers=headers)
    assert sent.status_code == 201
    await process_inbox(async_sessionmaker(engine, expire_on_commit=False), ledger)
    outcome = await pool.fetchval(
        "SELECT outcome FROM stripe_events WHERE id = $1", sent.json()["id"]
    )
    assert outcome.startswith("refused: paid 10")
    program = await get_program(session, system("test"), shop)
    member = await get_member(session, program, "payer")
    assert (await member_balance(ledger, program, member)).available == 0


async def test_a_refund_takes_bought_points_back(
    stripe_client: AsyncTestClient[Litestar],
    engine: AsyncEngine,
    session: AsyncSession,
    ledger: Ledger,
    shop: str,
    pool: asyncpg.Pool,
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    intent = f"pi_{uuid.uuid4().hex[:12]}"
    metadata = {"kind": "points_purchase", "program": shop, "member": "payer", "points": "400"}
    paid = {
        "id": intent,
        "object": "payment_intent",
        "amount": 400,
        "amount_received": 400,
        "currency": "zar",
        "metadata": metadata,
    }

    async def deliver(kind: str, obj: dict[str, Any]) -> str:
        return await deliver_event(stripe_client, sessions, ledger, pool, kind, obj)

    def refund(total: int) -> dict[str, Any]:
        return {
            "id": f"ch_{intent}",
            "object": "charge",
            "payment_intent": intent,
            "amount": 400,
            "amount_refunded": total,
            "metadata": metadata,
        }

    assert (await deliver("payment_intent.succeeded", paid)) == "points bought: 400"
    program = await get_program(session, system("test"), shop)
    member = await get_member(session, program, "payer")
    # Half refunded: half the points go back.
    half = await deliver("charge.refunded", refund(200))
    assert half == "refund of bought points: 200 points back (0 as debt)"
    assert (await member_balance(ledger, program, member)).available == 200
    # The member spends 150; the rest is refunded: 50 from the wallet, 150 as debt.
    [spent] = await ledger.create_transfers(
        [
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=member.wallet_account_id,
                credit_account_id=program.redemption_account_id,
                amount=150,
                ledger=program.ledger_id,
                code=TransferCode.CATALOG_REDEMPTION,
            )
        ]
    )
    assert spent.result == "ok"
    assert (await deliver("charge.refunded", refund(400))) == (
        "refund of bought points: 200 points back (150 as debt)"
    )
    # The same refund delivered again changes nothing.
    assert (await deliver("charge.refunded", refund(400))) == "ignored: nothing new refunded"
    await session.refresh(member)
    balance = await member_balance(ledger, program, member)
    assert (balance.available, balance.debt) == (0, 150)


async def deliver_event(
    client: AsyncTestClient[Litestar],
    sessions: async_sessionmaker[AsyncSession],
    ledger: Ledger,
    pool: asyncpg.Pool,
    kind: str,
    obj: dict[str, Any],
) -> str:
    """Send the event signed, process the inbox, answer the event's outcome."""
    body, headers = signed(event(kind, obj))
    sent = await client.post("/webhooks/stripe", content=body, headers=headers)
    assert sent.status_code == 201, sent.text
    await process_inbox(sessions, ledger)
    outcome: str = await pool.fetchval(
        "SELECT outcome FROM stripe_events WHERE id = $1", sent.json()["id"]
    )
    return outcome


async def test_a_refund_without_metadata_finds_the_payment_it_refunds(
    stripe_client: AsyncTestClient[Litestar],
    engine: AsyncEngine,
    session: AsyncSession,
    ledger: Ledger,
    shop: str,
    pool: asyncpg.Pool,
) -> None:
    """Stripe does not copy a PaymentIntent's metadata to its Charge: a
    refund is resolved by the charge's payment intent, against what was
    recorded when the intent succeeded (points bought, or a purchase)."""
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    bought, spent = f"pi_{uuid.uuid4().hex[:12]}", f"pi_{uuid.uuid4().hex[:12]}"
    points = {"kind": "points_purchase", "program": shop, "member": "payer", "points": "400"}
    assert (
        await deliver_event(
            stripe_client,
            sessions,
            ledger,
            pool,
            "payment_intent.succeeded",
            {"id": bought, "amount": 400, "currency": "zar", "metadata": points},
        )
    ) == "points bought: 400"
    assert (
        await deliver_event(
            stripe_client,
            sessions,
            ledger,
            pool,
            "payment_intent.succeeded",
            {
                "id": spent,
                "amount": 20_000,
                "currency": "zar",
                "created": int(time.time()) - 5,
                "metadata": {"program": shop, "member": "payer"},
            },
        )
    ) == "purchase: 200 points"

    def charge(intent: str, amount: int, refunded: int) -> dict[str, Any]:
        # As Stripe sends it: the charge's metadata is its own, here empty.
        return {
            "id": f"ch_{uuid.uuid4().hex[:12]}",
            "object": "charge",
            "payment_intent": intent,
            "amount": amount,
            "amount_refunded": refunded,
            "currency": "zar",
            "metadata": {},
        }

    refund = charge(bought, 400, 100)
    assert (
        await deliver_event(stripe_client, sessions, ledger, pool, "charge.refunded", refund)
    ) == ("refund of bought points: 100 points back (0 as debt)")
    returned = charge(spent, 20_000, 5_000)
    assert (
        await deliver_event(stripe_client, sessions, ledger, pool, "charge.refunded", returned)
    ) == "return: 50 points"
    program = await get_program(session, system("test"), shop)
    member = await get_member(session, program, "payer")
    assert (await member_balance(ledger, program, member)).available == 300
    # A quarter of the purchase refunded: a quarter of its 200 points will not be posted.
    assert (
        await pool.fetchval("SELECT points_reversed FROM purchases WHERE order_id = $1", spent)
    ) == 50
    lines = await pool.fetch(
        "SELECT actor, action FROM audit_events WHERE subject IN ($1, $2)"
        " AND action NOT LIKE 'member.%' ORDER BY occurred_at",
        f"program:{shop}:member:payer",
        f"program:{shop}:order:{spent}",
    )
    assert [(r["actor"], r["action"]) for r in lines] == [
        ("system:stripe", "points.buy"),
        ("system:stripe", "purchase.record"),
        ("system:stripe", "points.refund"),
        ("system:stripe", "purchase.return"),
    ]


async def test_the_replay_of_a_webhook_is_documented(
    stripe_client: AsyncTestClient[Litestar],
) -> None:
    schema = (await stripe_client.get("/schema/openapi.json")).json()
    responses = schema["paths"]["/webhooks/stripe"]["post"]["responses"]
    assert {"200", "201", "400"} <= set(responses)
    assert "repeated" in responses["200"]["description"]


async def test_a_signed_event_without_an_id_is_refused_and_nothing_stored(
    stripe_client: AsyncTestClient[Litestar], pool: asyncpg.Pool
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM stripe_events")
    for bad in ({"type": "charge.refunded"}, {"id": "", "type": "x"}, {"id": "evt_\x00"}):
        body, headers = signed(bad)
        response = await stripe_client.post("/webhooks/stripe", content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["type"] == PROBLEMS + "malformed-event"
    body, headers = signed([1, 2])  # type: ignore[arg-type]
    response = await stripe_client.post("/webhooks/stripe", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert await pool.fetchval("SELECT count(*) FROM stripe_events") == before


async def test_a_malformed_payment_is_refused_and_blocks_nothing_behind_it(
    stripe_client: AsyncTestClient[Litestar],
    engine: AsyncEngine,
    ledger: Ledger,
    shop: str,
    pool: asyncpg.Pool,
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    buyer = {"program": shop, "member": "payer"}
    points = buyer | {"kind": "points_purchase", "points": "5"}

    def intent(**fields: Any) -> dict[str, Any]:
        return {"id": f"pi_{uuid.uuid4().hex[:12]}", "amount": 5, "currency": "zar"} | fields

    malformed = {
        "an amount that is no number": intent(amount="lots", metadata=points),
        "an amount no column holds": intent(amount=10**30, metadata=points),
        "no points": intent(metadata=points | {"points": None}),
        "points that are no number": intent(metadata=points | {"points": "many"}),
        "no id": {"amount": 5, "currency": "zar", "metadata": points},
        "a time no calendar holds": intent(created=10**15, metadata=buyer),
    }
    for why, obj in malformed.items():
        outcome = await deliver_event(
            stripe_client, sessions, ledger, pool, "payment_intent.succeeded", obj
        )
        assert outcome.startswith("refused:"), (why, outcome)
    # Each was refused once and for all: the next event is processed.
    assert (
        await deliver_event(
            stripe_client,
            sessions,
            ledger,
            pool,
            "payment_intent.succeeded",
            intent(metadata=points),
        )
    ) == "points bought: 5"


async def test_an_event_that_fails_holds_up_no_other(
    engine: AsyncEngine, ledger: Ledger, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event whose handling raises (not a business refusal) is noted on
    its row and retried later with a growing delay, while younger events go
    on; after MAX_ATTEMPTS tries it is left failed for an operator."""
    from api.stripe import inbox

    sessions = async_sessionmaker(engine, expire_on_commit=False)
    poison, healthy = f"evt_poison_{uuid.uuid4().hex}", f"evt_ok_{uuid.uuid4().hex}"
    for event_id, age in ((poison, timedelta(hours=2)), (healthy, timedelta(hours=1))):
        await pool.execute(
            "INSERT INTO stripe_events (id, type, payload, received_at)"
            " VALUES ($1, 'customer.created', $2, now() - $3::interval)",
            event_id,
            {"id": event_id, "type": "customer.created"},
            age,
        )
    handle = inbox.handle_event

    async def failing(session: AsyncSession, ledger: Ledger, payload: dict[str, Any]) -> str:
        if payload["id"] == poison:
            raise RuntimeError("a bug met this event")
        return await handle(session, ledger, payload)

    monkeypatch.setattr(inbox, "handle_event", failing)

    async def row(event_id: str) -> asyncpg.Record:
        found = await pool.fetchrow(
            "SELECT processed_at, outcome, attempts, last_error, next_attempt_at, failed_at"
            " FROM stripe_events WHERE id = $1",
            event_id,
        )
        assert found is not None
        return found

    now = datetime.now(UTC)
    await process_inbox(sessions, ledger, now=now)
    done = await row(healthy)
    assert done["processed_at"] is not None
    assert done["outcome"] == "ignored: customer.created"
    failed = await row(poison)
    assert failed["processed_at"] is None and failed["failed_at"] is None
    assert failed["attempts"] == 1
    assert failed["last_error"] == "RuntimeError: a bug met this event"
    assert failed["next_attempt_at"] == now + timedelta(seconds=1)
    # Not due yet: left alone.
    await process_inbox(sessions, ledger, now=now)
    assert (await row(poison))["attempts"] == 1
    # Each try waits twice as long as the last, up to MAX_BACKOFF.
    later = now
    for tries in range(2, inbox.MAX_ATTEMPTS + 1):
        later = (await row(poison))["next_attempt_at"]
        await process_inbox(sessions, ledger, now=later)
        noted = await row(poison)
        assert noted["attempts"] == tries
        expected = min(inbox.MAX_BACKOFF, timedelta(seconds=2 ** (tries - 1)))
        assert noted["next_attempt_at"] == later + expected
    left = await row(poison)
    assert left["failed_at"] == later and left["processed_at"] is None
    # Failed for good: no run takes it again, however late.
    await process_inbox(sessions, ledger, now=later + timedelta(days=30))
    assert (await row(poison))["attempts"] == inbox.MAX_ATTEMPTS


async def test_a_sunset_refuses_new_points_payments_but_credits_those_started_before(
    stripe_client: AsyncTestClient[Litestar],
    engine: AsyncEngine,
    session: AsyncSession,
    ledger: Ledger,
    shop: str,
    pool: asyncpg.Pool,
) -> None:
    program = await get_program(session, system("test"), shop)
    member = await get_member(session, program, "payer")
    now = datetime.now(UTC).replace(microsecond=0)
    await schedule_sunset(
        session,
        program,
        SunsetRequest(sunset_at=now + timedelta(days=40), notice_days=30, reason="closing"),
        now,
        principal=system("test"),
    )
    await session.commit()
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    def paid_for(points: int, created: datetime) -> dict[str, Any]:
        return {
            "id": f"pi_{uuid.uuid4().hex[:12]}",
            "object": "payment_intent",
            "amount": points,
            "amount_received": points,
            "currency": "zar",
            "created": int(created.timestamp()),
            "metadata": {
                "kind": "points_purchase",
                "program": shop,
                "member": "payer",
                "points": str(points),
            },
        }

    # Started before earning ended, confirmed after: the member paid for points
    # on offer then, and gets them.
    before = paid_for(70, now - timedelta(minutes=5))
    outcome = await deliver_event(
        stripe_client, sessions, ledger, pool, "payment_intent.succeeded", before
    )
    assert outcome == "points bought: 70"
    # Started after: refused once and for all (not retried), nothing credited.
    after = paid_for(30, now + timedelta(seconds=1))
    outcome = await deliver_event(
        stripe_client, sessions, ledger, pool, "payment_intent.succeeded", after
    )
    assert outcome.startswith("refused: program"), outcome
    assert (await member_balance(ledger, program, member)).available == 70
    # The operator hears of the money to refund (a program event, once).
    refused = await pool.fetch(
        "SELECT payload FROM outbox_events WHERE topic = 'rewards.points_payment_refused'"
        " AND subject = $1",
        f"program:{program.id}",
    )
    assert [json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"]
            for r in refused] == [
        {"payment_id": after["id"], "member": "payer", "points": 30, "paid_minor": 30,
         "currency": "ZAR", "reason": "the program's earning has ended (sunset)"}
    ]  # fmt: skip
    # A new payment is refused before the member is asked for money.
    token = jwt.encode(
        {"sub": "payer", "program": shop, "aud": "coalition-members",
         "exp": int(time.time()) + 300},
        MEMBER_SECRET,
        algorithm="HS256",
    )  # fmt: skip
    response = await stripe_client.post(
        "/me/points-purchases",
        json={"points": 500},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "buy-after-end"},
    )
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"].endswith("program-sunsetting")
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM points_purchases WHERE program_id = $1", program.id
        )
        == 1
    )


@pytest.fixture
def refunding(monkeypatch: pytest.MonkeyPatch, localstripe: str) -> stripe.StripeClient:
    """Stripe as the worker finds it (its settings come from the
    environment), and a client to look at what it holds."""
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_coalition")
    monkeypatch.setenv("STRIPE_API_BASE", localstripe)
    return stripe.StripeClient("sk_test_coalition", base_addresses={"api": localstripe})


async def refused_payment(
    client: AsyncTestClient[Litestar],
    stripe_api: stripe.StripeClient,
    sessions: async_sessionmaker[AsyncSession],
    ledger: Ledger,
    pool: asyncpg.Pool,
    shop: str,
) -> str:
    """A payment for 30 points taken at Stripe after the program's end of
    earning, and refused: answers its PaymentIntent's id."""
    now = datetime.now(UTC).replace(microsecond=0)
    async with sessions() as session, session.begin():
        program = await get_program(session, system("test"), shop)
        await schedule_sunset(
            session,
            program,
            SunsetRequest(sunset_at=now + timedelta(days=40), notice_days=30, reason="closing"),
            now,
            principal=system("test"),
        )
    card = await stripe_api.v1.payment_methods.create_async(
        params={
            "type": "card",
            "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    intent = await stripe_api.v1.payment_intents.create_async(
        params={
            "amount": 30,
            "currency": "zar",
            "payment_method": card.id,
            "confirm": True,
            "metadata": {
                "kind": "points_purchase",
                "program": shop,
                "member": "payer",
                "points": "30",
            },
        }
    )
    assert intent.status == "succeeded"
    # Started after the end of earning (Stripe's clock and ours may differ by a second).
    paid = intent.to_dict() | {"created": int((now + timedelta(seconds=1)).timestamp())}
    outcome = await deliver_event(client, sessions, ledger, pool, "payment_intent.succeeded", paid)
    assert outcome.startswith("refused: program"), outcome
    return intent.id


async def drain_refunds(sessions: async_sessionmaker[AsyncSession], at: datetime) -> int:
    """What the drain-outbox job does (all topics: a refusal waits for the
    program's earlier events, its sunset's among them), until it has caught
    up: the suite's other tests leave events of their own before these."""
    handled = 0
    while found := await drain(sessions, SUBSCRIBERS, at, limit=10_000):
        handled += found
    return handled


async def refunds_at_stripe(stripe_api: stripe.StripeClient, intent: str) -> list[stripe.Refund]:
    found = await stripe_api.v1.refunds.list_async(params={"payment_intent": intent})
    return list(found.data)


async def refund_lines(pool: asyncpg.Pool, shop: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT actor, details FROM audit_events WHERE action = $1 AND subject = $2",
        bought_points.REFUSED_PAYMENT_REFUND,
        f"program:{shop}:member:payer",
    )
    return [
        (r["actor"], json.loads(r["details"]) if isinstance(r["details"], str) else r["details"])
        for r in rows
    ]


async def refund_due(pool: asyncpg.Pool, intent: str) -> asyncpg.Record:
    found = await pool.fetchrow(
        "SELECT handled_at, attempts, last_error FROM outbox_events"
        " WHERE topic = $1 AND subject = $2",
        refunds.REFUND_DUE,
        f"stripe-payment:{intent}",
    )
    assert found is not None
    return found


async def test_a_points_payment_refused_after_the_end_of_earning_is_refunded_once(
    stripe_client: AsyncTestClient[Litestar],
    refunding: stripe.StripeClient,
    engine: AsyncEngine,
    ledger: Ledger,
    shop: str,
    pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    intent = await refused_payment(stripe_client, refunding, sessions, ledger, pool, shop)
    record = bought_points.record_refused_payment_refund
    calls = 0

    async def lost(*args: Any, **kwargs: Any) -> bool:
        # Stripe refunded, then the commit was lost: the outbox tries again.
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the database went away")
        return await record(*args, **kwargs)

    monkeypatch.setattr(refunds, "record_refused_payment_refund", lost)
    now = datetime.now(UTC)
    await drain_refunds(sessions, now)
    assert (await refund_due(pool, intent))["handled_at"] is None
    assert await refund_lines(pool, shop) == []
    # Redelivered: the refund made is found, none made again.
    await drain_refunds(sessions, now + timedelta(seconds=5))
    assert (await refund_due(pool, intent))["attempts"] == 2
    [refund] = await refunds_at_stripe(refunding, intent)
    assert (refund.amount, refund.status) == (30, "succeeded")
    assert refund.metadata is not None and refund.metadata["kind"] == "points_payment_refused"
    expected = {
        "payment_intent": intent,
        "refund": refund.id,
        "refunded_minor": 30,
        "status": "succeeded",
    }
    assert await refund_lines(pool, shop) == [("system:stripe", expected)]
    # Stripe delivers the payment's success again (a new event): refused
    # again, and its refund is the one made.
    paid = (await refunding.v1.payment_intents.retrieve_async(intent)).to_dict()
    paid["created"] = int((now + timedelta(seconds=1)).timestamp())
    outcome = await deliver_event(
        stripe_client, sessions, ledger, pool, "payment_intent.succeeded", paid
    )
    assert outcome.startswith("refused: program"), outcome
    await drain_refunds(sessions, now + timedelta(seconds=10))
    assert [r.id for r in await refunds_at_stripe(refunding, intent)] == [refund.id]
    assert await refund_lines(pool, shop) == [("system:stripe", expected)]
    # The operators' event still goes, once per refusal.
    refused = await pool.fetchval(
        "SELECT count(*) FROM outbox_events WHERE topic = $1 AND payload->>'payment_id' = $2",
        bought_points.PAYMENT_REFUSED,
        intent,
    )
    assert refused == 2


async def test_a_refund_stripe_does_not_answer_is_tried_again_until_it_does(
    stripe_client: AsyncTestClient[Litestar],
    refunding: stripe.StripeClient,
    engine: AsyncEngine,
    ledger: Ledger,
    shop: str,
    pool: asyncpg.Pool,
    localstripe: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    intent = await refused_payment(stripe_client, refunding, sessions, ledger, pool, shop)
    monkeypatch.setenv("STRIPE_API_BASE", f"http://127.0.0.1:{live_server.free_port()}")
    now = datetime.now(UTC)
    with caplog.at_level(logging.WARNING, logger="api.stripe.refunds"):
        await drain_refunds(sessions, now)
    kept = await refund_due(pool, intent)
    assert kept["handled_at"] is None and kept["attempts"] == 1
    assert kept["last_error"].startswith("APIConnectionError")
    [line] = [r.getMessage() for r in caplog.records if intent in r.getMessage()]
    assert "failed, the outbox will try again: APIConnectionError" in line
    assert await refunds_at_stripe(refunding, intent) == []
    assert await refund_lines(pool, shop) == []
    monkeypatch.setenv("STRIPE_API_BASE", localstripe)
    await drain_refunds(sessions, now + timedelta(seconds=5))
    assert (await refund_due(pool, intent))["handled_at"] is not None
    [refund] = await refunds_at_stripe(refunding, intent)
    assert [details["refund"] for _, details in await refund_lines(pool, shop)] == [refund.id]


async def test_a_refused_payment_refunded_by_hand_is_not_refunded_again(
    stripe_client: AsyncTestClient[Litestar],
    refunding: stripe.StripeClient,
    engine: AsyncEngine,
    ledger: Ledger,
    shop: str,
    pool: asyncpg.Pool,
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    intent = await refused_payment(stripe_client, refunding, sessions, ledger, pool, shop)
    by_hand = await refunding.v1.refunds.create_async(params={"payment_intent": intent})
    await drain_refunds(sessions, datetime.now(UTC))
    assert (await refund_due(pool, intent))["handled_at"] is not None
    assert [r.id for r in await refunds_at_stripe(refunding, intent)] == [by_hand.id]
    assert await refund_lines(pool, shop) == [
        (
            "system:stripe",
            {
                "payment_intent": intent,
                "refund": None,
                "refunded_minor": 30,
                "status": "refunded before",
            },
        )
    ]
