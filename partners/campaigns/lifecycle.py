"""A campaign's start and its end: the jobs of ``partners.campaigns.module``.

Start (an approved campaign whose start has come): each participant's part
of the budget moves from its contract holder's issuance account to its
budget account for the campaign (bounded), all parts in one linked chain,
so that the campaign is funded whole or not at all; the segment and its
holdout are drawn in the same transaction. A participant that cannot fund
its part (its issuance account short, no contract) leaves the campaign
``unfunded``, nothing moved.

End (its end passed, or a participant stopped it): under the campaign's
row lock, which every bonus holds shared until it commits, so that the
balances read are final, what each budget account has left goes back to
the account it came from. Ids derived from the campaign: a retry moves
nothing twice.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core import audit, outbox
from core.codes import AccountCode, TransferCode, derived_id
from core.models import Program
from core.principal import system
from ledger import Account, AccountFlags, Ledger, Transfer, TransferFlags
from partners import events
from partners.campaigns.holdout import draw_segment
from partners.campaigns.models import Campaign, CampaignParticipant, CampaignStatus
from partners.contracts import contract_holder, issuance_account
from partners.models import Partner
from rewards.connections import session_connection

_STARTER = system("start-campaigns")
_CLOSER = system("end-campaigns")
#: Campaigns one run of a job takes at most.
_BATCH = 100


async def _participants(session: AsyncSession, campaign_id: uuid.UUID) -> list[CampaignParticipant]:
    return list(
        await session.scalars(
            select(CampaignParticipant)
            .where(CampaignParticipant.campaign_id == campaign_id)
            .order_by(CampaignParticipant.position)
        )
    )


async def _tell_all(session: AsyncSession, campaign: Campaign, topic: str) -> None:
    for p in await _participants(session, campaign.id):
        await outbox.emit(
            session,
            topic,
            events.subject(p.partner_id),
            {
                "campaign_id": str(campaign.id),
                "reference": campaign.reference,
                "name": campaign.name,
                "status": campaign.status,
            },
        )


async def start_due_campaigns(
    sessions: async_sessionmaker[AsyncSession], ledger: Ledger, now: datetime
) -> int:
    """Start every approved campaign whose start has come; answers how many
    it started (or found unfunded)."""
    async with sessions() as session:
        due = list(
            await session.scalars(
                select(Campaign.id)
                .where(Campaign.status == CampaignStatus.APPROVED, Campaign.starts_at <= now)
                .order_by(Campaign.starts_at)
                .limit(_BATCH)
            )
        )
    done = 0
    for campaign_id in due:
        done += await start_campaign(sessions, ledger, campaign_id, now)
    return done


async def start_campaign(
    sessions: async_sessionmaker[AsyncSession],
    ledger: Ledger,
    campaign_id: uuid.UUID,
    now: datetime,
) -> int:
    async with sessions() as session:
        campaign = await session.get_one(Campaign, campaign_id)
        program = await session.get_one(Program, campaign.program_id)
        participants = await _participants(session, campaign_id)
    # Opened first, on the ledger's own connection (idempotent by id): the
    # transaction below must not wait on anything once it holds the lock.
    await ledger.create_accounts(
        [
            Account(
                id=p.budget_account_id,
                ledger=program.ledger_id,
                code=AccountCode.CAMPAIGN_BUDGET,
                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS,
                metadata={"campaign": str(campaign_id), "partner": str(p.partner_id)},
            )
            for p in participants
        ]
    )
    async with sessions() as session, session.begin():
        campaign_row = await session.scalar(
            select(Campaign)
            .where(Campaign.id == campaign_id, Campaign.status == CampaignStatus.APPROVED)
            .with_for_update(skip_locked=True)
        )
        if campaign_row is None:
            return 0  # started by another worker, or stopped meanwhile
        campaign = campaign_row
        subject = f"program:{program.slug}:campaign:{campaign.reference}"
        if campaign.ends_at <= now:
            campaign.status = CampaignStatus.UNFUNDED
            campaign.failure = "its end passed before it could start"
            campaign.closed_at = campaign.released_at = now
            await audit.record(session, _STARTER, "campaign.unfunded", subject, campaign.failure)
            return 1
        participants = await _participants(session, campaign_id)
        refusal: str | None = None
        for p in participants:
            holder = await contract_holder(session, program, p.partner_id)
            if holder is None:
                slug = await session.scalar(select(Partner.slug).where(Partner.id == p.partner_id))
                refusal = f"{slug}: no published contract to fund its part from"
                break
            p.funding_account_id = issuance_account(program, holder)
        if refusal is not None:
            campaign.status = CampaignStatus.UNFUNDED
            campaign.failure = refusal
            campaign.closed_at = campaign.released_at = now
            await audit.record(session, _STARTER, "campaign.unfunded", subject, refusal)
            await _tell_all(session, campaign, events.CAMPAIGN_STOPPED)
            return 1
        attempt = await session.begin_nested()
        size, held_out = await draw_segment(session, campaign, now)
        campaign.status = CampaignStatus.RUNNING
        campaign.started_at = now
        campaign.segment_size, campaign.holdout_size = size, held_out
        await session.flush()
        await audit.record(
            session,
            _STARTER,
            "campaign.start",
            subject,
            {"segment_size": size, "holdout_size": held_out},
        )
        await _tell_all(session, campaign, events.CAMPAIGN_STARTED)
        funded = [p for p in participants if p.budget_points > 0]
        transfers = [
            Transfer(
                id=derived_id(program.id, "campaign-budget", str(campaign.id), str(p.partner_id)),
                debit_account_id=p.funding_account_id,
                credit_account_id=p.budget_account_id,
                amount=p.budget_points,
                ledger=program.ledger_id,
                code=TransferCode.CAMPAIGN_BUDGET,
                flags=TransferFlags.LINKED if n < len(funded) - 1 else TransferFlags.NONE,
                metadata={"campaign": str(campaign.id)},
            )
            for n, p in enumerate(funded)
        ]
        # Last: the ledger's lock is held from here to the commit.
        outcomes = await ledger.create_transfers_within(
            await session_connection(session), transfers
        )
        failed = [
            (p, o.result)
            for p, o in zip(funded, outcomes, strict=True)
            if o.result not in ("ok", "exists", "linked_event_failed")
        ]
        if not failed:
            await attempt.commit()
            return 1
        short, result = failed[0][0].partner_id, failed[0][1]
        # Undoes the draw and the start's rows; the refused chain moved nothing.
        await attempt.rollback()
        campaign = await session.get_one(Campaign, campaign_id, populate_existing=True)
        slug = await session.scalar(select(Partner.slug).where(Partner.id == short))
        campaign.status = CampaignStatus.UNFUNDED
        campaign.failure = f"{slug}: its part of the budget was refused ({result})"
        campaign.closed_at = campaign.released_at = now
        await audit.record(session, _STARTER, "campaign.unfunded", subject, campaign.failure)
        await _tell_all(session, campaign, events.CAMPAIGN_STOPPED)
        return 1


async def close_due_campaigns(
    sessions: async_sessionmaker[AsyncSession], ledger: Ledger, now: datetime
) -> int:
    """End every running campaign whose end has passed, and give back what
    the budgets of ended and stopped campaigns have left; answers how many."""
    async with sessions() as session:
        due = list(
            await session.scalars(
                select(Campaign.id)
                .where(
                    or_(
                        (Campaign.status == CampaignStatus.RUNNING) & (Campaign.ends_at <= now),
                        Campaign.status.in_([CampaignStatus.STOPPED, CampaignStatus.ENDED])
                        & Campaign.released_at.is_(None),
                    )
                )
                .order_by(Campaign.ends_at)
                .limit(_BATCH)
            )
        )
    done = 0
    for campaign_id in due:
        done += await close_campaign(sessions, ledger, campaign_id, now)
    return done


async def close_campaign(
    sessions: async_sessionmaker[AsyncSession],
    ledger: Ledger,
    campaign_id: uuid.UUID,
    now: datetime,
) -> int:
    async with sessions() as session, session.begin():
        # For update: waits for every bonus being given (each holds the row
        # shared), and keeps new ones out until this commits.
        campaign = await session.scalar(
            select(Campaign).where(Campaign.id == campaign_id).with_for_update()
        )
        if campaign is None or campaign.released_at is not None:
            return 0
        if campaign.status == CampaignStatus.RUNNING:
            if campaign.ends_at > now:
                return 0
            campaign.status = CampaignStatus.ENDED
            campaign.closed_at = campaign.ends_at
        elif campaign.status not in (CampaignStatus.STOPPED, CampaignStatus.ENDED):
            return 0
        program = await session.get_one(Program, campaign.program_id)
        campaign.released_at = now
        participants = await _participants(session, campaign_id)
        funded = [p for p in participants if p.funding_account_id is not None]
        states = (
            {a.id: a for a in await ledger.lookup_accounts([p.budget_account_id for p in funded])}
            if campaign.started_at is not None
            else {}
        )
        releases: list[tuple[CampaignParticipant, int]] = []
        for p in funded:
            state = states.get(p.budget_account_id)
            left = state.credits_posted - state.debits_posted - state.debits_pending if state else 0
            if left > 0:
                releases.append((p, left))
        await session.flush()
        await audit.record(
            session,
            _CLOSER,
            "campaign.end",
            f"program:{program.slug}:campaign:{campaign.reference}",
            {"status": campaign.status, "released": {str(p.partner_id): n for p, n in releases}},
        )
        await _tell_all(session, campaign, events.CAMPAIGN_ENDED)
        if releases:
            outcomes = await ledger.create_transfers_within(
                await session_connection(session),
                [
                    Transfer(
                        id=derived_id(
                            program.id, "campaign-release", str(campaign.id), str(p.partner_id)
                        ),
                        debit_account_id=p.budget_account_id,
                        credit_account_id=p.funding_account_id,
                        amount=left,
                        ledger=program.ledger_id,
                        code=TransferCode.CAMPAIGN_BUDGET_RELEASE,
                        metadata={"campaign": str(campaign.id)},
                    )
                    for p, left in releases
                ],
            )
            refused = [o.result for o in outcomes if o.result not in ("ok", "exists")]
            if refused:
                raise RuntimeError(f"a release of campaign {campaign.id} was refused: {refused}")
        return 1
