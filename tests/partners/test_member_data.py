"""A member's identifiers at partners are part of their data: exported with
it, and removed when the member is erased (``partners.member_data``,
handed to ``rewards.privacy`` by the API as ``api.modules.MEMBER_DATA``)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.modules import MEMBER_DATA
from ledger import Ledger
from partners.coalition_models import PartnerMemberLink
from partners.member_links import LinkRequest, link_member
from rewards.privacy import erase_member, export_member
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import OPERATOR, contract, enrolled
from tests.partners.conftest import NewPartner


async def test_links_are_exported_and_erased_with_the_member(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner = await new_partner(program)
    member = await enrolled(session, ledger, program)
    await contract(session, ledger, program, partner)
    await link_member(
        session, program, member, partner.slug, LinkRequest(identifier="CARD-7"), principal=OPERATOR
    )
    await session.commit()

    export = await export_member(
        session, ledger, program, member, datetime.now(UTC), principal=OPERATOR, others=MEMBER_DATA
    )
    [link] = export.modules["partners"]["links"]
    assert (link["partner"], link["identifier"]) == (partner.slug, "CARD-7")

    await erase_member(session, program, member, principal=OPERATOR, others=MEMBER_DATA)
    await session.commit()
    links = select(func.count()).where(PartnerMemberLink.member_id == member.id)
    assert await session.scalar(links) == 0
    # Erasing again finds nothing more to do.
    await erase_member(session, program, member, principal=OPERATOR, others=MEMBER_DATA)
    assert await session.scalar(links) == 0
