"""Claims of what an approved activity spent, with proof, and their payment.

The fund's partner drafts a claim (editable until it is submitted), then
submits it; an activity takes several partial claims, whose submitted and
paid amounts never exceed its approved amount (checked under the fund's
and the activity's row locks, and by the schema's CHECK). The funder
approves a submitted claim, which pays it through the ledger in the same
transaction, once: the transfer's id derives from the claim
(``core.codes.derived_id``), so a retry meets ``exists``, and the claim's
row says ``paid`` only if the transfer committed with it.

What a payment moves (code ``MDF_PAYMENT``):
- points: the funder's issuance account (the program's, or the brand
  partner's, bounded by its balance) -> the partner's issuance account;
- money: the program's MDF expense account (or the brand partner's
  receivable: it owes it) -> the partner's payable on the program's money
  ledger in the fund's currency, which the payouts pay out.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit, outbox
from core.codes import AccountCode, TransferCode, derived_id, money_account_id
from core.errors import Forbidden, NotFound
from core.models import Program
from core.principal import Principal, PrincipalKind
from core.statement_batch import StatementBatch, fetch_one
from ledger import Ledger, Transfer, new_id
from partners import events
from partners.acting import partner_of
from partners.contracts import issuance_account
from partners.mdf.activities import lock_fund, require_funder, sees
from partners.mdf.errors import (
    ActivityOverclaimed,
    FundClosed,
    FunderCannotPay,
    InvalidMdfRequest,
    WrongMdfState,
)
from partners.mdf.models import (
    ActivityStatus,
    ClaimStatus,
    FundUnit,
    MdfActivity,
    MdfClaim,
    MdfFund,
)
from partners.mdf.schemas import ClaimChange, ClaimDraft, ClaimView, Proof, Refusal
from rewards.connections import session_connection
from rewards.errors import LedgerRefused

_DRAFT = text("""
WITH a AS (
    SELECT a.id, a.fund_id, a.program_id, a.status, a.approved_amount,
        a.approved_amount - a.claimed AS unclaimed, f.claims_until, f.reference,
        g.slug AS program_slug
    FROM mdf_activities a JOIN mdf_funds f ON f.id = a.fund_id
    JOIN programs g ON g.id = a.program_id
    WHERE a.id = :activity AND a.program_id = :program AND a.partner_id = :partner
), ok AS (
    SELECT * FROM a
    WHERE a.status = 'approved' AND :amount <= a.unclaimed AND :today <= a.claims_until
), made AS (
    INSERT INTO mdf_claims (id, program_id, fund_id, activity_id, partner_id, amount,
        description, proof, status, created_at, updated_at)
    SELECT :id, ok.program_id, ok.fund_id, ok.id, :partner, :amount, :description,
        CAST(CAST(:proof AS text) AS jsonb), 'draft', :now, :now
    FROM ok
    RETURNING id
), audited AS (
    INSERT INTO audit_events (id, actor, action, subject, details)
    SELECT :audit_id, :actor, 'mdf.claim_drafted',
        concat_ws(':', 'program', ok.program_slug, 'mdf-fund', ok.reference, 'claim',
            CAST(:id_text AS text)),
        CAST(CAST(:details AS text) AS jsonb)
    FROM ok
)
SELECT a.fund_id, a.status, a.unclaimed, a.claims_until, (SELECT count(*) FROM made) AS made
FROM a
""")


def _proof(proof: list[Proof]) -> list[dict[str, str]]:
    return [{"url": p.url, "description": p.description} for p in proof]


async def draft_claim(
    writer: AsyncSession | StatementBatch,
    activity_id: uuid.UUID,
    request: ClaimDraft,
    now: datetime,
    *,
    principal: Principal,
    program: Program | None = None,
) -> ClaimView:
    """The fund's partner (the token's firm) drafts a claim on its approved
    activity, audited; with ``submit`` it is submitted at once (``program``
    then names the audit's subjects). Refused, writing nothing: an activity
    not the caller's (404), not approved (409 mdf-wrong-state), a claims
    window over (409 mdf-fund-closed), more than the activity has left to
    claim (409 mdf-activity-overclaimed)."""
    program_id, partner_id = partner_of(principal)
    claim_id = new_id()
    proof = _proof(request.proof)
    details = {"activity_id": str(activity_id), "amount": request.amount, "proof": len(proof)}
    row = await fetch_one(
        writer,
        _DRAFT,
        {
            "activity": activity_id,
            "program": program_id,
            "partner": partner_id,
            "amount": request.amount,
            "today": now.date(),
            "id": claim_id,
            "id_text": str(claim_id),
            "description": request.description,
            "proof": msgspec.json.encode(proof).decode(),
            "now": now,
            "audit_id": new_id(),
            "actor": principal.actor,
            "details": msgspec.json.encode(details).decode(),
        },
    )
    if row is None:
        raise NotFound(f"no activity {activity_id}")
    if not row["made"]:
        if row["status"] != ActivityStatus.APPROVED:
            raise WrongMdfState(f"the activity is {row['status']}: only an approved one is claimed")
        if now.date() > row["claims_until"]:
            raise FundClosed(f"the fund's claims window ended on {row['claims_until']}")
        raise ActivityOverclaimed(f"the activity has {row['unclaimed']} left to claim")
    if request.submit:
        # Submitting reads and writes more in the same transaction: a session's.
        assert program is not None
        assert isinstance(writer, AsyncSession)
        return await submit_claim(writer, program, claim_id, now, principal=principal)
    return ClaimView(
        id=str(claim_id),
        activity_id=str(activity_id),
        fund_id=str(row["fund_id"]),
        amount=request.amount,
        description=request.description,
        proof=list(request.proof),
        status=ClaimStatus.DRAFT,
        submitted_at=None,
        decided_at=None,
        decision_note=None,
        transfer_id=None,
        created_at=now,
    )


async def _locked_claim(
    session: AsyncSession, program: Program, claim_id: uuid.UUID, *, principal: Principal
) -> tuple[MdfFund, MdfActivity, MdfClaim]:
    """The claim, its activity and its fund, locked in that order's reverse
    (fund, activity, claim), if the principal sees them."""
    found = (
        await session.execute(
            select(MdfClaim.fund_id, MdfClaim.activity_id).where(
                MdfClaim.id == claim_id, MdfClaim.program_id == program.id
            )
        )
    ).one_or_none()
    if found is None:
        raise NotFound(f"no claim {claim_id}")
    fund = await lock_fund(session, found.fund_id)
    if not sees(principal, fund):
        raise NotFound(f"no claim {claim_id}")
    activity = await session.scalar(
        select(MdfActivity)
        .where(MdfActivity.id == found.activity_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    claim = await session.scalar(
        select(MdfClaim)
        .where(MdfClaim.id == claim_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert activity is not None
    assert claim is not None
    return fund, activity, claim


def _require_claimant(principal: Principal, fund: MdfFund) -> None:
    """Only the fund's partner drafts, edits and submits its claims."""
    if principal.kind is not PrincipalKind.PARTNER or principal.partner_id != fund.partner_id:
        raise Forbidden("only the fund's partner changes and submits its claims")


def _subject(program: Program, fund: MdfFund, claim: MdfClaim) -> str:
    return f"program:{program.slug}:mdf-fund:{fund.reference}:claim:{claim.id}"


async def change_claim(
    session: AsyncSession,
    program: Program,
    claim_id: uuid.UUID,
    change: ClaimChange,
    *,
    principal: Principal,
) -> ClaimView:
    """Change a draft claim's amount, description or proof, audited; a
    submitted or decided one is 409 mdf-wrong-state."""
    fund, activity, claim = await _locked_claim(session, program, claim_id, principal=principal)
    _require_claimant(principal, fund)
    if claim.status != ClaimStatus.DRAFT:
        raise WrongMdfState(f"the claim is {claim.status}: only a draft is changed")
    if change.amount is not None:
        unclaimed = (activity.approved_amount or 0) - activity.claimed
        if change.amount > unclaimed:
            raise ActivityOverclaimed(f"the activity has {unclaimed} left to claim")
        claim.amount = change.amount
    if change.description is not None:
        claim.description = change.description
    if change.proof is not None:
        claim.proof = _proof(change.proof)
    await session.flush()
    await audit.record(
        session,
        principal,
        "mdf.claim_changed",
        _subject(program, fund, claim),
        {"amount": claim.amount, "proof": len(claim.proof)},
    )
    return ClaimView.of(claim)


async def submit_claim(
    session: AsyncSession,
    program: Program,
    claim_id: uuid.UUID,
    now: datetime,
    *,
    principal: Principal,
) -> ClaimView:
    """Submit a draft claim: it counts towards its activity's and its fund's
    claimed from now on, and the funder is told. Submitting it again
    answers it. Refused: no proof (422), a claims window over (409
    mdf-fund-closed), claims past the activity's approved amount (409
    mdf-activity-overclaimed), a decided claim (409 mdf-wrong-state)."""
    fund, activity, claim = await _locked_claim(session, program, claim_id, principal=principal)
    _require_claimant(principal, fund)
    if claim.status == ClaimStatus.SUBMITTED:
        return ClaimView.of(claim)
    if claim.status != ClaimStatus.DRAFT:
        raise WrongMdfState(f"the claim is {claim.status}: it was decided already")
    if not claim.proof:
        raise InvalidMdfRequest("proof: a claim is submitted with at least one piece of proof")
    if now.date() > fund.claims_until:
        raise FundClosed(f"the fund's claims window ended on {fund.claims_until}")
    unclaimed = (activity.approved_amount or 0) - activity.claimed
    if claim.amount > unclaimed:
        raise ActivityOverclaimed(f"the activity has {unclaimed} left to claim")
    activity.claimed += claim.amount
    fund.claimed += claim.amount
    claim.status = ClaimStatus.SUBMITTED
    claim.submitted_at = now
    await session.flush()
    await audit.record(
        session,
        principal,
        "mdf.claim_submitted",
        _subject(program, fund, claim),
        {"amount": claim.amount},
    )
    if fund.funder_partner_id is not None:
        await outbox.emit(
            session,
            events.MDF_CLAIM_SUBMITTED,
            events.subject(fund.funder_partner_id),
            {"claim_id": str(claim.id), "activity_id": str(activity.id), "amount": claim.amount},
        )
    return ClaimView.of(claim)


def payment(program: Program, fund: MdfFund, claim: MdfClaim) -> Transfer:
    """The transfer that pays ``claim`` (its id derived from the claim)."""
    if fund.unit == FundUnit.POINTS:
        debit = (
            issuance_account(program, fund.funder_partner_id)
            if fund.funder_partner_id
            else program.issuance_account_id
        )
        credit = issuance_account(program, fund.partner_id)
    else:
        assert fund.currency is not None
        debit = (
            money_account_id(
                program.id, fund.currency, AccountCode.PARTNER_RECEIVABLE, fund.funder_partner_id
            )
            if fund.funder_partner_id
            else money_account_id(program.id, fund.currency, AccountCode.MDF_EXPENSE)
        )
        credit = money_account_id(
            program.id, fund.currency, AccountCode.PARTNER_PAYABLE, fund.partner_id
        )
    return Transfer(
        id=derived_id(program.id, "mdf-claim", str(claim.id)),
        debit_account_id=debit,
        credit_account_id=credit,
        amount=claim.amount,
        ledger=fund.ledger_id,
        code=TransferCode.MDF_PAYMENT,
        metadata={"fund": str(fund.id), "activity": str(claim.activity_id), "claim": str(claim.id)},
    )


async def approve_claim(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    claim_id: uuid.UUID,
    now: datetime,
    *,
    principal: Principal,
) -> ClaimView:
    """The funder approves a submitted claim: it is paid through the ledger
    in the same transaction, audited, and the partner told. Approving a
    paid claim again answers it (nothing moves twice); a draft or refused
    one is 409 mdf-wrong-state; a brand partner without the points is 409
    mdf-funder-cannot-pay (nothing written)."""
    fund, activity, claim = await _locked_claim(session, program, claim_id, principal=principal)
    require_funder(principal, fund)
    if claim.status == ClaimStatus.PAID:
        return ClaimView.of(claim)
    if claim.status != ClaimStatus.SUBMITTED:
        raise WrongMdfState(f"the claim is {claim.status}: only a submitted one is approved")
    transfer = payment(program, fund, claim)
    activity.paid += claim.amount
    fund.paid += claim.amount
    claim.status = ClaimStatus.PAID
    claim.transfer_id = transfer.id
    claim.decided_by = principal.actor
    claim.decided_at = now
    await session.flush()
    details: dict[str, Any] = {
        "amount": claim.amount,
        "unit": fund.unit,
        "currency": fund.currency,
        "transfer_id": str(transfer.id),
    }
    await audit.record(
        session, principal, "mdf.claim_paid", _subject(program, fund, claim), details
    )
    await outbox.emit(
        session,
        events.MDF_CLAIM_PAID,
        events.subject(fund.partner_id),
        {"claim_id": str(claim.id), "activity_id": str(activity.id), **details},
    )
    # Last: the ledger's lock is held from here to the commit.
    [outcome] = await ledger.create_transfers_within(await session_connection(session), [transfer])
    if outcome.result == "exceeds_credits" or outcome.result == "exceeds_debits":
        raise FunderCannotPay(f"the funder's account cannot pay {claim.amount}: {outcome.result}")
    if outcome.result not in ("ok", "exists"):
        raise LedgerRefused(f"the claim's payment was refused: {outcome.result}")
    return ClaimView.of(claim)


async def refuse_claim(
    session: AsyncSession,
    program: Program,
    claim_id: uuid.UUID,
    decision: Refusal,
    now: datetime,
    *,
    principal: Principal,
) -> ClaimView:
    """The funder refuses a submitted claim: its amount no longer counts as
    claimed (the partner may claim it again with better proof). Refusing
    it again answers it; a draft or paid one is 409 mdf-wrong-state."""
    fund, activity, claim = await _locked_claim(session, program, claim_id, principal=principal)
    require_funder(principal, fund)
    if claim.status == ClaimStatus.REFUSED:
        return ClaimView.of(claim)
    if claim.status != ClaimStatus.SUBMITTED:
        raise WrongMdfState(f"the claim is {claim.status}: only a submitted one is refused")
    activity.claimed -= claim.amount
    fund.claimed -= claim.amount
    claim.status = ClaimStatus.REFUSED
    claim.decided_by = principal.actor
    claim.decided_at = now
    claim.decision_note = decision.reason
    await session.flush()
    await audit.record(
        session,
        principal,
        "mdf.claim_refused",
        _subject(program, fund, claim),
        {"amount": claim.amount, "reason": decision.reason},
    )
    await outbox.emit(
        session,
        events.MDF_CLAIM_REFUSED,
        events.subject(fund.partner_id),
        {"claim_id": str(claim.id), "activity_id": str(activity.id), "reason": decision.reason},
    )
    return ClaimView.of(claim)


async def get_claim(
    session: AsyncSession, program: Program, claim_id: uuid.UUID, *, principal: Principal
) -> ClaimView:
    row = (
        await session.execute(
            select(MdfClaim, MdfFund)
            .join(MdfFund, MdfFund.id == MdfClaim.fund_id)
            .where(MdfClaim.id == claim_id, MdfClaim.program_id == program.id)
        )
    ).one_or_none()
    if row is None or not sees(principal, row[1]):
        raise NotFound(f"no claim {claim_id}")
    # A draft is the partner's own until it is submitted.
    if (
        row[0].status == ClaimStatus.DRAFT
        and principal.kind is PrincipalKind.PARTNER
        and not _is_claimant(principal, row[1])
    ):
        raise NotFound(f"no claim {claim_id}")
    return ClaimView.of(row[0])


def _is_claimant(principal: Principal, fund: MdfFund) -> bool:
    return principal.kind is PrincipalKind.PARTNER and principal.partner_id == fund.partner_id


async def list_claims(
    session: AsyncSession,
    program: Program,
    activity_id: uuid.UUID,
    *,
    principal: Principal,
    limit: int,
    after: uuid.UUID | None,
) -> tuple[list[ClaimView], list[uuid.UUID]]:
    """An activity's claims, newest first (drafts only to the fund's
    partner and the operator)."""
    row = (
        await session.execute(
            select(MdfFund)
            .join(MdfActivity, MdfActivity.fund_id == MdfFund.id)
            .where(MdfActivity.id == activity_id, MdfActivity.program_id == program.id)
        )
    ).scalar_one_or_none()
    if row is None or not sees(principal, row):
        raise NotFound(f"no activity {activity_id}")
    query = select(MdfClaim).where(MdfClaim.activity_id == activity_id)
    if principal.kind is PrincipalKind.PARTNER and not _is_claimant(principal, row):
        query = query.where(MdfClaim.status != ClaimStatus.DRAFT)
    if after is not None:
        query = query.where(MdfClaim.id < after)
    found = list(await session.scalars(query.order_by(MdfClaim.id.desc()).limit(limit + 1)))
    return [ClaimView.of(c) for c in found], [c.id for c in found]
