"""Allocating market development funds, and reading them.

A fund is allocated by the program's operator (its funder is the program)
or by a brand partner (the partner API's token firm, or a brand partner the
operator names) to another partner of the program, for a period, in points
or in money. Allocating opens what its payments will move (the partners'
issuance accounts, or the money ledger in its currency with their money
accounts) before any row is written, so that no later use case waits on the
ledger's writer while it holds a fund's row lock.

Who sees a fund: the operator of its program, its partner, and its funder
(a brand partner); anyone else is answered as for a fund that does not
exist (``NotFound``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.codes import AccountCode, money_account_id
from core.errors import Conflict, NotFound
from core.models import Program
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal, PrincipalKind
from ledger import Account, Ledger
from partners import events
from partners.contracts import open_accounts
from partners.mdf.errors import InvalidMdfRequest
from partners.mdf.models import ClaimStatus, MdfActivity, MdfClaim, MdfFund
from partners.mdf.schemas import CLAIM_DAYS_DEFAULT, FundRequest, FundView, Reconciliation
from partners.models import Partner, PartnerStatus
from partners.money_ledger import money_ledger, open_money_accounts
from rewards.errors import LedgerRefused


def fund_subject(program: Program, fund: MdfFund) -> str:
    return f"program:{program.slug}:mdf-fund:{fund.reference}"


async def _partner_named(session: AsyncSession, program: Program, slug: str, field: str) -> Partner:
    found = await session.scalar(
        select(Partner).where(Partner.program_id == program.id, Partner.slug == slug)
    )
    if found is None:
        raise InvalidMdfRequest(f"{field}: no partner {slug!r}")
    if found.status == PartnerStatus.OFFBOARDED:
        raise InvalidMdfRequest(f"{field}: partner {slug!r} is offboarded")
    return found


async def _open_payment_accounts(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    request: FundRequest,
    partner: Partner,
    funder: Partner | None,
) -> int:
    """What the fund's payments move, opened (ids derived: again is a
    no-op); answers the ledger they post on."""
    if request.unit == "points":
        for each in (partner, funder):
            if each is not None:
                await open_accounts(ledger, program, each)
        return program.ledger_id
    assert request.currency is not None
    ledger_id = await money_ledger(session, ledger, program, request.currency)
    for each in (partner, funder):
        if each is not None:
            await open_money_accounts(ledger, program, request.currency, ledger_id, each.id)
    if funder is None:
        [outcome] = await ledger.create_accounts(
            [
                Account(
                    id=money_account_id(program.id, request.currency, AccountCode.MDF_EXPENSE),
                    ledger=ledger_id,
                    code=AccountCode.MDF_EXPENSE,
                )
            ]
        )
        if outcome.result not in ("ok", "exists"):
            raise LedgerRefused(f"the MDF expense account was refused: {outcome.result}")
    return ledger_id


async def allocate_fund(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    request: FundRequest,
    now: datetime,
    *,
    principal: Principal,
) -> FundView:
    """Allocate a fund, audited, with an event to its partner. The funder is
    the token's firm for a partner principal, else the program (or the
    brand partner ``request.funder`` names). Idempotent by ``reference``:
    the same fields again answer the first fund (``replayed``), others are
    a ``Conflict``. Refused (422, nothing written): a partner or funder not
    of the program or offboarded, a funder funding itself."""
    funder: Partner | None = None
    if principal.kind is PrincipalKind.PARTNER:
        if request.funder is not None:
            raise InvalidMdfRequest("funder: the partner API's funder is the token's firm")
        funder = await session.get(Partner, principal.partner_id)
        if funder is None or funder.program_id != program.id:
            raise NotFound("no partner")
    elif request.funder is not None:
        funder = await _partner_named(session, program, request.funder, "funder")
    partner = await _partner_named(session, program, request.partner, "partner")
    if funder is not None and funder.id == partner.id:
        raise InvalidMdfRequest("partner: a funder allocates funds to other partners only")
    claims_until = request.claims_until or request.period_end + timedelta(days=CLAIM_DAYS_DEFAULT)
    funder_id = funder.id if funder else None
    funder_slug = funder.slug if funder else None
    earlier = await session.scalar(
        select(MdfFund).where(
            MdfFund.program_id == program.id, MdfFund.reference == request.reference
        )
    )
    if earlier is not None:
        same = (
            earlier.partner_id,
            earlier.funder_partner_id,
            earlier.name,
            earlier.period_start,
            earlier.period_end,
            earlier.claims_until,
            earlier.unit,
            earlier.currency,
            earlier.amount,
        ) == (
            partner.id,
            funder_id,
            request.name,
            request.period_start,
            request.period_end,
            claims_until,
            request.unit,
            request.currency,
            request.amount,
        )
        if not same:
            raise Conflict(f"fund {request.reference!r} was allocated with other fields")
        return FundView.of(earlier, partner.slug, funder_slug, replayed=True)
    ledger_id = await _open_payment_accounts(session, ledger, program, request, partner, funder)
    fund = MdfFund(
        program_id=program.id,
        partner_id=partner.id,
        funder_partner_id=funder_id,
        reference=request.reference,
        name=request.name,
        period_start=request.period_start,
        period_end=request.period_end,
        claims_until=claims_until,
        unit=request.unit,
        currency=request.currency,
        ledger_id=ledger_id,
        amount=request.amount,
        committed=0,
        claimed=0,
        paid=0,
        created_by=principal.actor,
    )
    session.add(fund)
    await session.flush()
    details = {
        "partner": partner.slug,
        "funder": funder_slug,
        "unit": request.unit,
        "currency": request.currency,
        "amount": request.amount,
        "period": [request.period_start.isoformat(), request.period_end.isoformat()],
    }
    await audit.record(
        session, principal, "mdf.fund_allocated", fund_subject(program, fund), details
    )
    await outbox.emit(
        session,
        events.MDF_FUND_ALLOCATED,
        events.subject(partner.id),
        {"fund_id": str(fund.id), "reference": fund.reference, "name": fund.name, **details},
    )
    return FundView.of(fund, partner.slug, funder_slug)


def _visible(principal: Principal) -> ColumnElement[bool]:
    """The funds a principal sees in its program: all for an operator, its
    own and those it funds for a partner."""
    if principal.kind is not PrincipalKind.PARTNER:
        return MdfFund.id.is_not(None)
    return or_(
        MdfFund.partner_id == principal.partner_id,
        MdfFund.funder_partner_id == principal.partner_id,
    )


async def _slugs(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = await session.execute(select(Partner.id, Partner.slug).where(Partner.id.in_(ids)))
    return {row.id: row.slug for row in rows}


async def fund_view(session: AsyncSession, fund: MdfFund) -> FundView:
    slugs = await _slugs(session, {fund.partner_id, *filter(None, [fund.funder_partner_id])})
    funder = slugs[fund.funder_partner_id] if fund.funder_partner_id else None
    return FundView.of(fund, slugs[fund.partner_id], funder)


async def visible_fund(
    session: AsyncSession, program: Program, fund_id: uuid.UUID, *, principal: Principal
) -> MdfFund:
    fund = await session.scalar(
        select(MdfFund).where(
            MdfFund.id == fund_id, MdfFund.program_id == program.id, _visible(principal)
        )
    )
    if fund is None:
        raise NotFound(f"no fund {fund_id}")
    return fund


async def get_fund(
    session: AsyncSession, program: Program, fund_id: uuid.UUID, *, principal: Principal
) -> FundView:
    return await fund_view(
        session, await visible_fund(session, program, fund_id, principal=principal)
    )


async def list_funds(
    session: AsyncSession,
    program: Program,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None,
) -> Page[FundView]:
    """The funds the principal sees in the program, newest first."""
    after = decode_cursor(cursor)
    query = select(MdfFund).where(MdfFund.program_id == program.id, _visible(principal))
    if after is not None:
        query = query.where(MdfFund.id < after)
    funds = list(await session.scalars(query.order_by(MdfFund.id.desc()).limit(limit + 1)))
    ids = {f.partner_id for f in funds} | {
        f.funder_partner_id for f in funds if f.funder_partner_id
    }
    slugs = await _slugs(session, ids)
    views = [
        FundView.of(
            f, slugs[f.partner_id], slugs[f.funder_partner_id] if f.funder_partner_id else None
        )
        for f in funds
    ]
    return page_of(views, [f.id for f in funds], limit)


async def reconcile_fund(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    fund_id: uuid.UUID,
    *,
    principal: Principal,
) -> Reconciliation:
    """The fund's figures recomputed from its activities and claims, and
    its payments as the ledger holds them, beside the kept ones."""
    fund = await visible_fund(session, program, fund_id, principal=principal)
    committed_sum, requested_sum = (
        await session.execute(
            select(
                func.coalesce(func.sum(MdfActivity.approved_amount), 0),
                func.coalesce(
                    func.sum(MdfActivity.amount).filter(MdfActivity.status == "requested"), 0
                ),
            ).where(MdfActivity.fund_id == fund.id)
        )
    ).one()
    committed, requested = int(committed_sum or 0), int(requested_sum or 0)
    claims = (
        await session.execute(
            select(MdfClaim.status, MdfClaim.amount, MdfClaim.transfer_id).where(
                MdfClaim.fund_id == fund.id
            )
        )
    ).all()
    claimed = sum(c.amount for c in claims if c.status in (ClaimStatus.SUBMITTED, ClaimStatus.PAID))
    paid_claims = [c for c in claims if c.status == ClaimStatus.PAID]
    paid = sum(c.amount for c in paid_claims)
    drafts = sum(c.amount for c in claims if c.status == ClaimStatus.DRAFT)
    transfers = await ledger.lookup_transfers([c.transfer_id for c in paid_claims])
    by_id = {t.id: t for t in transfers}
    paid_in_ledger = sum(t.amount for t in transfers)
    every_paid_in_ledger = all(
        c.transfer_id in by_id and by_id[c.transfer_id].amount == c.amount for c in paid_claims
    )
    ties = (
        (committed, claimed, paid) == (fund.committed, fund.claimed, fund.paid)
        and paid_in_ledger == paid
        and every_paid_in_ledger
        and 0 <= paid <= claimed <= committed <= fund.amount
    )
    return Reconciliation(
        fund_id=str(fund.id),
        unit=fund.unit,
        currency=fund.currency,
        allocated=fund.amount,
        committed=committed,
        claimed=claimed,
        paid=paid,
        paid_in_ledger=paid_in_ledger,
        remaining=fund.amount - committed,
        requested=requested,
        drafts=drafts,
        ties=ties,
    )
