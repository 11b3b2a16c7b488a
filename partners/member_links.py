"""A member's identifiers at partners (a fuel chain's card number), which
partners may issue points to and take points from instead of the
program's member id.

The member links them (the member API, ``/me/partner-links``): a partner
cannot attach an identifier to a member, so a partner that knows a card
number learns nothing of the member behind it, and a member's points go
where the member said. A link is the contract holder's (a group's card
works at all its stores): linking at a store links at the firm whose
contract it acts under. One identifier per member and holder; a new one
replaces the old. The identifier itself stays out of the audit trail
(it is the member's personal data).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import AlreadyExists, NotFound
from core.members import lock_member
from core.models import Member, Program
from core.principal import Principal, PrincipalKind
from ledger.bounds import ExternalId
from partners.coalition_errors import NoContractInForce
from partners.coalition_models import PartnerMemberLink
from partners.contracts import contract_holder
from partners.models import Partner, PartnerStatus


class LinkRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    identifier: Annotated[
        ExternalId,
        msgspec.Meta(description="The member's identifier at the partner (e.g. its card number)."),
    ]


class LinkView(msgspec.Struct, kw_only=True, frozen=True):
    partner: Annotated[
        str, msgspec.Meta(description="The partner the link is with (the contract holder).")
    ]
    partner_name: Annotated[str, msgspec.Meta(description="That partner's name.")]
    identifier: Annotated[
        str, msgspec.Meta(description="The member's identifier at the partner (e.g. its card).")
    ]
    linked_at: Annotated[
        datetime, msgspec.Meta(description="When the link was made or its identifier last changed.")
    ]


async def _holder(session: AsyncSession, program: Program, slug: str) -> Partner:
    partner = await session.scalar(
        select(Partner).where(
            Partner.program_id == program.id,
            Partner.slug == slug,
            Partner.status != PartnerStatus.OFFBOARDED,
        )
    )
    if partner is None:
        raise NotFound(f"no partner {slug!r}")
    holder_id = await contract_holder(session, program, partner.id)
    if holder_id is None:
        raise NoContractInForce(f"partner {slug!r} has no contract: it issues no points")
    return partner if holder_id == partner.id else await session.get_one(Partner, holder_id)


def _subject(program: Program, member: Member, holder: Partner) -> str:
    return f"program:{program.slug}:member:{member.external_id}:partner-link:{holder.slug}"


async def link_member(
    session: AsyncSession,
    program: Program,
    member: Member,
    partner_slug: str,
    request: LinkRequest,
    *,
    principal: Principal,
) -> tuple[LinkView, bool]:
    """Link (or re-link) the member's identifier at the partner, audited;
    and whether anything changed. The same link again changes nothing."""
    holder = await _holder(session, program, partner_slug)
    await lock_member(session, member.id)
    link = await session.scalar(
        select(PartnerMemberLink).where(
            PartnerMemberLink.member_id == member.id, PartnerMemberLink.partner_id == holder.id
        )
    )
    if link is not None and link.identifier == request.identifier:
        return _view(link, holder), False
    taken = await session.scalar(
        select(PartnerMemberLink.id).where(
            PartnerMemberLink.partner_id == holder.id,
            PartnerMemberLink.identifier == request.identifier,
        )
    )
    if taken is not None:
        raise AlreadyExists(
            "another member linked this identifier at this partner", field="identifier"
        )
    if link is None:
        link = PartnerMemberLink(
            program_id=program.id,
            partner_id=holder.id,
            member_id=member.id,
            identifier=request.identifier,
        )
        session.add(link)
    else:
        link.identifier = request.identifier
    await session.flush()
    await audit.record(session, principal, "member.partner-link", _subject(program, member, holder))
    return _view(link, holder), True


async def list_links(
    session: AsyncSession, member: Member, *, principal: Principal
) -> list[LinkView]:
    """The member's links, of the principal's program only (and for a
    partner principal, at the firms within its reach only)."""
    query = (
        select(PartnerMemberLink, Partner)
        .join(Partner, Partner.id == PartnerMemberLink.partner_id)
        .where(PartnerMemberLink.member_id == member.id)
    )
    if principal.program_id is not None:
        query = query.where(PartnerMemberLink.program_id == principal.program_id)
    if principal.kind is PrincipalKind.PARTNER:
        query = query.where(PartnerMemberLink.partner_id.in_(principal.partner_ids))
    rows = await session.execute(query.order_by(Partner.slug))
    return [_view(link, partner) for link, partner in rows]


async def unlink_member(
    session: AsyncSession,
    program: Program,
    member: Member,
    partner_slug: str,
    *,
    principal: Principal,
) -> None:
    """Remove the member's link at the partner, audited; ``NotFound`` if none."""
    holder = await _holder(session, program, partner_slug)
    await lock_member(session, member.id)
    removed = await session.execute(
        delete(PartnerMemberLink)
        .where(PartnerMemberLink.member_id == member.id, PartnerMemberLink.partner_id == holder.id)
        .returning(PartnerMemberLink.id)
    )
    if removed.first() is None:
        raise NotFound(f"no link with partner {partner_slug!r}")
    await audit.record(
        session, principal, "member.partner-unlink", _subject(program, member, holder)
    )


def _view(link: PartnerMemberLink, holder: Partner) -> LinkView:
    return LinkView(
        partner=holder.slug,
        partner_name=holder.name,
        identifier=link.identifier,
        linked_at=link.updated_at,
    )
