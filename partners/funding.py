"""A prepaid partner's blocks of points, and what a contract holder may
still issue.

A block is recorded once it is paid (``record_funding``): by an operator
now, with the payment's reference; by the Stripe collection later, which
calls the same use case when the block's PaymentIntent succeeds, with the
PaymentIntent's id as the reference. Either way the block is a transfer
from the program's issuance account to the partner's, whose balance is
what the partner may issue.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.codes import TransferCode, derived_id
from core.errors import Conflict, NotFound
from core.models import Program
from core.principal import Principal
from ledger import Ledger, Transfer
from partners.acting import partner_of
from partners.coalition_errors import NoContractInForce, NotPrepaid, PartnerNotActive
from partners.coalition_models import FundingModel, PartnerFunding
from partners.contract_schemas import FundingRequest, FundingView, PartnerBalance
from partners.contracts import (
    acceptance_account,
    contract_holder,
    contract_in_force,
    credit_line,
    issuance_account,
    latest_published,
    lock_partner,
)
from partners.models import Partner, PartnerStatus
from rewards.connections import session_connection
from rewards.errors import LedgerRefused


async def record_funding(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    request: FundingRequest,
    now: datetime,
    *,
    principal: Principal,
) -> FundingView:
    """Record a paid block of points for a prepaid contract holder, audited,
    and move it to the partner's issuance account in the same transaction.
    Idempotent by ``reference``: the same block again answers the first
    recording (``replayed``), another block under it is a ``Conflict``."""
    partner = await lock_partner(session, partner)
    contract = await latest_published(session, partner)
    if contract is None:
        raise NoContractInForce(
            f"partner {partner.slug!r} holds no published contract of its own: fund the firm"
            " whose contract it acts under"
        )
    currency = request.currency or contract.currency
    paid_at = request.paid_at or now
    earlier = await session.scalar(
        select(PartnerFunding).where(
            PartnerFunding.partner_id == partner.id, PartnerFunding.reference == request.reference
        )
    )
    if earlier is not None:
        same = (earlier.points, earlier.amount_minor, earlier.currency) == (
            request.points,
            request.amount_minor,
            currency,
        ) and (request.paid_at is None or earlier.paid_at == request.paid_at)
        if not same:
            raise Conflict(f"funding {request.reference!r} was recorded with other fields")
        return FundingView.of(earlier, replayed=True)
    if partner.status == PartnerStatus.OFFBOARDED:
        raise PartnerNotActive(f"partner {partner.slug!r} is offboarded")
    if contract.funding_model != FundingModel.PREPAID:
        raise NotPrepaid(
            f"partner {partner.slug!r} is postpaid (contract version {contract.version}):"
            " its headroom is its credit line"
        )
    transfer_id = derived_id(program.id, "partner-funding", str(partner.id), request.reference)
    funding = PartnerFunding(
        program_id=program.id,
        partner_id=partner.id,
        reference=request.reference,
        points=request.points,
        amount_minor=request.amount_minor,
        currency=currency,
        paid_at=paid_at,
        transfer_id=transfer_id,
    )
    session.add(funding)
    await session.flush()
    await audit.record(
        session,
        principal,
        "partner.funding",
        f"program:{program.slug}:partner:{partner.slug}:funding:{request.reference}",
        {"points": request.points, "amount_minor": request.amount_minor, "currency": currency},
    )
    # Last: the ledger's lock is held from here to the commit.
    [outcome] = await ledger.create_transfers_within(
        await session_connection(session),
        [
            Transfer(
                id=transfer_id,
                debit_account_id=program.issuance_account_id,
                credit_account_id=issuance_account(program, partner.id),
                amount=request.points,
                ledger=program.ledger_id,
                code=TransferCode.PARTNER_FUNDING,
                metadata={"partner": partner.slug, "reference": request.reference},
            )
        ],
    )
    if outcome.result not in ("ok", "exists"):
        raise LedgerRefused(f"the block's transfer was refused: {outcome.result}")
    return FundingView.of(funding)


async def partner_balance(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    partner: Partner,
    now: datetime,
) -> PartnerBalance:
    """The balance of the contract ``partner`` acts under (its own, or its
    nearest ancestor's): ``partner`` comes from a look-up within the
    principal's tenant, and so does its holder (the same group)."""
    holder_id = await contract_holder(session, program, partner.id)
    if holder_id is None:
        return PartnerBalance(
            partner=partner.slug,
            funding_model=None,
            issuable_points=0,
            credit_limit_points=0,
            accepted_points=0,
        )
    holder = await session.get_one(Partner, holder_id)
    in_force = await contract_in_force(session, holder_id, now)
    states = {
        a.id: a
        for a in await ledger.lookup_accounts(
            [issuance_account(program, holder_id), acceptance_account(program, holder_id)]
        )
    }
    issuance = states.get(issuance_account(program, holder_id))
    acceptance = states.get(acceptance_account(program, holder_id))
    return PartnerBalance(
        partner=holder.slug,
        funding_model=in_force.funding_model if in_force else None,
        issuable_points=(
            issuance.credits_posted - issuance.debits_posted - issuance.debits_pending
            if issuance
            else 0
        ),
        credit_limit_points=await credit_line(session, holder),
        accepted_points=(acceptance.credits_posted - acceptance.debits_posted if acceptance else 0),
    )


async def own_firm(session: AsyncSession, principal: Principal) -> tuple[Program, Partner]:
    """The program and company of a partner principal (its token's)."""
    program_id, company_id = partner_of(principal)
    row = (
        await session.execute(
            select(Program, Partner)
            .join(Partner, Partner.program_id == Program.id)
            .where(Program.id == program_id, Partner.id == company_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound("no partner")
    return row[0], row[1]
