"""Unshared lead registrations of concurrent partner requests, written a
batch at a time on a raw connection (the partner API's hot path; the
one-at-a-time form, and every other case, is ``registration.register_lead``).

A batch is one transaction of four statements whatever its size: the
advisory locks of every company it names (sorted, so two batches never
wait on each other in a cycle, and in the order ``register_lead`` takes a
lead's own two), what each registration depends on (an earlier one of its
reference, an active holder of its company, the program's latest scoring
and routing versions), then the rows and their audit lines in one insert.
Two registrations of one company in a batch are one after the other: the
second is the conflict, as it would be in two requests.

A registration the batch does not write answers ``NeedsSession``: a replay
of its reference (whose answer depends on the first one's fields), or a
partner that is not active (the replay comes first there too); the caller
then writes it through ``register_lead``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
from sqlalchemy import inspect as sa_inspect

from core.errors import DomainError, NotFound
from core.principal import Principal
from ledger import new_id
from partners.acting import partner_of
from partners.leads.errors import RegistrationConflict
from partners.leads.models import ACTIVE_STATUSES, Lead
from partners.leads.registration import (
    check_registration,
    company_locks,
    domain_key,
    name_key,
    new_lead,
    view_of,
)
from partners.leads.schemas import LeadRegistration, LeadView, RoutingConfiguration
from partners.models import PartnerStatus


class NeedsSession(Exception):
    """A registration for ``register_lead`` to write, not the batch."""


@dataclass(frozen=True, kw_only=True)
class PreparedLead:
    principal: Principal
    program_id: uuid.UUID
    program_slug: str
    partner_id: uuid.UUID
    partner_slug: str
    request: LeadRegistration
    now: datetime
    domain: str
    name: str


_FIRM = (
    "SELECT g.slug AS program_slug, p.slug AS partner_slug, p.status"
    " FROM programs g JOIN partners p ON p.program_id = g.id"
    " WHERE g.id = $1 AND p.id = $2"
)


async def prepare_lead(
    db: asyncpg.Pool | asyncpg.Connection,
    request: LeadRegistration,
    now: datetime,
    *,
    principal: Principal,
) -> PreparedLead:
    """The registration checked and its parties read (reads only)."""
    principal.require("leads:share")
    check_registration(request)
    if request.shared:
        raise NeedsSession("a shared lead is routed and offered in the registration's session")
    program_id, partner_id = partner_of(principal)
    firm = await db.fetchrow(_FIRM, program_id, partner_id)
    if firm is None:
        raise NotFound("no partner")
    if firm["status"] != PartnerStatus.ACTIVE:
        raise NeedsSession("a partner not active: register_lead answers it")
    return PreparedLead(
        principal=principal,
        program_id=program_id,
        program_slug=firm["program_slug"],
        partner_id=partner_id,
        partner_slug=firm["partner_slug"],
        request=request,
        now=now,
        domain=domain_key(request.company.domain),
        name=name_key(request.company.name),
    )


_LOCK = """
SELECT count(pg_advisory_xact_lock(k.class, hashtext(k.key)))
FROM (SELECT u.class, u.key FROM unnest($1::int[], $2::text[]) AS u(class, key)
      GROUP BY u.class, u.key ORDER BY u.class, hashtext(u.key), u.key) k
"""

_FACTS = """
SELECT u.i,
    (SELECT l.id FROM leads l WHERE l.partner_id = u.partner AND l.reference = u.reference)
        AS earlier,
    EXISTS (SELECT 1 FROM leads l
            WHERE l.program_id = u.program AND (l.domain_key = u.domain OR l.name_key = u.name)
              AND l.status = ANY($8::text[]) AND l.exclusive_until > u.now) AS held,
    s.version AS scoring_version, s.criteria::text AS scoring, r.config::text AS routing
FROM unnest($1::int[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[],
            $7::timestamptz[]) AS u(i, partner, reference, program, domain, name, now)
LEFT JOIN LATERAL (SELECT v.version, v.criteria FROM lead_scoring_versions v
                   WHERE v.program_id = u.program ORDER BY v.version DESC LIMIT 1) s ON true
LEFT JOIN LATERAL (SELECT v.config FROM lead_routing_versions v
                   WHERE v.program_id = u.program ORDER BY v.version DESC LIMIT 1) r ON true
ORDER BY u.i
"""

_WRITE = """
WITH made AS (
    INSERT INTO leads SELECT * FROM jsonb_populate_recordset(NULL::leads, $1::text::jsonb)
    RETURNING id
), audited AS (
    INSERT INTO audit_events (id, actor, action, subject, details)
    SELECT a.id, a.actor, a.action, a.subject, a.details
    FROM jsonb_to_recordset($2::text::jsonb)
         AS a(id uuid, actor text, action text, subject text, details jsonb)
)
SELECT count(*) FROM made
"""

Answer = LeadView | DomainError | NeedsSession


def _row_of(lead: Lead) -> dict[str, Any]:
    """The lead's row by column name (its unset columns left to NULL)."""
    row = {}
    for attribute in sa_inspect(Lead).column_attrs:
        value = getattr(lead, attribute.key, None)
        if value is not None:
            row[attribute.columns[0].name] = value
    return row


async def record_leads(
    connection: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
    batch: Sequence[PreparedLead],
) -> list[Answer]:
    """Write the batch's registrations in the connection's transaction; each
    answer is its registration's view or its refusal."""
    keys = [
        lock for lead in batch for lock in company_locks(lead.program_id, lead.domain, lead.name)
    ]
    await connection.fetchval(_LOCK, [c for c, _ in keys], [k for _, k in keys])
    facts = await connection.fetch(
        _FACTS,
        list(range(len(batch))),
        [lead.partner_id for lead in batch],
        [lead.request.reference for lead in batch],
        [lead.program_id for lead in batch],
        [lead.domain for lead in batch],
        [lead.name for lead in batch],
        [lead.now for lead in batch],
        list(ACTIVE_STATUSES),
    )
    answers: list[Answer] = []
    rows: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    taken: set[tuple[uuid.UUID, str]] = set()
    references: set[tuple[uuid.UUID, str]] = set()
    for prepared, fact in zip(batch, facts, strict=True):
        request = prepared.request
        reference = (prepared.partner_id, request.reference)
        if fact["earlier"] is not None or reference in references:
            answers.append(NeedsSession("a replay of an earlier registration"))
            continue
        companies = {(prepared.program_id, "d:" + prepared.domain)}
        companies.add((prepared.program_id, "n:" + prepared.name))
        if fact["held"] or companies & taken:
            answers.append(RegistrationConflict())
            continue
        taken |= companies
        references.add(reference)
        routing = fact["routing"]
        lead = new_lead(
            prepared.program_id,
            prepared.partner_id,
            request,
            prepared.now,
            scoring_version=fact["scoring_version"],
            scoring=msgspec.json.decode(fact["scoring"]) if fact["scoring"] else None,
            config=(msgspec.json.decode(routing, type=RoutingConfiguration) if routing else None),
            keys=(prepared.domain, prepared.name),
        )
        lead.created_at = lead.updated_at = prepared.now
        rows.append(_row_of(lead))
        lines.append(
            {
                "id": new_id(),
                "actor": prepared.principal.actor,
                "action": "leads.registered",
                "subject": f"program:{prepared.program_slug}:partner:{prepared.partner_slug}"
                f":lead:{request.reference}",
                "details": {"lead": str(lead.id), "shared": False, "score": lead.score},
            }
        )
        answers.append(view_of(lead))
    if rows:
        await connection.fetchval(
            _WRITE, msgspec.json.encode(rows).decode(), msgspec.json.encode(lines).decode()
        )
    return answers
