"""Who is acting: the principal every use case and every tenant-bound query
receives, whatever door the request came through (HTTP, a Stripe webhook,
the CLI, a worker job).

Tenancy is enforced where data is read: a query for a principal bound to a
program or a partner filters by that tenant, so an object of another tenant
is simply not found.
"""

from __future__ import annotations

import enum
import uuid

import msgspec

from core.errors import Forbidden

#: The scope that grants every other (the operator's admin token).
ALL_SCOPES = "*"


class PrincipalKind(enum.StrEnum):
    OPERATOR = "operator"
    PARTNER = "partner"
    MEMBER = "member"
    SYSTEM = "system"


class Reach(enum.StrEnum):
    """How far a partner credential reaches in its firm's hierarchy (a
    franchise group and its member companies)."""

    #: The one company the credential was issued for.
    COMPANY = "company"
    #: That company and every company below it.
    SUBSIDIARIES = "subsidiaries"
    #: The whole group: every company under the same top-level firm.
    GROUP = "group"


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """``actor`` is how the audit trail names it (``admin``, ``key:<name>``,
    ``member:<external id>``, ``partner:<client id>``, ``system:<job>``)."""

    kind: PrincipalKind
    actor: str
    scopes: frozenset[str] = frozenset()
    #: The one program this principal may act in; None: every program (an
    #: operator key of the whole platform, a system job).
    program_id: uuid.UUID | None = None
    #: The partner firm this principal acts for, if any.
    partner_id: uuid.UUID | None = None
    #: The partner firms whose data it may read and change: ``partner_id``
    #: and, by its reach, companies of its group. Empty for a principal that
    #: acts for no partner (an operator sees every partner of its program).
    partner_ids: frozenset[uuid.UUID] = frozenset()

    def allows(self, scope: str) -> bool:
        return ALL_SCOPES in self.scopes or scope in self.scopes

    def require(self, scope: str) -> None:
        if not self.allows(scope):
            raise Forbidden(f"{self.actor} lacks the scope {scope!r}")

    def sees_program(self, program_id: uuid.UUID) -> bool:
        return self.program_id is None or self.program_id == program_id

    def sees_partner(self, partner_id: uuid.UUID) -> bool:
        """Whether a partner's data is this principal's to see: any partner
        for one that acts for none (an operator; queries still filter by
        its program), else those of its reach only."""
        if self.kind is not PrincipalKind.PARTNER:
            return True
        return partner_id in self.partner_ids


def member(program_id: uuid.UUID, external_id: str) -> Principal:
    """A member acting on their own data, in their program only (a member
    token's ``sub`` and ``program``)."""
    return Principal(
        kind=PrincipalKind.MEMBER, actor=f"member:{external_id}", program_id=program_id
    )


def system(job: str) -> Principal:
    """A scheduled or on-demand job of the platform itself."""
    return Principal(
        kind=PrincipalKind.SYSTEM, actor=f"system:{job}", scopes=frozenset({ALL_SCOPES})
    )
