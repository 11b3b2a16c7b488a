"""Status flows back to the partner that shared a lead (API and outbox
event for its webhooks); a won shared lead earns its referrer the
program's referral reward once, even when the win is reported twice at
the same moment."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.codes import AccountCode, derived_id, money_account_id, partner_account_id
from core.models import Program
from core.outbox import outbox_events
from ledger import Ledger
from partners import events
from partners.leads.errors import InvalidLead, InvalidReferralTerms, StatusMoveRefused
from partners.leads.models import LeadOffer, PartnerLeadProfile
from partners.leads.offers import accept_offer
from partners.leads.outcomes import report_as_assignee, report_as_registrant, save_referral_terms
from partners.leads.schemas import OfferView, ReferralTerms, StatusReport
from partners.models import Partner
from tests.conftest import NewProgram
from tests.partners.conftest import NewPartner
from tests.partners.lead_helpers import OPERATOR, acting, configure_routing, profile, register

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


async def _accepted(
    session: AsyncSession, program: Program, registrant: Partner, worker: Partner
) -> tuple[str, uuid.UUID]:
    await configure_routing(session, program)
    for partner in (registrant, worker):
        await profile(session, program, partner)
    lead = await register(session, program, registrant, NOW, shared=True)
    offer = await session.scalar(select(LeadOffer).where(LeadOffer.lead_id == uuid.UUID(lead.id)))
    assert offer is not None and offer.partner_id == worker.id
    await accept_offer(session, program, offer.id, NOW, principal=acting(worker))
    await session.commit()
    return lead.id, offer.id


async def _statuses_told(session: AsyncSession, registrant: Partner, lead_id: str) -> list[str]:
    rows = await session.execute(
        select(outbox_events.c.payload)
        .where(
            outbox_events.c.topic == events.LEAD_STATUS_CHANGED,
            outbox_events.c.subject == events.subject(registrant.id),
            outbox_events.c.payload["lead_id"].astext == lead_id,
        )
        .order_by(outbox_events.c.id)
    )
    return [row[0]["status"] for row in rows]


async def test_the_status_flows_back_to_the_sharing_partner(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    registrant, worker = await new_partner(program), await new_partner(program)
    lead_id, offer_id = await _accepted(session, program, registrant, worker)
    for status in ("contacted", "qualified"):
        await report_as_assignee(
            session,
            ledger,
            program,
            offer_id,
            StatusReport(status=status),
            NOW,
            principal=acting(worker),
        )
        await session.commit()
    with pytest.raises(StatusMoveRefused):
        async with session.begin_nested():
            await report_as_assignee(
                session,
                ledger,
                program,
                offer_id,
                StatusReport(status="contacted"),
                NOW,
                principal=acting(worker),
            )
    with pytest.raises(InvalidLead, match="lost_reason"):
        await report_as_assignee(
            session,
            ledger,
            program,
            offer_id,
            StatusReport(status="lost"),
            NOW,
            principal=acting(worker),
        )
    lost = await report_as_assignee(
        session,
        ledger,
        program,
        offer_id,
        StatusReport(status="lost", lost_reason="went with a competitor"),
        NOW,
        principal=acting(worker),
    )
    await session.commit()
    assert lost.lead_status == "lost"
    told = await _statuses_told(session, registrant, lead_id)
    assert told == ["accepted", "contacted", "qualified", "lost"]
    freed = await session.scalar(
        select(PartnerLeadProfile.open_leads).where(PartnerLeadProfile.partner_id == worker.id)
    )
    assert freed == 0
    # The registrant reports nothing on a shared lead; the worker's view
    # never names the registrant.
    with pytest.raises(StatusMoveRefused, match="shared"):
        await report_as_registrant(
            session,
            ledger,
            program,
            uuid.UUID(lead_id),
            StatusReport(status="contacted"),
            NOW,
            principal=acting(registrant),
        )
    assert registrant.slug not in str(lost) and str(registrant.id) not in str(lost)


async def _win_twice(
    engine: AsyncEngine, ledger: Ledger, program: Program, worker: Partner, offer_id: uuid.UUID
) -> list[OfferView]:
    async def win() -> OfferView:
        async with AsyncSession(engine, expire_on_commit=False) as own:
            view = await report_as_assignee(
                own,
                ledger,
                program,
                offer_id,
                StatusReport(status="won", won_amount_minor=2_500_001),
                NOW,
                principal=acting(worker),
            )
            await own.commit()
            return view

    return list(await asyncio.gather(win(), win()))


async def test_a_money_referral_reward_is_posted_once_when_the_win_is_reported_twice(
    session: AsyncSession,
    engine: AsyncEngine,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    registrant, worker = await new_partner(program), await new_partner(program)
    await save_referral_terms(
        session,
        program,
        ReferralTerms(reward="money", basis="share", share_bps=1000),
        principal=OPERATOR,
    )
    await session.commit()
    lead_id, offer_id = await _accepted(session, program, registrant, worker)
    views = await _win_twice(engine, ledger, program, worker, offer_id)
    assert sorted(v.replayed for v in views) == [False, True]
    # 10% of 2,500,001, half-even: 250,000.1 -> 250,000.
    payable = money_account_id(program.id, "ZAR", AccountCode.PARTNER_PAYABLE, registrant.id)
    [account] = await ledger.lookup_accounts([payable])
    assert (account.credits_posted, account.debits_posted) == (250_000, 0)
    transfer_id = derived_id(program.id, "lead-referral", lead_id)
    [transfer] = await ledger.lookup_transfers([transfer_id])
    assert transfer.amount == 250_000 and transfer.credit_account_id == payable
    assert await _statuses_told(session, registrant, lead_id) == ["accepted", "won"]


async def test_a_points_referral_reward_credits_the_referrers_issuance_account(
    session: AsyncSession,
    engine: AsyncEngine,
    ledger: Ledger,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    registrant, worker = await new_partner(program), await new_partner(program)
    await save_referral_terms(
        session,
        program,
        ReferralTerms(reward="points", basis="fixed", amount=700),
        principal=OPERATOR,
    )
    await session.commit()
    _, offer_id = await _accepted(session, program, registrant, worker)
    await _win_twice(engine, ledger, program, worker, offer_id)
    issuance = partner_account_id(program.id, registrant.id, AccountCode.PARTNER_ISSUANCE)
    [account] = await ledger.lookup_accounts([issuance])
    assert account.credits_posted == 700


async def test_referral_terms_that_cannot_be_paid_are_refused(
    session: AsyncSession, new_program: NewProgram
) -> None:
    program = await new_program()
    for terms, field in (
        (ReferralTerms(reward="points", basis="share", share_bps=100), "basis"),
        (ReferralTerms(reward="money", basis="fixed", amount=100), "currency"),
        (ReferralTerms(reward="money", basis="share"), "share_bps"),
        (ReferralTerms(reward="points", basis="fixed"), "amount"),
    ):
        with pytest.raises(InvalidReferralTerms, match=field):
            await save_referral_terms(session, program, terms, principal=OPERATOR)


async def test_a_kept_deal_is_reported_by_its_registrant_without_reward(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    await save_referral_terms(
        session,
        program,
        ReferralTerms(reward="points", basis="fixed", amount=700),
        principal=OPERATOR,
    )
    lead = await register(session, program, partner, NOW)
    won = await report_as_registrant(
        session,
        ledger,
        program,
        uuid.UUID(lead.id),
        StatusReport(status="won", won_amount_minor=10),
        NOW,
        principal=acting(partner),
    )
    await session.commit()
    assert won.status == "won" and won.reward is None
