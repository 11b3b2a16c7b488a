"""Data-sharing agreements between two partners of a program: one proposes
(fields, purpose, direction, expiry), each opts in, and only once both have
is anything shared (``active``). Either may revoke: revocation ends every
further disclosure at once, the webhook deliveries still waiting in the
outbox too (``disclosures.cancel_deliveries``, in the same transaction).
An agreement past its expiry shares nothing, whether or not the
``expire-data-sharing-agreements`` job has marked it yet.

An agreement is found only through a partner that is one of its two
parties: any other partner's id finds nothing (404, as for one that does
not exist), so an agreement of others is never revealed.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import NotFound
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal
from partners.acting import partner_of
from partners.data_sharing.errors import (
    AgreementClosed,
    AgreementNotFound,
    AgreementNotInForce,
    InvalidAgreement,
)
from partners.data_sharing.models import AgreementStatus, DataSharingAgreement
from partners.data_sharing.schemas import SharingAgreementView, SharingProposal
from partners.models import Partner, PartnerStatus

#: The longest an agreement may run from its proposal.
MAX_TERM = timedelta(days=3 * 366)

_CLOSED = (AgreementStatus.REVOKED, AgreementStatus.EXPIRED)


def in_force(agreement: DataSharingAgreement, now: datetime) -> bool:
    return agreement.status == AgreementStatus.ACTIVE and agreement.expires_at > now


async def _find(
    session: AsyncSession, agreement_id: uuid.UUID, partner_id: uuid.UUID, *, lock: str | None
) -> DataSharingAgreement:
    query = select(DataSharingAgreement).where(
        DataSharingAgreement.id == agreement_id,
        or_(
            DataSharingAgreement.proposer_partner_id == partner_id,
            DataSharingAgreement.counterparty_partner_id == partner_id,
        ),
    )
    if lock == "share":
        query = query.with_for_update(read=True)
    elif lock == "update":
        query = query.with_for_update()
    agreement = await session.scalar(query.execution_options(populate_existing=True))
    if agreement is None:
        raise AgreementNotFound(f"no data-sharing agreement {agreement_id}")
    return agreement


async def _a_party_not_active(session: AsyncSession, agreement: DataSharingAgreement) -> bool:
    """Whether either partner is suspended or offboarded: a partner that may
    not act receives and gives nothing."""
    found = await session.scalar(
        select(Partner.id)
        .where(Partner.id.in_(list(agreement.parties())), Partner.status != PartnerStatus.ACTIVE)
        .limit(1)
    )
    return found is not None


async def agreement_in_force(
    session: AsyncSession,
    agreement_id: uuid.UUID,
    partner_id: uuid.UUID,
    now: datetime,
    *,
    lock: bool = True,
) -> DataSharingAgreement:
    """The agreement, if ``partner_id`` is one of its parties and it is in
    force at ``now``: else ``AgreementNotFound`` (404) for an agreement
    that does not exist or is not the partner's, ``AgreementNotInForce``
    (409) for one of its own that is proposed, revoked or expired, or
    whose other party (or itself) is suspended or offboarded.

    With ``lock`` (the default) the row is held FOR SHARE to the end of the
    transaction: a revocation waits for the disclosures under way and every
    one after it finds the agreement revoked."""
    agreement = await _find(session, agreement_id, partner_id, lock="share" if lock else None)
    if in_force(agreement, now) and await _a_party_not_active(session, agreement):
        raise AgreementNotInForce(
            f"data-sharing agreement {agreement_id}: a party is suspended or has left the"
            " program, so nothing is shared under it meanwhile"
        )
    if not in_force(agreement, now):
        state = (
            AgreementStatus.EXPIRED
            if agreement.status == AgreementStatus.ACTIVE
            else AgreementStatus(agreement.status)
        )
        raise AgreementNotInForce(
            f"data-sharing agreement {agreement_id} is {state}: nothing is shared under it"
        )
    return agreement


async def _slugs(session: AsyncSession, ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await session.execute(select(Partner.id, Partner.slug).where(Partner.id.in_(ids)))
    return {row.id: row.slug for row in rows}


async def views(
    session: AsyncSession, agreements: list[DataSharingAgreement]
) -> list[SharingAgreementView]:
    ids: set[uuid.UUID] = set()
    for a in agreements:
        ids.update(a.parties())
    slugs = await _slugs(session, ids)
    return [
        SharingAgreementView(
            id=a.id,
            proposer=slugs[a.proposer_partner_id],
            counterparty=slugs[a.counterparty_partner_id],
            purpose=a.purpose,
            direction=a.direction,  # type: ignore[arg-type]
            fields=list(a.fields),
            min_group_size=a.min_group_size,
            status=a.status,
            proposer_opted_in_at=a.proposer_opted_in_at,
            counterparty_opted_in_at=a.counterparty_opted_in_at,
            expires_at=a.expires_at,
            revoked_at=a.revoked_at,
            revoked_by=slugs.get(a.revoked_by_partner_id) if a.revoked_by_partner_id else None,
            created_at=a.created_at,
        )
        for a in agreements
    ]


async def view(session: AsyncSession, agreement: DataSharingAgreement) -> SharingAgreementView:
    return (await views(session, [agreement]))[0]


def _subject(agreement: DataSharingAgreement) -> str:
    return f"data-sharing-agreement:{agreement.id}"


async def propose(
    session: AsyncSession,
    proposal: SharingProposal,
    now: datetime,
    *,
    principal: Principal,
) -> DataSharingAgreement:
    """Propose an agreement to another partner of the program. Nothing is
    shared until both partners opted in (``opt_in``)."""
    program_id, own = partner_of(principal)
    if len(set(proposal.fields)) != len(proposal.fields):
        raise InvalidAgreement("fields: name each field once")
    if proposal.expires_at <= now:
        raise InvalidAgreement("expires_at: the expiry must be in the future")
    if proposal.expires_at > now + MAX_TERM:
        raise InvalidAgreement("expires_at: an agreement runs at most 3 years")
    counterparty = await session.scalar(
        select(Partner).where(
            Partner.program_id == program_id,
            Partner.slug == proposal.counterparty,
            Partner.status != PartnerStatus.OFFBOARDED,
        )
    )
    if counterparty is None:
        raise NotFound(f"no partner {proposal.counterparty!r}")
    if counterparty.id == own:
        raise InvalidAgreement("counterparty: an agreement is with another partner")
    agreement = DataSharingAgreement(
        id=uuid.uuid4(),
        program_id=program_id,
        proposer_partner_id=own,
        counterparty_partner_id=counterparty.id,
        purpose=proposal.purpose,
        direction=proposal.direction,
        fields=sorted(proposal.fields),
        min_group_size=proposal.min_group_size,
        status=AgreementStatus.PROPOSED,
        expires_at=proposal.expires_at,
        key_epoch=1,
    )
    session.add(agreement)
    await session.flush()
    await audit.record(
        session,
        principal,
        "data_sharing.propose",
        _subject(agreement),
        {
            "counterparty": counterparty.slug,
            "fields": agreement.fields,
            "direction": proposal.direction,
            "purpose": proposal.purpose,
            "expires_at": proposal.expires_at,
        },
    )
    await session.refresh(agreement)
    return agreement


async def get(
    session: AsyncSession, agreement_id: uuid.UUID, *, principal: Principal
) -> DataSharingAgreement:
    _, own = partner_of(principal)
    return await _find(session, agreement_id, own, lock=None)


async def list_agreements(
    session: AsyncSession,
    *,
    principal: Principal,
    status: AgreementStatus | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[SharingAgreementView]:
    """The partner's agreements (either side), oldest first, a page at a time."""
    _, own = partner_of(principal)
    query = select(DataSharingAgreement).where(
        or_(
            DataSharingAgreement.proposer_partner_id == own,
            DataSharingAgreement.counterparty_partner_id == own,
        )
    )
    if status is not None:
        query = query.where(DataSharingAgreement.status == status)
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(DataSharingAgreement.id > after)
    rows = list(await session.scalars(query.order_by(DataSharingAgreement.id).limit(limit + 1)))
    return page_of(await views(session, rows), [r.id for r in rows], limit)


async def opt_in(
    session: AsyncSession, agreement_id: uuid.UUID, now: datetime, *, principal: Principal
) -> DataSharingAgreement:
    """The caller's partner opts in; once both have, the agreement is in
    force. Opting in again changes nothing."""
    _, own = partner_of(principal)
    agreement = await _find(session, agreement_id, own, lock="update")
    if agreement.status in _CLOSED or agreement.expires_at <= now:
        raise AgreementClosed(f"data-sharing agreement {agreement_id} is {agreement.status}")
    if agreement.status == AgreementStatus.ACTIVE:
        return agreement
    column = (
        "proposer_opted_in_at"
        if own == agreement.proposer_partner_id
        else "counterparty_opted_in_at"
    )
    if getattr(agreement, column) is None:
        setattr(agreement, column, now)
        if agreement.proposer_opted_in_at and agreement.counterparty_opted_in_at:
            agreement.status = AgreementStatus.ACTIVE
        agreement.updated_at = now
        await session.flush()
        await audit.record(
            session,
            principal,
            "data_sharing.opt_in",
            _subject(agreement),
            {"status": agreement.status},
        )
    return agreement


async def revoke(
    session: AsyncSession, agreement_id: uuid.UUID, now: datetime, *, principal: Principal
) -> DataSharingAgreement:
    """Either partner revokes: nothing more is shared under the agreement,
    and its webhook deliveries still waiting are cancelled, in this
    transaction. Revoking a revoked agreement changes nothing."""
    from partners.data_sharing.disclosures import cancel_deliveries

    _, own = partner_of(principal)
    agreement = await _find(session, agreement_id, own, lock="update")
    if agreement.status == AgreementStatus.REVOKED:
        return agreement
    if agreement.status == AgreementStatus.EXPIRED:
        raise AgreementClosed(f"data-sharing agreement {agreement_id} has expired")
    agreement.status = AgreementStatus.REVOKED
    agreement.revoked_at = now
    agreement.revoked_by_partner_id = own
    agreement.updated_at = now
    await session.flush()
    cancelled = await cancel_deliveries(session, [agreement.id], now, reason="revoked")
    await audit.record(
        session,
        principal,
        "data_sharing.revoke",
        _subject(agreement),
        {"cancelled_deliveries": cancelled},
    )
    return agreement


async def expire_agreements(session: AsyncSession, now: datetime) -> int:
    """Mark the agreements past their expiry ``expired`` and cancel their
    waiting webhook deliveries; answers how many expired."""
    from partners.data_sharing.disclosures import cancel_deliveries

    ids = list(
        (
            await session.scalars(
                update(DataSharingAgreement)
                .where(
                    DataSharingAgreement.status.in_(
                        [AgreementStatus.PROPOSED, AgreementStatus.ACTIVE]
                    ),
                    DataSharingAgreement.expires_at <= now,
                )
                .values(status=AgreementStatus.EXPIRED, updated_at=now)
                .returning(DataSharingAgreement.id)
            )
        ).all()
    )
    if ids:
        await cancel_deliveries(session, ids, now, reason="expired")
    return len(ids)
