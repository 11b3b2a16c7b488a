"""Who a partner's request acts for, under which contract, for which member:
everything issuing or accepting points must know before it writes, read in
one statement (the issuance is the platform's hot path).

The acting company is one of the principal's reach (``partner_ids``), in
its program: the slug it names, or the principal's own company. The
contract it acts under is its own, or its nearest ancestor's that has a
published contract (the contract holder, whose ledger accounts move). The
member is named by the program's member id, or by the identifier they
linked at the holder.

A holder that is leaving (``partners.departure_models``) issues up to the
end of its last issuing day and takes new holds up to the end of its last
accepting day: its departure is joined in the same statement by its unique
key, so the hot path pays no round trip for it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from core.errors import Forbidden, NotFound
from core.members import require_active
from core.principal import Principal, PrincipalKind
from partners.coalition_errors import ContractRoleMissing, NoContractInForce, PartnerNotActive
from partners.coalition_models import ContractRoles
from partners.departure_errors import PartnerDeparted
from partners.models import PartnerStatus
from rewards.connections import Connection

_RESOLVE = """
WITH RECURSIVE company AS (
    SELECT id, slug, name, status, parent_id FROM partners
    WHERE program_id = $1 AND id = ANY($2::uuid[])
      AND CASE WHEN $3::text IS NULL THEN id = $4::uuid ELSE slug = $3::text END
), up (id, level) AS (
    SELECT id, 1 FROM company
    UNION ALL
    SELECT p.parent_id, up.level + 1 FROM partners p JOIN up ON p.id = up.id
    WHERE p.parent_id IS NOT NULL AND p.program_id = $1 AND up.level < 64
), holder AS (
    SELECT p.id, p.slug, p.name, p.status FROM up JOIN partners p ON p.id = up.id
    WHERE p.program_id = $1 AND EXISTS (
        SELECT 1 FROM partner_contracts k WHERE k.partner_id = up.id AND k.status = 'published'
    )
    ORDER BY up.level LIMIT 1
)
SELECT pr.slug AS program_slug, pr.ledger_id, pr.currency AS program_currency,
    pr.minor_per_major, pr.issuance_account_id AS program_issuance,
    c.id AS company_id, c.slug AS company_slug, c.name AS company_name,
    c.status AS company_status,
    h.id AS holder_id, h.slug AS holder_slug, h.name AS holder_name, h.status AS holder_status,
    d.last_issuing_day, d.issuing_ends_at, d.last_accepting_day, d.accepting_ends_at,
    k.version AS contract_version, k.roles,
    m.id AS member_id, m.external_id, m.status AS member_status, m.wallet_account_id,
    m.tier_code,
    r.version AS rule_version, r.rules::text AS rules
FROM programs pr
LEFT JOIN company c ON true
LEFT JOIN holder h ON true
LEFT JOIN partner_departures d ON d.partner_id = h.id
LEFT JOIN LATERAL (
    SELECT version, roles FROM partner_contracts
    WHERE partner_id = h.id AND status = 'published' AND effective_from <= $5
    ORDER BY effective_from DESC, version DESC LIMIT 1
) k ON true
LEFT JOIN LATERAL (
    SELECT id, external_id, status, wallet_account_id, tier_code FROM members
    WHERE $6::text IS NOT NULL AND program_id = $1 AND external_id = $6::text
    UNION ALL
    SELECT mm.id, mm.external_id, mm.status, mm.wallet_account_id, mm.tier_code
    FROM partner_member_links l JOIN members mm ON mm.id = l.member_id
    WHERE $7::text IS NOT NULL AND l.partner_id = h.id AND l.identifier = $7::text
    LIMIT 1
) m ON true
LEFT JOIN LATERAL (
    SELECT version, rules FROM earn_rule_versions
    WHERE $8::boolean AND program_id = $1 AND status = 'published' AND effective_from <= $5
    ORDER BY effective_from DESC, version DESC LIMIT 1
) r ON true
WHERE pr.id = $1
"""

#: The departure's columns of the row: for the check, not the result.
_DEPARTURE = ("last_issuing_day", "issuing_ends_at", "last_accepting_day", "accepting_ends_at")


class Acting(msgspec.Struct, kw_only=True, frozen=True):
    """A partner request's parties, as found (all present: ``resolve`` refuses
    a request that lacks one)."""

    program_id: uuid.UUID
    program_slug: str
    ledger_id: int
    program_currency: str
    minor_per_major: int
    program_issuance: uuid.UUID
    company_id: uuid.UUID
    company_slug: str
    company_name: str
    holder_id: uuid.UUID
    holder_slug: str
    holder_name: str
    contract_version: int
    member_id: uuid.UUID
    external_id: str
    wallet_account_id: uuid.UUID
    tier_code: str | None
    rule_version: int | None
    #: The earn rules in force (JSON text), when asked for.
    rules: str | None


def partner_of(principal: Principal) -> tuple[uuid.UUID, uuid.UUID]:
    """The program and company of a partner principal; anyone else is refused."""
    if (
        principal.kind is not PrincipalKind.PARTNER
        or principal.program_id is None
        or principal.partner_id is None
    ):
        raise Forbidden(f"{principal.actor} does not act for a partner")
    return principal.program_id, principal.partner_id


async def resolve(
    db: asyncpg.Pool | Connection,
    principal: Principal,
    *,
    company: str | None,
    member: str | None,
    identifier: str | None,
    at: datetime,
    role: ContractRoles,
    with_rules: bool = False,
) -> Acting:
    """The request's parties, or the refusal that fits: a company outside
    the reach or a member unknown is ``NotFound`` (what another tenant's
    is); no contract in force, a role the contract lacks, a firm not
    active, a holder past its last issuing (or accepting) day, a member
    not active are conflicts."""
    program_id, own = partner_of(principal)
    row = await db.fetchrow(
        _RESOLVE,
        program_id,
        list(principal.partner_ids),
        company,
        own,
        at,
        member,
        identifier,
        with_rules,
    )
    if row is None or row["company_id"] is None:
        raise NotFound(f"no partner {company!r}" if company else "no partner")
    found: dict[str, Any] = dict(row)
    if found["holder_id"] is None:
        raise NoContractInForce(
            f"partner {found['company_slug']!r} has no published contract, nor any firm above it"
        )
    for who in ("company", "holder"):
        if found[f"{who}_status"] != PartnerStatus.ACTIVE:
            raise PartnerNotActive(f"partner {found[f'{who}_slug']!r} is {found[f'{who}_status']}")
    _refuse_departed(found, role, at)
    if found["contract_version"] is None:
        raise NoContractInForce(f"partner {found['holder_slug']!r} has no contract in force now")
    roles = ContractRoles(found["roles"])
    if not (roles.issues if role is ContractRoles.ISSUER else roles.accepts):
        raise ContractRoleMissing(
            f"the contract of {found['holder_slug']!r} (version {found['contract_version']})"
            f" is {roles.value}: it does not let the partner"
            f" {'issue' if role is ContractRoles.ISSUER else 'accept'} points"
        )
    if found["member_id"] is None:
        raise NotFound(f"no member {member!r}" if member else f"no member linked as {identifier!r}")
    # Named as the request named them: a partner that knows a member by
    # their identifier is not told the program's id for them.
    require_active(_Member(member or str(identifier), found["member_status"]))
    for name in ("company_status", "holder_status", "member_status", "roles", *_DEPARTURE):
        del found[name]
    return Acting(program_id=program_id, **found)


def _refuse_departed(found: dict[str, Any], role: ContractRoles, at: datetime) -> None:
    """Refuse an issuance past the holder's last issuing day, a hold past
    its last accepting day."""
    what, day = ("issues", "issuing") if role is ContractRoles.ISSUER else ("accepts", "accepting")
    ends_at = found[f"{day}_ends_at"]
    if ends_at is not None and at >= ends_at:
        raise PartnerDeparted(
            f"partner {found['holder_slug']!r} is leaving the coalition: it {what} points up to"
            f" the end of {found[f'last_{day}_day'].isoformat()} ({ends_at.isoformat()})"
        )


class _Member:
    def __init__(self, external_id: str, status: str) -> None:
        self.external_id = external_id
        self.status = status
