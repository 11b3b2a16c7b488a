"""Money moving between the program and a partner outside statements:
payouts the program made (what its statements owed the partner) and
payments the partner made of a statement it owed. Each is a money ledger
transfer, idempotent by its reference, bounded by the ledger itself (a
payout beyond what is owed, or a payment beyond what is due, is refused).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.codes import AccountCode, TransferCode, derived_id, money_account_id
from core.models import Program
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal, PrincipalKind
from ledger import Ledger, Transfer
from partners import events
from partners.coalition_models import FundingModel, PartnerContract
from partners.contracts import issuance_account, latest_published, lock_partner
from partners.models import Partner
from partners.money_ledger import money_ledger, move_money, open_money_accounts
from partners.statement_errors import NotContractHolder, PaymentRefused, ReferenceReused
from partners.statement_models import (
    LineKind,
    PartnerPayout,
    PartnerStatement,
    PartnerStatementLine,
    PartnerStatementPayment,
    PaymentStatus,
)
from partners.statement_reads import get_statement
from partners.statement_schemas import PaymentRequest, PayoutRequest, PayoutView, StatementView
from partners.statement_views import statement_view
from rewards.connections import session_connection
from rewards.errors import LedgerRefused


def _payout_view(payout: PartnerPayout, *, replayed: bool = False) -> PayoutView:
    return PayoutView(
        id=str(payout.id),
        reference=payout.reference,
        amount_minor=payout.amount_minor,
        currency=payout.currency,
        paid_at=payout.paid_at,
        replayed=replayed,
    )


async def record_payout(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    request: PayoutRequest,
    now: datetime,
    *,
    principal: Principal,
) -> tuple[PayoutView, bool]:
    """Record money paid to the partner: payable -> cash on the money
    ledger, never more than the payable holds (``PaymentRefused``). The
    same reference with the same fields answers the first recording."""
    partner = await lock_partner(session, partner)
    contract = await latest_published(session, partner)
    if contract is None:
        raise NotContractHolder(f"partner {partner.slug!r} has no published contract of its own")
    currency = request.currency or contract.currency
    existing = await session.scalar(
        select(PartnerPayout).where(
            PartnerPayout.partner_id == partner.id, PartnerPayout.reference == request.reference
        )
    )
    if existing is not None:
        if (existing.amount_minor, existing.currency) != (request.amount_minor, currency):
            raise ReferenceReused(f"reference: payout {request.reference!r} has other fields")
        return _payout_view(existing, replayed=True), False
    money = await money_ledger(session, ledger, program, currency)
    await open_money_accounts(ledger, program, currency, money, partner.id)
    transfer_id = derived_id(program.id, "payout", str(partner.id), request.reference)
    payout = PartnerPayout(
        program_id=program.id,
        partner_id=partner.id,
        reference=request.reference,
        amount_minor=request.amount_minor,
        currency=currency,
        paid_at=request.paid_at or now,
        transfer_id=transfer_id,
    )
    session.add(payout)
    await session.flush()
    await audit.record(
        session,
        principal,
        "partner.payout",
        f"program:{program.slug}:partner:{partner.slug}:payout:{request.reference}",
        {"amount_minor": request.amount_minor, "currency": currency},
    )
    result = await move_money(
        session,
        ledger,
        transfer_id=transfer_id,
        ledger_id=money,
        code=TransferCode.PARTNER_PAYOUT,
        debit=money_account_id(program.id, currency, AccountCode.PARTNER_PAYABLE, partner.id),
        credit=money_account_id(program.id, currency, AccountCode.PARTNER_CASH),
        amount=request.amount_minor,
        metadata={"partner": partner.slug, "reference": request.reference},
    )
    if result == "exceeds_credits":
        raise PaymentRefused(
            f"amount_minor: the program owes partner {partner.slug!r} less than"
            f" {request.amount_minor} in {currency}"
        )
    if result not in ("ok", "exists"):
        raise LedgerRefused(f"the payout's transfer was refused: {result}")
    return _payout_view(payout), True


async def list_payouts(
    session: AsyncSession,
    partner: Partner,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
) -> Page[PayoutView]:
    """The payouts made to the partner, newest first: of the principal's
    program only, and for a partner principal of the firms within its reach
    only (any other partner has none to show)."""
    query = select(PartnerPayout).where(PartnerPayout.partner_id == partner.id)
    if principal.program_id is not None:
        query = query.where(PartnerPayout.program_id == principal.program_id)
    if principal.kind is PrincipalKind.PARTNER:
        query = query.where(PartnerPayout.partner_id.in_(principal.partner_ids))
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(PartnerPayout.id < after)
    rows = list(await session.scalars(query.order_by(PartnerPayout.id.desc()).limit(limit + 1)))
    return page_of([_payout_view(p) for p in rows], [p.id for p in rows], limit)


async def record_payment(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    number: int,
    request: PaymentRequest,
    *,
    principal: Principal,
) -> tuple[StatementView, bool]:
    """A payment received for a statement the partner owes: cash <-
    receivable on the money ledger, never beyond what the statement has
    left to pay; the statement is paid once its total is. The Stripe
    collection calls the same once a PaymentIntent succeeds, its id as
    the reference."""
    partner = await lock_partner(session, partner)
    statement, slug = await get_statement(
        session, program.id, principal=principal, number=number, partner=partner
    )
    existing = await session.scalar(
        select(PartnerStatementPayment).where(
            PartnerStatementPayment.statement_id == statement.id,
            PartnerStatementPayment.reference == request.reference,
        )
    )
    if existing is not None:
        if existing.amount_minor != request.amount_minor:
            raise ReferenceReused(f"reference: payment {request.reference!r} has other fields")
        return await statement_view(session, slug, statement), False
    left = statement.total_minor - statement.paid_minor
    if request.amount_minor > left:
        raise PaymentRefused(
            f"amount_minor: statement {statement.number} has {max(left, 0)} left to pay"
        )
    transfer_id = derived_id(program.id, "statement-payment", str(statement.id), request.reference)
    session.add(
        PartnerStatementPayment(
            program_id=program.id,
            partner_id=partner.id,
            statement_id=statement.id,
            reference=request.reference,
            amount_minor=request.amount_minor,
            status="succeeded",
            transfer_id=transfer_id,
        )
    )
    statement.paid_minor += request.amount_minor
    if statement.paid_minor == statement.total_minor:
        statement.payment_status = PaymentStatus.PAID
    await session.flush()
    await audit.record(
        session,
        principal,
        "partner.statement.payment",
        f"program:{program.slug}:partner:{partner.slug}:statement:{statement.number}",
        {"reference": request.reference, "amount_minor": request.amount_minor},
    )
    await outbox.emit(
        session,
        events.PAYMENT_SUCCEEDED,
        events.subject(partner.id),
        {
            "statement_id": str(statement.id),
            "number": statement.number,
            "reference": request.reference,
            "amount_minor": request.amount_minor,
            "currency": statement.currency,
        },
    )
    view = await statement_view(session, slug, statement)
    payment = Transfer(
        id=transfer_id,
        debit_account_id=money_account_id(program.id, statement.currency, AccountCode.PARTNER_CASH),
        credit_account_id=money_account_id(
            program.id, statement.currency, AccountCode.PARTNER_RECEIVABLE, partner.id
        ),
        amount=request.amount_minor,
        ledger=statement.money_ledger_id,
        code=TransferCode.PARTNER_PAYMENT,
        metadata={"statement": str(statement.id), "reference": request.reference},
    )
    restored = (
        await headroom_restored(session, program, statement)
        if statement.payment_status == PaymentStatus.PAID
        else None
    )
    # One call for both ledgers: it takes their locks in ledger order, so
    # the payment and the headroom it gives back commit together.
    outcomes = await ledger.create_transfers_within(
        await session_connection(session), [payment] + ([restored] if restored else [])
    )
    result = str(outcomes[0].result)
    if result == "exceeds_debits":
        raise PaymentRefused(f"amount_minor: partner {partner.slug!r} owes less than that")
    if result not in ("ok", "exists"):
        raise LedgerRefused(f"the payment's transfer was refused: {result}")
    if restored is not None and outcomes[1].result not in ("ok", "exists"):
        raise LedgerRefused(f"the headroom's transfer was refused: {outcomes[1].result}")
    return view, True


async def headroom_restored(
    session: AsyncSession, program: Program, statement: PartnerStatement
) -> Transfer | None:
    """The transfer giving a postpaid partner back the headroom a statement
    paid in full billed: the points it billed as issued (late adjustments
    included), from the program's issuance account to the partner's, its
    id derived from the statement (so it moves once). None for a prepaid
    contract (its headroom is its funding) or nothing issued."""
    funding = await session.scalar(
        select(PartnerContract.funding_model).where(
            PartnerContract.partner_id == statement.partner_id,
            PartnerContract.version == statement.contract_version,
        )
    )
    if funding != FundingModel.POSTPAID:
        return None
    points = int(
        await session.scalar(
            select(func.coalesce(func.sum(PartnerStatementLine.points), 0)).where(
                PartnerStatementLine.statement_id == statement.id,
                PartnerStatementLine.kind == LineKind.ISSUED,
            )
        )
        or 0
    )
    if points <= 0:
        return None
    return Transfer(
        id=derived_id(program.id, "statement-headroom", str(statement.id)),
        debit_account_id=program.issuance_account_id,
        credit_account_id=issuance_account(program, statement.partner_id),
        amount=points,
        ledger=program.ledger_id,
        code=TransferCode.PARTNER_HEADROOM_RESTORED,
        metadata={"statement": str(statement.id), "number": statement.number},
    )
