"""Collecting what a statement bills from the partner's saved payment
method: the attempts, their outcomes and the retries, as plain data (the
payment provider's calls are the edge's, ``api.stripe.collection``).

An attempt is planned (``plan_collection``) and committed before the
provider is asked, so a crash between the two asks again under the same
idempotency keys (derived from the statement and the attempt number) and
creates nothing twice. The outcome comes back signed (a webhook): a
success is a payment recorded (``partners.payouts.record_payment``, the
PaymentIntent's id its reference); a failure schedules the next attempt
after 1, 3 then 7 days, after which the collection is given up.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.errors import DomainError, ErrorKind
from core.models import Program
from core.principal import Principal
from ledger import Ledger
from partners import events
from partners.collection_models import CollectionStatus, PartnerCollection, PartnerPaymentAccount
from partners.collection_schemas import (
    CollectionPlan,
    CollectionView,
    ItemToBill,
    PaymentMethodRequest,
    PaymentMethodView,
)
from partners.contracts import lock_partner
from partners.models import Partner
from partners.payouts import record_payment
from partners.statement_models import (
    PartnerStatement,
    PartnerStatementLine,
    PaymentStatus,
)
from partners.statement_reads import get_statement
from partners.statement_schemas import PaymentRequest

#: How long after each failed attempt the next one is made; then given up.
RETRY_AFTER = (timedelta(days=1), timedelta(days=3), timedelta(days=7))


class NothingToCollect(DomainError):
    """The statement owes nothing (the program owes, it is paid, or being
    collected now)."""

    type_slug = "nothing-to-collect"
    kind = ErrorKind.CONFLICT


class NoPaymentMethod(DomainError):
    """The partner has no saved payment method to charge."""

    type_slug = "no-payment-method"
    kind = ErrorKind.CONFLICT


def _subject(program_slug: str, partner: Partner) -> str:
    return f"program:{program_slug}:partner:{partner.slug}"


async def _account(session: AsyncSession, partner: Partner) -> PartnerPaymentAccount | None:
    return await session.scalar(
        select(PartnerPaymentAccount).where(PartnerPaymentAccount.partner_id == partner.id)
    )


async def set_payment_method(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    request: PaymentMethodRequest,
    *,
    principal: Principal,
) -> PaymentMethodView:
    """Save the payment method the partner's statements are charged to (and
    its blocks of points bought); the provider is not asked: the next
    payment attaches it to the partner's customer first."""
    principal.require("partners:write")
    partner = await lock_partner(session, partner)
    account = await _account(session, partner)
    if account is None:
        account = PartnerPaymentAccount(program_id=program.id, partner_id=partner.id)
        session.add(account)
    account.payment_method_id = request.payment_method_id
    await session.flush()
    await audit.record(
        session,
        principal,
        "partner.payment_method",
        _subject(program.slug, partner),
        {"payment_method_id": request.payment_method_id},
    )
    return PaymentMethodView(
        partner=partner.slug,
        payment_method_id=account.payment_method_id,
        has_customer=account.stripe_customer_id is not None,
    )


def _view(statement: PartnerStatement, collection: PartnerCollection) -> CollectionView:
    return CollectionView(
        number=statement.number,
        status=collection.status,
        attempts=collection.attempts,
        amount_due_minor=max(statement.total_minor - statement.paid_minor, 0),
        currency=statement.currency,
        payment_intent=collection.payment_intent_id,
        failure=collection.failure,
        next_attempt_at=collection.next_attempt_at,
    )


async def _collection_of(
    session: AsyncSession, statement_id: uuid.UUID
) -> PartnerCollection | None:
    return await session.scalar(
        select(PartnerCollection)
        .where(PartnerCollection.statement_id == statement_id)
        .with_for_update()
    )


async def plan_collection(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    number: int,
    *,
    principal: Principal,
) -> tuple[CollectionPlan | None, CollectionView]:
    """The attempt to make now: the one pending again (a retried request
    asks the provider under the same keys), or the next after a failure;
    none for a statement collected already (its collection answered)."""
    principal.require("partners:write")
    partner = await lock_partner(session, partner)
    statement, _ = await get_statement(
        session, program.id, principal=principal, number=number, partner=partner
    )
    collection = await _collection_of(session, statement.id)
    if collection is not None and collection.status == CollectionStatus.SUCCEEDED:
        # Collected already: answered, nothing asked of the provider again.
        return None, _view(statement, collection)
    due = statement.total_minor - statement.paid_minor
    if statement.payment_status not in (PaymentStatus.DUE, PaymentStatus.FAILED) or due <= 0:
        raise NothingToCollect(f"statement {number} has nothing to collect")
    account = await _account(session, partner)
    if account is None or account.payment_method_id is None:
        raise NoPaymentMethod(f"partner {partner.slug!r} has no saved payment method")
    if collection is None:
        collection = PartnerCollection(
            program_id=program.id,
            partner_id=partner.id,
            statement_id=statement.id,
            status=CollectionStatus.PENDING,
            attempts=1,
            items_created=False,
        )
        session.add(collection)
    elif collection.status != CollectionStatus.PENDING:
        collection.attempts += 1
        collection.status = CollectionStatus.PENDING
        collection.next_attempt_at = None
    await session.flush()
    await audit.record(
        session,
        principal,
        "partner.statement.collection",
        f"{_subject(program.slug, partner)}:statement:{number}",
        {"attempt": collection.attempts, "amount_minor": due},
    )
    items = []
    if not collection.items_created:
        lines = await session.scalars(
            select(PartnerStatementLine)
            .where(PartnerStatementLine.statement_id == statement.id)
            .order_by(PartnerStatementLine.line)
        )
        items = [
            ItemToBill(line=x.line, kind=x.kind, points=x.points, amount_minor=x.amount_minor)
            for x in lines
            if x.amount_minor != 0
        ]
    plan = CollectionPlan(
        program_slug=program.slug,
        partner_id=str(partner.id),
        partner_slug=partner.slug,
        partner_name=partner.name,
        statement_id=str(statement.id),
        number=statement.number,
        attempt=collection.attempts,
        amount_minor=due,
        currency=statement.currency,
        payment_method_id=account.payment_method_id,
        items=items,
    )
    return plan, _view(statement, collection)


class ProviderCustomer(NamedTuple):
    """What is known of the partner's customer at the provider."""

    #: None until the first payment asked for makes it.
    customer_id: str | None
    #: The method last attached to it: a payment on another attaches that first.
    attached_payment_method_id: str | None


async def provider_customer(session: AsyncSession, partner_id: uuid.UUID) -> ProviderCustomer:
    """The partner's customer at the provider and the method attached to it."""
    row = (
        await session.execute(
            select(
                PartnerPaymentAccount.stripe_customer_id,
                PartnerPaymentAccount.attached_payment_method_id,
            ).where(PartnerPaymentAccount.partner_id == partner_id)
        )
    ).one_or_none()
    return ProviderCustomer(row[0], row[1]) if row else ProviderCustomer(None, None)


async def _locked_account(
    session: AsyncSession, partner_id: uuid.UUID
) -> PartnerPaymentAccount | None:
    return await session.scalar(
        select(PartnerPaymentAccount)
        .where(PartnerPaymentAccount.partner_id == partner_id)
        .with_for_update()
    )


async def record_customer(session: AsyncSession, partner_id: uuid.UUID, customer_id: str) -> None:
    """The partner's customer at the provider, made at its first payment."""
    account = await _locked_account(session, partner_id)
    if account is not None and account.stripe_customer_id is None:
        account.stripe_customer_id = customer_id
        await session.flush()


async def record_attached(
    session: AsyncSession, partner_id: uuid.UUID, payment_method_id: str
) -> None:
    """The method is attached to the partner's customer at the provider.
    Only written once the provider said so: a crash before the commit
    leaves the method unrecorded, and the next payment asks again."""
    account = await _locked_account(session, partner_id)
    if account is not None:
        account.attached_payment_method_id = payment_method_id
        await session.flush()


async def record_asked(
    session: AsyncSession, statement_id: uuid.UUID, attempt: int, payment_intent: str
) -> CollectionView:
    """The provider was asked: its lines are on the customer, the attempt's
    PaymentIntent is known (its outcome comes by webhook)."""
    collection = await _collection_of(session, statement_id)
    statement = await session.get_one(PartnerStatement, statement_id)
    assert collection is not None
    collection.items_created = True
    if collection.attempts == attempt and collection.status == CollectionStatus.PENDING:
        collection.payment_intent_id = payment_intent
    await session.flush()
    return _view(statement, collection)


async def collection_succeeded(
    session: AsyncSession,
    ledger: Ledger,
    statement_id: uuid.UUID,
    payment_intent: str,
    amount_minor: int,
    *,
    principal: Principal,
) -> str:
    """A PaymentIntent of the statement succeeded: the payment is recorded
    (once: its id is the reference), the statement paid when it is all."""
    statement = await session.get(PartnerStatement, statement_id)
    if statement is None:
        return "ignored: no such statement"
    program = await session.get_one(Program, statement.program_id)
    partner = await session.get_one(Partner, statement.partner_id)
    collection = await _collection_of(session, statement_id)
    _, created = await record_payment(
        session,
        ledger,
        program,
        partner,
        statement.number,
        PaymentRequest(reference=payment_intent, amount_minor=amount_minor),
        principal=principal,
    )
    if collection is not None:
        collection.status = CollectionStatus.SUCCEEDED
        collection.payment_intent_id = payment_intent
        collection.next_attempt_at = None
        collection.failure = None
    await session.flush()
    if not created:
        return "ignored: payment recorded already"
    return f"statement {statement.number} payment: {amount_minor} {statement.currency}"


async def collection_failed(
    session: AsyncSession,
    statement_id: uuid.UUID,
    attempt: int,
    payment_intent: str,
    reason: str,
    now: datetime,
    *,
    principal: Principal,
) -> str:
    """An attempt failed: the next is scheduled, or after the last retry the
    collection is given up; ``partner.payment_failed`` is sent. The same
    attempt reported again changes nothing."""
    collection = await _collection_of(session, statement_id)
    if collection is None or collection.status == CollectionStatus.SUCCEEDED:
        return "ignored: no collection waiting"
    if collection.attempts != attempt or collection.status != CollectionStatus.PENDING:
        return "ignored: attempt reported already"
    statement = await session.get_one(PartnerStatement, statement_id)
    partner = await session.get_one(Partner, statement.partner_id)
    program = await session.get_one(Program, statement.program_id)
    collection.payment_intent_id = payment_intent
    collection.failure = reason[:500]
    if attempt <= len(RETRY_AFTER):
        collection.status = CollectionStatus.FAILED
        collection.next_attempt_at = now + RETRY_AFTER[attempt - 1]
    else:
        collection.status = CollectionStatus.GIVEN_UP
        collection.next_attempt_at = None
    statement.payment_status = PaymentStatus.FAILED
    await session.flush()
    await audit.record(
        session,
        principal,
        "partner.statement.collection_failed",
        f"{_subject(program.slug, partner)}:statement:{statement.number}",
        {"attempt": attempt, "payment_intent": payment_intent, "reason": collection.failure},
    )
    await outbox.emit(
        session,
        events.PAYMENT_FAILED,
        events.subject(partner.id),
        {
            "statement_id": str(statement.id),
            "number": statement.number,
            "attempt": attempt,
            "reason": collection.failure,
            "next_attempt_at": (
                collection.next_attempt_at.isoformat() if collection.next_attempt_at else None
            ),
        },
    )
    return f"statement {statement.number} attempt {attempt} failed: {collection.status}"


async def due_retries(
    session: AsyncSession, now: datetime, *, limit: int = 100
) -> list[tuple[uuid.UUID, uuid.UUID, int]]:
    """(program, partner, statement number) of the collections to retry now."""
    rows = await session.execute(
        select(PartnerCollection.program_id, PartnerCollection.partner_id, PartnerStatement.number)
        .join(PartnerStatement, PartnerStatement.id == PartnerCollection.statement_id)
        .where(
            PartnerCollection.status == CollectionStatus.FAILED,
            PartnerCollection.next_attempt_at <= now,
        )
        .order_by(PartnerCollection.next_attempt_at)
        .limit(limit)
    )
    return [(r[0], r[1], r[2]) for r in rows]
