"""Partner firms for the partner tests, written as rows (the operator's use
cases have tests of their own): a program's partner, optionally a member
company of another."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from partners.models import Partner, PartnerStatus

_slugs = itertools.count(1)

NewPartner = Callable[..., Awaitable[Partner]]


@pytest.fixture
def new_partner(session: AsyncSession) -> NewPartner:
    async def make(
        program: Program,
        *,
        parent: Partner | None = None,
        status: PartnerStatus = PartnerStatus.ACTIVE,
        currency: str | None = None,
        **fields: object,
    ) -> Partner:
        partner = Partner(
            id=uuid.uuid4(),
            program_id=program.id,
            slug=str(fields.pop("slug", f"partner-{next(_slugs)}")),
            name=str(fields.pop("name", "Fuel & Go")),
            legal_name=str(fields.pop("legal_name", "Fuel & Go (Pty) Ltd")),
            country=str(fields.pop("country", "ZA")),
            currency=currency or program.currency,
            contacts=[],
            status=status,
            status_changed_at=datetime.now(UTC),
            parent_id=parent.id if parent else None,
            **fields,
        )
        session.add(partner)
        await session.commit()
        return partner

    return make
