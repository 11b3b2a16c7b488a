"""Where a lead stands, reported by the partner working it (the assignee
of a shared lead, the registrant of a kept deal): contacted, qualified,
won with its amount, lost with its reason. Each move is told to the
partner that shared the lead (``lead.status_changed``, a webhook).

A shared lead won earns its referrer the program's referral reward
(``ReferralTerms``): points (program's issuance account -> the partner's)
or money (the program's referral expense -> the partner's payable on the
money ledger), a fixed amount or a share of the won value, posted in the
transaction that records the win. Exactly once: the lead's row is locked,
a win reported again answers the first, and the transfer's id derives
from the lead.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.codes import AccountCode, TransferCode, derived_id, money_account_id
from core.errors import NotFound
from core.models import Program
from core.principal import Principal
from ledger import Account, Ledger, Transfer
from partners.acting import partner_of
from partners.contracts import issuance_account, open_accounts
from partners.leads.errors import InvalidLead, InvalidReferralTerms, StatusMoveRefused
from partners.leads.models import (
    Lead,
    LeadOffer,
    LeadReferralTerms,
    LeadStatus,
    OfferStatus,
    PartnerLeadProfile,
)
from partners.leads.offers import tell_registrant
from partners.leads.offers import view_of as offer_view
from partners.leads.registration import own_lead, view_of
from partners.leads.schemas import (
    LeadView,
    OfferView,
    ReferralTerms,
    ReferralTermsView,
    StatusReport,
)
from partners.models import Partner
from partners.money_ledger import money_ledger, move_money, open_money_accounts
from partners.statement_lines import round_minor
from rewards.connections import session_connection
from rewards.errors import LedgerRefused

#: How far a lead has gone: a report never moves it back.
_STAGE = {
    LeadStatus.REGISTERED: 0,
    LeadStatus.ACCEPTED: 0,
    LeadStatus.CONTACTED: 1,
    LeadStatus.QUALIFIED: 2,
    LeadStatus.WON: 3,
    LeadStatus.LOST: 3,
}


def _check_report(report: StatusReport) -> None:
    if report.status == "won" and report.won_amount_minor is None:
        raise InvalidLead("won_amount_minor: a won lead reports its amount")
    if report.status == "lost" and report.lost_reason is None:
        raise InvalidLead("lost_reason: a lost lead reports why")
    if report.status != "won" and report.won_amount_minor is not None:
        raise InvalidLead("won_amount_minor: only a won lead reports an amount")
    if report.status != "lost" and report.lost_reason is not None:
        raise InvalidLead("lost_reason: only a lost lead reports a reason")


def _repeated(lead: Lead, report: StatusReport) -> bool:
    return lead.status == report.status and (
        lead.won_amount_minor == report.won_amount_minor and lead.lost_reason == report.lost_reason
    )


async def _move(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    lead: Lead,
    report: StatusReport,
    now: datetime,
    *,
    principal: Principal,
) -> bool:
    """Move the locked lead; answers False for a repeated report (nothing written)."""
    _check_report(report)
    if _repeated(lead, report):
        return False
    stage = _STAGE.get(LeadStatus(lead.status))
    if stage is None or stage >= 3 or _STAGE[LeadStatus(report.status)] < stage:
        raise StatusMoveRefused(
            f"lead {lead.id} is {lead.status}: it cannot become {report.status}"
        )
    lead.status = report.status
    lead.status_changed_at = now
    lead.won_amount_minor = report.won_amount_minor
    lead.lost_reason = report.lost_reason
    closing = report.status in ("won", "lost")
    if closing and lead.assignee_id is not None:
        await session.execute(
            update(PartnerLeadProfile)
            .where(PartnerLeadProfile.partner_id == lead.assignee_id)
            .values(open_leads=PartnerLeadProfile.open_leads - 1)
            .execution_options(synchronize_session=False)
        )
    reward = None
    if report.status == "won" and lead.shared:
        reward = await _planned_reward(session, program, lead)
        lead.reward = reward
    await session.flush()
    await audit.record(
        session,
        principal,
        f"leads.{report.status}",
        f"program:{program.slug}:lead:{lead.id}",
        {
            "won_amount_minor": report.won_amount_minor,
            "lost_reason": report.lost_reason,
            "reward": reward,
        },
    )
    if lead.shared:
        await tell_registrant(session, lead, now)
    if reward is not None:
        await _post_reward(session, ledger, program, lead, reward)
    return True


async def report_as_assignee(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    offer_id: uuid.UUID,
    report: StatusReport,
    now: datetime,
    *,
    principal: Principal,
) -> OfferView:
    """The partner that accepted a shared lead reports where it stands."""
    principal.require("leads:receive")
    program_id, partner_id = partner_of(principal)
    offer = await session.scalar(
        select(LeadOffer).where(
            LeadOffer.id == offer_id,
            LeadOffer.partner_id == partner_id,
            LeadOffer.program_id == program_id,
        )
    )
    if offer is None:
        raise NotFound(f"no lead offer {offer_id}")
    if offer.status != OfferStatus.ACCEPTED:
        raise StatusMoveRefused(f"lead offer {offer_id} is {offer.status}: accept it first")
    lead = await session.scalar(
        select(Lead)
        .where(Lead.id == offer.lead_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert lead is not None
    moved = await _move(session, ledger, program, lead, report, now, principal=principal)
    return offer_view(offer, lead, replayed=not moved)


async def report_as_registrant(
    session: AsyncSession,
    ledger: Ledger,
    program: Program,
    lead_id: uuid.UUID,
    report: StatusReport,
    now: datetime,
    *,
    principal: Principal,
) -> LeadView:
    """The registrant of a kept deal reports where it stands (a shared
    lead's is reported by the partner that accepted it)."""
    principal.require("leads:share")
    lead = await own_lead(session, lead_id, principal=principal, lock=True)
    if lead.shared:
        raise StatusMoveRefused(
            f"lead {lead_id} is shared: the partner that accepted it reports its status"
        )
    moved = await _move(session, ledger, program, lead, report, now, principal=principal)
    return view_of(lead, replayed=not moved)


async def _planned_reward(
    session: AsyncSession, program: Program, lead: Lead
) -> dict[str, Any] | None:
    terms = await session.scalar(
        select(LeadReferralTerms).where(LeadReferralTerms.program_id == program.id)
    )
    if terms is None:
        return None
    won = lead.won_amount_minor or 0
    if terms.basis == "share":
        amount = round_minor(Decimal(won) * terms.share_bps / 10_000)
        currency: str | None = lead.currency
    else:
        amount = terms.amount
        currency = terms.currency if terms.reward == "money" else None
    if amount <= 0:
        return None
    return {
        "reward": terms.reward,
        "amount": amount,
        "currency": currency,
        "transfer_id": str(derived_id(program.id, "lead-referral", str(lead.id))),
    }


async def _post_reward(
    session: AsyncSession, ledger: Ledger, program: Program, lead: Lead, reward: dict[str, Any]
) -> None:
    """Post the reward to the referrer (the lead's registrant). Last: the
    ledger's lock is held from here to the commit."""
    referrer = await session.get_one(Partner, lead.partner_id)
    transfer_id = uuid.UUID(reward["transfer_id"])
    metadata: dict[str, object] = {"lead": str(lead.id), "partner": referrer.slug}
    if reward["reward"] == "points":
        await open_accounts(ledger, program, referrer)
        [outcome] = await ledger.create_transfers_within(
            await session_connection(session),
            [
                Transfer(
                    id=transfer_id,
                    debit_account_id=program.issuance_account_id,
                    credit_account_id=issuance_account(program, referrer.id),
                    amount=reward["amount"],
                    ledger=program.ledger_id,
                    code=TransferCode.REFERRAL_REWARD_POINTS,
                    metadata=metadata,
                )
            ],
        )
        result = str(outcome.result)
    else:
        currency = reward["currency"]
        ledger_id = await money_ledger(session, ledger, program, currency)
        await open_money_accounts(ledger, program, currency, ledger_id, referrer.id)
        expense = money_account_id(program.id, currency, AccountCode.REFERRAL_EXPENSE)
        [opened] = await ledger.create_accounts(
            [Account(id=expense, ledger=ledger_id, code=AccountCode.REFERRAL_EXPENSE)]
        )
        if opened.result not in ("ok", "exists"):
            raise LedgerRefused(f"the referral expense account was refused: {opened.result}")
        result = await move_money(
            session,
            ledger,
            transfer_id=transfer_id,
            ledger_id=ledger_id,
            code=TransferCode.REFERRAL_REWARD_MONEY,
            debit=expense,
            credit=money_account_id(program.id, currency, AccountCode.PARTNER_PAYABLE, referrer.id),
            amount=reward["amount"],
            metadata=metadata,
        )
    if result not in ("ok", "exists"):
        raise LedgerRefused(f"the referral reward was refused: {result}")


def _check_terms(terms: ReferralTerms) -> None:
    if terms.basis == "share":
        if terms.reward == "points":
            raise InvalidReferralTerms("basis: a share of the won value is paid in money only")
        if terms.share_bps == 0:
            raise InvalidReferralTerms("share_bps: a share of 1 to 10000 basis points")
    elif terms.amount == 0:
        raise InvalidReferralTerms("amount: a fixed reward of at least 1")
    if terms.reward == "money" and terms.basis == "fixed" and terms.currency is None:
        raise InvalidReferralTerms("currency: a fixed money reward names its currency")
    if terms.reward == "points" and terms.currency is not None:
        raise InvalidReferralTerms("currency: a points reward has none")


async def save_referral_terms(
    session: AsyncSession, program: Program, terms: ReferralTerms, *, principal: Principal
) -> ReferralTermsView:
    """Set the program's referral terms (for leads won from now on), audited."""
    principal.require("leads:write")
    _check_terms(terms)
    found = await session.scalar(
        select(LeadReferralTerms)
        .where(LeadReferralTerms.program_id == program.id)
        .with_for_update()
    )
    if found is None:
        found = LeadReferralTerms(program_id=program.id)
        session.add(found)
    found.reward = terms.reward
    found.basis = terms.basis
    found.amount = terms.amount
    found.share_bps = terms.share_bps
    found.currency = terms.currency
    await session.flush()
    await session.refresh(found, ["updated_at"])
    await audit.record(
        session, principal, "leads.referral_terms", f"program:{program.slug}:referral-terms", terms
    )
    return ReferralTermsView(terms=terms, updated_at=found.updated_at)


async def get_referral_terms(
    session: AsyncSession, program: Program, *, principal: Principal
) -> ReferralTermsView:
    principal.require("leads:read")
    found = await session.scalar(
        select(LeadReferralTerms).where(LeadReferralTerms.program_id == program.id)
    )
    if found is None:
        raise NotFound(f"program {program.slug!r} has no referral terms")
    return ReferralTermsView(
        terms=ReferralTerms(
            reward=found.reward,  # type: ignore[arg-type]
            basis=found.basis,  # type: ignore[arg-type]
            amount=found.amount,
            share_bps=found.share_bps,
            currency=found.currency,
        ),
        updated_at=found.updated_at,
    )
