"""Partner OAuth clients as the program's operators manage them: created
for one company of a partner firm with its scopes and reach, its secret
shown once and kept only as an Argon2id hash, rotated with an overlap
window, revoked at once.

Revoking a client, or a firm leaving ``active``, stops its tokens at once
in every server process: the tables' triggers notify the processes
(migration 0022, ``api.partner_access``).

Every read filters by the program of the path, the principal's program and
the firm of the path: another program's or firm's client is not found.
"""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import AlreadyExists, DomainError, ErrorKind, NotFound
from core.models import Program
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal
from partners.access_models import PartnerClient
from partners.client_schemas import (
    ClientSpec,
    ClientView,
    IssuedClient,
    IssuedSecret,
    SecretRotation,
)
from partners.models import Partner, PartnerStatus
from partners.module import PARTNER_SCOPES

#: Argon2id at OWASP's first recommended setting (19 MiB, 2 passes, 1 lane):
#: a secret is 256 random bits, so the hash guards a leaked table, not a
#: guessable password; dearer settings would only slow the token endpoint.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class ClientRefused(DomainError):
    """The client cannot be made as asked: unknown scopes, or a firm that
    has left the coalition."""

    type_slug = "partner-client-refused"
    kind = ErrorKind.INVALID


class ClientRevoked(DomainError):
    """A revoked client is revoked for good: its secret cannot be rotated."""

    type_slug = "partner-client-revoked"
    kind = ErrorKind.CONFLICT


async def hash_secret(secret: str) -> str:
    # In a thread: Argon2 takes milliseconds of CPU, the event loop none.
    return await asyncio.to_thread(HASHER.hash, secret)


async def secret_matches(secret: str, encoded: str) -> bool:
    def verify() -> bool:
        try:
            return HASHER.verify(encoded, secret)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


def _new_credentials() -> tuple[str, str]:
    return f"pc_{secrets.token_hex(12)}", f"pcs_{secrets.token_urlsafe(32)}"


def _subject(program: Program, partner: Partner, client_id: str) -> str:
    # Under the firm's subject, so the program's trail holds its clients'.
    return f"program:{program.slug}:partner:{partner.slug}:client:{client_id}"


def _of(principal: Principal, program: Program, partner: Partner) -> list[ColumnElement[bool]]:
    conditions = [PartnerClient.program_id == program.id, PartnerClient.partner_id == partner.id]
    if principal.program_id is not None:
        conditions.append(PartnerClient.program_id == principal.program_id)
    return conditions


def _check_scopes(scopes: list[str]) -> list[str]:
    if unknown := sorted(set(scopes) - PARTNER_SCOPES.keys()):
        raise ClientRefused(
            f"scopes: unknown scopes {', '.join(unknown)}; a partner client's scopes are"
            f" {', '.join(sorted(PARTNER_SCOPES))}"
        )
    return sorted(set(scopes))


async def create_client(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    spec: ClientSpec,
    *,
    principal: Principal,
) -> IssuedClient:
    """A new client of the firm, audited; its secret is in the answer only.
    A name in use in the firm (a revoked client's too) is ``AlreadyExists``:
    a secret cannot be shown twice, so a repeat cannot answer the first."""
    scopes = _check_scopes(spec.scopes)
    if partner.status == PartnerStatus.OFFBOARDED:
        raise ClientRefused(f"partner {partner.slug!r} is offboarded and gets no clients")
    taken = await session.scalar(
        select(PartnerClient.id).where(
            *_of(principal, program, partner), PartnerClient.name == spec.name
        )
    )
    if taken is not None:
        raise AlreadyExists(
            f"partner {partner.slug!r} has a client named {spec.name!r} already"
            " (rotate its secret to get a new one)",
            field="name",
        )
    client_id, secret = _new_credentials()
    client = PartnerClient(
        program_id=program.id,
        partner_id=partner.id,
        client_id=client_id,
        name=spec.name,
        scopes=scopes,
        reach=spec.reach,
        secret_hash=await hash_secret(secret),
        created_by=principal.actor,
    )
    session.add(client)
    await session.flush()
    await audit.record(
        session,
        principal,
        "partner-client.create",
        _subject(program, partner, client_id),
        {"name": spec.name, "scopes": scopes, "reach": spec.reach},
    )
    return IssuedClient(
        client_id=client_id,
        client_secret=secret,
        name=spec.name,
        scopes=scopes,
        reach=spec.reach,
        created_at=client.created_at,
    )


async def list_clients(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None = None,
) -> Page[ClientView]:
    """The firm's clients, revoked ones too, newest first."""
    after = decode_cursor(cursor)
    query = (
        select(PartnerClient)
        .where(*_of(principal, program, partner))
        .order_by(PartnerClient.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(PartnerClient.id < after)
    clients = list(await session.scalars(query))
    return page_of([ClientView.of(c) for c in clients], [c.id for c in clients], limit)


async def _locked(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    client_id: str,
    principal: Principal,
) -> PartnerClient:
    client = await session.scalar(
        select(PartnerClient)
        .where(*_of(principal, program, partner), PartnerClient.client_id == client_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if client is None:
        raise NotFound(f"no client {client_id!r}")
    return client


async def rotate_secret(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    client_id: str,
    rotation: SecretRotation,
    *,
    principal: Principal,
    now: datetime | None = None,
) -> IssuedSecret:
    """A new secret for the client; the current one keeps working for
    ``overlap_seconds`` (the one before it, if still in an overlap, stops
    now: two secrets at most). Tokens already issued keep working until
    they expire. Audited."""
    now = now or datetime.now(UTC)
    client = await _locked(session, program, partner, client_id, principal)
    if client.revoked_at is not None:
        raise ClientRevoked(f"client {client_id!r} is revoked; create another")
    _, secret = _new_credentials()
    overlap = timedelta(seconds=rotation.overlap_seconds)
    previous_until = now + overlap if overlap else None
    client.previous_secret_hash = client.secret_hash if previous_until else None
    client.previous_valid_until = previous_until
    client.secret_hash = await hash_secret(secret)
    client.secret_rotated_at = now
    await session.flush()
    details: dict[str, Any] = {"previous_valid_until": previous_until}
    await audit.record(
        session,
        principal,
        "partner-client.rotate-secret",
        _subject(program, partner, client_id),
        details,
    )
    return IssuedSecret(
        client_id=client_id,
        client_secret=secret,
        rotated_at=now,
        previous_valid_until=previous_until,
    )


async def revoke_client(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    client_id: str,
    *,
    principal: Principal,
    now: datetime | None = None,
) -> None:
    """Revoke the client for good: no token from now on, and its live tokens
    refused at once. A revoked client again: nothing changes. Audited."""
    client = await _locked(session, program, partner, client_id, principal)
    if client.revoked_at is not None:
        return
    client.revoked_at = now or datetime.now(UTC)
    await session.flush()
    await audit.record(
        session, principal, "partner-client.revoke", _subject(program, partner, client_id)
    )
