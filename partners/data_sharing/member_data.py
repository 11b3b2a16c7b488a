"""What data sharing keeps of a member, for the member's export and erasure
(``core.member_data``): their consents per field and the log of what was
disclosed about them. Erasure withdraws every consent (the rows go, so
nothing of the member is shared again); the disclosure log stays, as the
record of what already went to whom (it holds field names, not values)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.member_data import MemberData, Records
from core.models import Member
from partners.data_sharing.models import DataDisclosure, DataSharingConsent
from partners.models import Partner


async def _export(session: AsyncSession, member: Member) -> Records:
    consents = await session.scalars(
        select(DataSharingConsent)
        .where(DataSharingConsent.member_id == member.id)
        .order_by(DataSharingConsent.field)
    )
    disclosed = await session.execute(
        select(
            DataDisclosure.agreement_id,
            Partner.slug,
            DataDisclosure.fields,
            DataDisclosure.channel,
            DataDisclosure.disclosed_at,
        )
        .join(Partner, Partner.id == DataDisclosure.to_partner_id)
        .where(DataDisclosure.member_id == member.id)
        .order_by(DataDisclosure.id)
    )
    return {
        "consents": [
            {
                "field": c.field,
                "granted_at": c.granted_at.isoformat(),
                "withdrawn_at": c.withdrawn_at.isoformat() if c.withdrawn_at else None,
            }
            for c in consents
        ],
        "disclosures": [
            {
                "agreement_id": str(agreement),
                "to_partner": slug,
                "fields": list(fields),
                "channel": channel,
                "disclosed_at": at.isoformat(),
            }
            for agreement, slug, fields, channel, at in disclosed
        ],
    }


async def _erase(session: AsyncSession, member: Member) -> None:
    await session.execute(
        delete(DataSharingConsent).where(DataSharingConsent.member_id == member.id)
    )


MEMBER_DATA = MemberData(name="data_sharing", export=_export, erase=_erase)
