"""Tenancy where partner data is read: a partner's contract versions, its
payouts and a member's partner links are found by a principal of their
program (and, for a partner principal, of a firm within its reach) only;
any other principal gets what a missing object gets."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from core import principal as principals
from core.errors import NotFound
from core.models import Program
from core.principal import ALL_SCOPES, Principal, PrincipalKind
from ledger import Ledger
from partners.contracts import draft_contract, get_contract, list_contracts, publish_contract
from partners.member_links import LinkRequest, link_member, list_links
from partners.payouts import list_payouts
from partners.statement_models import PartnerPayout
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import OPERATOR, contract, enrolled, partner_principal, terms
from tests.partners.conftest import NewPartner


def operator_of(program: Program) -> Principal:
    """An operator key bound to ``program`` (every scope in it)."""
    return Principal(
        kind=PrincipalKind.OPERATOR,
        actor=f"key:{program.slug}",
        scopes=frozenset({ALL_SCOPES}),
        program_id=program.id,
    )


async def test_a_contract_is_read_in_its_program_only(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program, elsewhere = await new_program(), await new_program()
    partner, neighbour = await new_partner(program), await new_partner(program)
    view, _ = await draft_contract(session, program, partner, terms(), principal=OPERATOR)
    await session.commit()

    for sees in (OPERATOR, operator_of(program), partner_principal(partner)):
        stored = await get_contract(session, partner, view.version, principal=sees)
        assert stored.version == view.version
        page = await list_contracts(session, partner, principal=sees, limit=10, cursor=None)
        assert [v.version for v in page.items] == [view.version]
    for stranger in (operator_of(elsewhere), partner_principal(neighbour)):
        with pytest.raises(NotFound):
            await get_contract(session, partner, view.version, principal=stranger)
        page = await list_contracts(session, partner, principal=stranger, limit=10, cursor=None)
        assert page.items == [] and page.next_cursor is None
    # Nor may it publish the version (found first, before anything is written).
    now = datetime.now(UTC)
    with pytest.raises(NotFound):
        await publish_contract(
            session,
            ledger,
            program,
            partner,
            view.version,
            now,
            now,
            principal=operator_of(elsewhere),
        )
    await session.rollback()
    await session.refresh(partner)
    stored = await get_contract(session, partner, view.version, principal=OPERATOR)
    assert stored.status == "draft"


async def test_payouts_are_read_in_their_program_only(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program, elsewhere = await new_program(), await new_program()
    partner, neighbour = await new_partner(program), await new_partner(program)
    # Rows as ``record_payout`` writes them (its money ledger has tests of its own).
    paid_at = datetime.now(UTC)
    for n in range(2):
        session.add(
            PartnerPayout(
                program_id=program.id,
                partner_id=partner.id,
                reference=f"eft-{n}",
                amount_minor=100 + n,
                currency=partner.currency,
                paid_at=paid_at + timedelta(seconds=n),
                transfer_id=uuid.uuid4(),
            )
        )
    await session.commit()

    for sees in (OPERATOR, operator_of(program), partner_principal(partner)):
        page = await list_payouts(session, partner, principal=sees, limit=1, cursor=None)
        rest = await list_payouts(
            session, partner, principal=sees, limit=1, cursor=page.next_cursor
        )
        assert [p.reference for p in (*page.items, *rest.items)] == ["eft-1", "eft-0"]
    for stranger in (operator_of(elsewhere), partner_principal(neighbour)):
        page = await list_payouts(session, partner, principal=stranger, limit=10, cursor=None)
        assert page.items == [] and page.next_cursor is None


async def test_a_members_partner_links_are_read_in_its_program_only(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program, elsewhere = await new_program(), await new_program()
    partner, neighbour = await new_partner(program), await new_partner(program)
    await contract(session, ledger, program, partner)
    ann = await enrolled(session, ledger, program, "ann")
    herself = principals.member(program.id, "ann")
    await link_member(
        session, program, ann, partner.slug, LinkRequest(identifier="CARD-1"), principal=herself
    )
    await session.commit()

    for sees in (herself, operator_of(program), partner_principal(partner)):
        assert [link.identifier for link in await list_links(session, ann, principal=sees)] == [
            "CARD-1"
        ]
    for stranger in (
        principals.member(elsewhere.id, "ann"),
        operator_of(elsewhere),
        partner_principal(neighbour),
    ):
        assert await list_links(session, ann, principal=stranger) == []
