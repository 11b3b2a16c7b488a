"""What the partners module keeps of a member, for the member's export and
erasure (``core.member_data``): the identifiers the member linked at
partners (a card number is personal data). Issuances and holds at partners
name the member by id only; they stay, as the ledger's transfers do."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.member_data import MemberData, Records
from core.models import Member
from partners.coalition_models import PartnerMemberLink
from partners.models import Partner


async def _export(session: AsyncSession, member: Member) -> Records:
    rows = await session.execute(
        select(Partner.slug, PartnerMemberLink.identifier, PartnerMemberLink.created_at)
        .join(Partner, Partner.id == PartnerMemberLink.partner_id)
        .where(PartnerMemberLink.member_id == member.id)
        .order_by(PartnerMemberLink.created_at)
    )
    return {
        "links": [
            {"partner": slug, "identifier": identifier, "linked_at": linked_at.isoformat()}
            for slug, identifier, linked_at in rows
        ]
    }


async def _erase(session: AsyncSession, member: Member) -> None:
    await session.execute(delete(PartnerMemberLink).where(PartnerMemberLink.member_id == member.id))


MEMBER_DATA = MemberData(name="partners", export=_export, erase=_erase)
