"""Members' consent to share their fields, one field at a time.

A field is shared only when the member consented to it and has not
withdrawn: no row (the default) or a withdrawn one is no. Whatever an
agreement names, a field without consent is never disclosed: every
disclosing path filters by ``consented_fields`` (a read, an export, a
webhook), in the statement that reads the members, so a withdrawal
committed before the read is honoured by it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import get_args

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.members import lock_member
from core.models import Member, Program
from core.principal import Principal
from partners.data_sharing.errors import UnknownField
from partners.data_sharing.models import DataSharingConsent
from partners.data_sharing.schemas import ConsentView, FieldName

#: Every shareable member field, in display order.
SHAREABLE_FIELDS: tuple[str, ...] = get_args(FieldName)


def check_field(field: str) -> str:
    if field not in SHAREABLE_FIELDS:
        raise UnknownField(f"{field!r} is not a shareable field ({', '.join(SHAREABLE_FIELDS)})")
    return field


async def consents(session: AsyncSession, member: Member) -> list[ConsentView]:
    """The member's consent for every shareable field."""
    rows = {
        row.field: row
        for row in await session.scalars(
            select(DataSharingConsent).where(DataSharingConsent.member_id == member.id)
        )
    }
    views = []
    for field in SHAREABLE_FIELDS:
        row = rows.get(field)
        views.append(
            ConsentView(
                field=field,
                granted=row is not None and row.withdrawn_at is None,
                granted_at=row.granted_at if row else None,
                withdrawn_at=row.withdrawn_at if row else None,
            )
        )
    return views


async def set_consent(
    session: AsyncSession,
    program: Program,
    member: Member,
    field: str,
    granted: bool,
    now: datetime,
    *,
    principal: Principal,
) -> ConsentView:
    """Grant or withdraw the member's consent to share ``field``; the same
    answer again changes nothing."""
    check_field(field)
    await lock_member(session, member.id)
    row = await session.scalar(
        select(DataSharingConsent).where(
            DataSharingConsent.member_id == member.id, DataSharingConsent.field == field
        )
    )
    changed = False
    if granted:
        if row is None:
            row = DataSharingConsent(
                id=uuid.uuid4(),
                program_id=program.id,
                member_id=member.id,
                field=field,
                granted_at=now,
            )
            session.add(row)
            changed = True
        elif row.withdrawn_at is not None:
            row.granted_at, row.withdrawn_at = now, None
            changed = True
    elif row is not None and row.withdrawn_at is None:
        row.withdrawn_at = now
        changed = True
    if changed:
        await session.flush()
        await audit.record(
            session,
            principal,
            "data_sharing.consent.grant" if granted else "data_sharing.consent.withdraw",
            f"program:{program.slug}:member:{member.external_id}:data-consent:{field}",
            {"field": field},
        )
    return ConsentView(
        field=field,
        granted=granted,
        granted_at=row.granted_at if row else None,
        withdrawn_at=row.withdrawn_at if row else None,
    )
