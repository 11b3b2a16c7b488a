"""What a partner client may do now: its authentication at the token
endpoint (client credentials) and, behind every partner token, whether it
still may act and which companies it reaches.

These are the doors that make a partner principal, so they take none:
the client proves who it is with its secret, and a token with the
platform's signature.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import msgspec
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import DomainError, ErrorKind
from core.principal import Principal, PrincipalKind, Reach
from partners.access_models import PartnerClient
from partners.access_tokens import TokenClaims
from partners.clients import secret_matches
from partners.firms import companies_of
from partners.models import Partner, PartnerStatus


class InvalidClient(DomainError):
    """No such client, a wrong or expired secret, or a revoked client: one
    answer for all, so that it tells nothing of which."""

    type_slug = "invalid-client"
    kind = ErrorKind.FORBIDDEN


class ClientNotAuthorized(DomainError):
    """The client proved who it is, but its firm is not active (invited,
    suspended or offboarded): it gets no token."""

    type_slug = "unauthorized-client"
    kind = ErrorKind.FORBIDDEN


class ClientGrant(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated client, what a token for it carries."""

    client_id: str
    program_id: uuid.UUID
    partner_id: uuid.UUID
    reach: Reach
    scopes: frozenset[str]


class ClientAccess(msgspec.Struct, frozen=True, kw_only=True):
    """What the tokens of a client that may act reach now."""

    client_id: str
    program_id: uuid.UUID
    partner_id: uuid.UUID
    scopes: frozenset[str]
    #: The companies of its reach (``partners.firms.companies_of``).
    partner_ids: frozenset[uuid.UUID]


async def authenticate_client(
    session: AsyncSession, client_id: str, secret: str, *, now: datetime | None = None
) -> ClientGrant:
    """The client whose current secret (or, during a rotation's overlap, the
    previous one) is ``secret``; ``InvalidClient`` otherwise. A client of a
    firm that is not active is ``ClientNotAuthorized``, said only to one
    that knows the secret."""
    now = now or datetime.now(UTC)
    row = (
        await session.execute(
            select(PartnerClient, Partner.status)
            .join(Partner, Partner.id == PartnerClient.partner_id)
            .where(PartnerClient.client_id == client_id)
        )
    ).first()
    if row is None or row[0].revoked_at is not None:
        raise InvalidClient("the client is unknown, revoked, or its secret is wrong")
    client, status = row
    matches = await secret_matches(secret, client.secret_hash)
    in_overlap = client.previous_valid_until is not None and client.previous_valid_until > now
    if not matches and in_overlap and client.previous_secret_hash:
        matches = await secret_matches(secret, client.previous_secret_hash)
    if not matches:
        raise InvalidClient("the client is unknown, revoked, or its secret is wrong")
    if status != PartnerStatus.ACTIVE:
        raise ClientNotAuthorized(f"the client's partner is {status}: it gets no tokens")
    return ClientGrant(
        client_id=client.client_id,
        program_id=client.program_id,
        partner_id=client.partner_id,
        reach=Reach(client.reach),
        scopes=frozenset(client.scopes),
    )


async def client_access(session: AsyncSession, client_id: str) -> ClientAccess | None:
    """The client's access now, or None: revoked, gone, or its firm not active."""
    client = await session.scalar(
        select(PartnerClient)
        .join(Partner, Partner.id == PartnerClient.partner_id)
        .where(
            PartnerClient.client_id == client_id,
            PartnerClient.revoked_at.is_(None),
            Partner.status == PartnerStatus.ACTIVE,
        )
    )
    if client is None:
        return None
    return ClientAccess(
        client_id=client.client_id,
        program_id=client.program_id,
        partner_id=client.partner_id,
        scopes=frozenset(client.scopes),
        partner_ids=await companies_of(session, client.partner_id, Reach(client.reach)),
    )


def partner_principal(claims: TokenClaims, access: ClientAccess) -> Principal | None:
    """The principal of a verified token whose client may act, or None if
    the token does not match its client's records (which only a forged
    token can do). Scopes are the token's, within the client's."""
    if (claims.program_id, claims.partner_id) != (access.program_id, access.partner_id):
        return None
    return Principal(
        kind=PrincipalKind.PARTNER,
        actor=f"partner:{claims.client_id}",
        scopes=claims.scopes & access.scopes,
        program_id=access.program_id,
        partner_id=access.partner_id,
        partner_ids=access.partner_ids,
    )
