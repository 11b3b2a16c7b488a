"""Collecting partners' statements through Stripe: the partner's customer
(made once), the saved payment method attached to it (once per method:
Stripe refuses a PaymentIntent on a method that is not the customer's), the
statement's lines as invoice items on it, and one PaymentIntent per attempt
on that method, off session, confirmed at once. Every call has an
idempotency key derived from the partner, the method, the statement and the
attempt, so a retried request (or a crash between Stripe's answer and our
commit) creates nothing twice.

The outcome comes back signed as ``payment_intent.succeeded`` or
``payment_intent.payment_failed`` with metadata ``kind`` =
``partner_statement`` (``api.stripe.events``).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

import stripe
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.settings import Settings
from api.stripe.gateway import PARTNER_STATEMENT, client
from core.models import Program
from core.principal import Principal, system
from partners.collection import (
    collection_failed,
    due_retries,
    plan_collection,
    provider_customer,
    record_asked,
    record_attached,
    record_customer,
)
from partners.collection_schemas import CollectionPlan, CollectionView
from partners.models import Partner

#: Who retries collections, in the audit trail.
COLLECTOR = system("collection")


async def ask_stripe(
    stripe_client: stripe.StripeClient, plan: CollectionPlan, customer: str
) -> str:
    """Bill the attempt's lines to the customer and ask for the payment;
    answers the PaymentIntent's id. A decline Stripe answers at once is not
    raised: its webhook reports it."""
    for item in plan.items:
        await stripe_client.v1.invoice_items.create_async(
            params={
                "customer": customer,
                "amount": item.amount_minor,
                "currency": plan.currency.lower(),
                "description": f"Statement {plan.number}, line {item.line}: {item.kind}",
                "metadata": {
                    "statement": plan.statement_id,
                    "line": str(item.line),
                    "points": str(item.points),
                },
            },
            options={"idempotency_key": f"statement:{plan.statement_id}:line:{item.line}"},
        )
    params: Any = {
        "amount": plan.amount_minor,
        "currency": plan.currency.lower(),
        "customer": customer,
        "payment_method": plan.payment_method_id,
        "off_session": True,
        "confirm": True,
        # What the webhook's processing reads back (``api.stripe.events``).
        "metadata": {
            "kind": PARTNER_STATEMENT,
            "program": plan.program_slug,
            "partner": plan.partner_slug,
            "statement": plan.statement_id,
            "attempt": str(plan.attempt),
        },
    }
    key = f"statement:{plan.statement_id}:attempt:{plan.attempt}"
    return await confirm_off_session(stripe_client, params, key)


class _Payer(Protocol):
    """What making a partner's customer needs of a plan."""

    @property
    def program_slug(self) -> str: ...
    @property
    def partner_id(self) -> str: ...
    @property
    def partner_slug(self) -> str: ...
    @property
    def partner_name(self) -> str: ...
    @property
    def payment_method_id(self) -> str: ...


async def partner_customer(
    stripe_client: stripe.StripeClient, session: AsyncSession, plan: _Payer
) -> str:
    """The partner's customer, made once, with the plan's payment method
    attached to it: a method saved after the customer was made is attached
    the first time a payment uses it. Both are recorded in the session's
    transaction only after Stripe answered (the caller commits them before
    asking for a payment), so a crash in between asks again under the same
    keys."""
    partner_id = uuid.UUID(plan.partner_id)
    known = await provider_customer(session, partner_id)
    customer = known.customer_id
    if customer is None:
        made = await stripe_client.v1.customers.create_async(
            params={
                "name": plan.partner_name,
                "metadata": {"program": plan.program_slug, "partner": plan.partner_slug},
            },
            options={"idempotency_key": f"partner-customer:{plan.partner_id}"},
        )
        customer = made.id
        await record_customer(session, partner_id, customer)
    if known.attached_payment_method_id != plan.payment_method_id:
        await attach_payment_method(
            stripe_client, plan.partner_id, plan.payment_method_id, customer
        )
        await record_attached(session, partner_id, plan.payment_method_id)
    return customer


async def attach_payment_method(
    stripe_client: stripe.StripeClient, partner_id: str, payment_method: str, customer: str
) -> None:
    """Attach the method to the customer unless Stripe has it there already
    (attached before a crash lost our record of it, or a method saved again
    after another): asking Stripe first relies on no idempotency key's
    lifetime. The statements are charged by PaymentIntents naming the
    method, so it is not made the customer's default."""
    found = await stripe_client.v1.payment_methods.retrieve_async(payment_method)
    owner = found.customer
    if (owner if isinstance(owner, str) or owner is None else owner.id) == customer:
        return
    await stripe_client.v1.payment_methods.attach_async(
        payment_method,
        params={"customer": customer},
        options={"idempotency_key": f"partner-pm:{partner_id}:{payment_method}"},
    )


async def confirm_off_session(stripe_client: stripe.StripeClient, params: Any, key: str) -> str:
    """Make and confirm a PaymentIntent under ``key``; answers its id. A
    decline Stripe answers at once is not raised: its webhook reports it."""
    try:
        intent = await stripe_client.v1.payment_intents.create_async(
            params=params, options={"idempotency_key": key}
        )
    except stripe.CardError as declined:
        # Stripe made the PaymentIntent and sends payment_intent.payment_failed.
        error = declined.error
        found = error.payment_intent if error else None
        if found is not None:
            return str(found.id)
        # Without the PaymentIntent in the error, its charge names it.
        charge_id = error.charge if error else None
        if not charge_id:
            raise
        charge = await stripe_client.v1.charges.retrieve_async(charge_id)
        intent_of = charge.payment_intent
        if intent_of is None:
            raise
        return intent_of if isinstance(intent_of, str) else intent_of.id
    return intent.id


async def collect_statement(
    settings: Settings,
    session: AsyncSession,
    program: Program,
    partner: Partner,
    number: int,
    *,
    principal: Principal,
) -> CollectionView:
    """Plan the attempt and commit it, then ask Stripe and record what it
    answered (the caller commits that)."""
    plan, view = await plan_collection(session, program, partner, number, principal=principal)
    if plan is None:
        return view
    await session.commit()
    stripe_client = client(settings)
    customer = await partner_customer(stripe_client, session, plan)
    # Kept even if the PaymentIntent is refused: its retry makes no customer again.
    await session.commit()
    intent = await ask_stripe(stripe_client, plan, customer)
    return await record_asked(session, uuid.UUID(plan.statement_id), plan.attempt, intent)


async def retry_collections(
    settings: Settings, sessions: async_sessionmaker[AsyncSession], now: datetime
) -> int:
    """Make the attempts that are due (a failed one's retry); answers how many."""
    async with sessions() as session:
        due = await due_retries(session, now)
    made = 0
    for program_id, partner_id, number in due:
        async with sessions() as session:
            program = await session.get_one(Program, program_id)
            partner = await session.get_one(Partner, partner_id)
            try:
                await collect_statement(
                    settings, session, program, partner, number, principal=COLLECTOR
                )
            except stripe.StripeError as error:
                await session.rollback()
                plan, _ = await plan_collection(
                    session, program, partner, number, principal=COLLECTOR
                )
                assert plan is not None
                await collection_failed(
                    session,
                    uuid.UUID(plan.statement_id),
                    plan.attempt,
                    "",
                    str(error.user_message or error),
                    now,
                    principal=COLLECTOR,
                )
            await session.commit()
            made += 1
    return made
