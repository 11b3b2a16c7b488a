"""What goes out under a data-sharing agreement, and the log of it.

Every path that discloses members' data (a partner's read, an export, a
webhook delivery, an overlap match) writes its lines to
``data_disclosures`` in its own transaction, with one multi-row INSERT
(``record_disclosure``): the log holds exactly what went out, never less.
A line names the member (or the record), the fields that went out, to whom,
under which agreement, by which channel and when.

A field goes out only if the agreement names it AND the member consented
to it (``consent``): the members' read joins their live consents in the
statement that reads them, and a member who consented to none of the
agreement's fields is not disclosed at all (not even as a member).
The data is the sharing partner's members: those who linked an identifier
at it (``partner_member_links``).

A webhook that carries members' data is linked to its agreement
(``data_sharing_deliveries``): revoking the agreement cancels the deliveries
still waiting, in the revocation's transaction (dead, with an attempt line
saying why), and the sender drops any whose agreement is out of force when
it would be sent (``drop_out_of_force``); none is replayed after.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import (
    DateTime,
    String,
    bindparam,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Member
from core.pagination import Page, decode_cursor, page_of
from ledger import new_id
from partners import events
from partners.data_sharing.errors import NotARecipient
from partners.data_sharing.models import (
    DataDisclosure,
    DataSharingAgreement,
    DisclosureChannel,
    data_sharing_deliveries,
)
from partners.data_sharing.schemas import DisclosureView, MemberDisclosureView, SharedMember
from partners.models import Partner
from partners.webhook_models import RETRY_DELAYS, DeliveryStatus, webhook_deliveries
from rewards.connections import session_connection

#: The webhook event type of members' data shared under an agreement.
DATA_SHARED = events.DATA_SHARED

_UUIDS = ARRAY(UUID(as_uuid=True))

# Arrays, not a row of parameters per line: one statement for any page, on
# the session's asyncpg connection (its own encoding of the arrays, in C).
_INSERT = (
    "INSERT INTO data_disclosures (id, program_id, agreement_id, from_partner_id,"
    " to_partner_id, member_id, record_ref, fields, channel, reference, disclosed_at)"
    " SELECT v.id, $1, $2, $3, $4, v.member, v.ref, v.fields::jsonb, $5, $6, $7"
    " FROM unnest($8::uuid[], $9::uuid[], $10::text[], $11::text[]) AS v(id, member, ref, fields)"
)


async def record_disclosure(
    session: AsyncSession,
    *,
    agreement: DataSharingAgreement,
    to_partner_id: uuid.UUID,
    fields: Sequence[str] | Sequence[Sequence[str]],
    channel: DisclosureChannel | str,
    now: datetime,
    member_ids: Sequence[uuid.UUID] = (),
    record_refs: Sequence[str] = (),
    reference: str | None = None,
) -> int:
    """Log what went to ``to_partner_id`` under ``agreement`` (found by
    ``agreements.agreement_in_force``), in the caller's transaction, in one
    statement: one line per member of ``member_ids`` and per record of
    ``record_refs``. ``fields`` is the one list of field names for every
    line, or one list per line (members first, then records). Answers the
    lines written."""
    subjects: list[tuple[uuid.UUID | None, str | None]] = [(m, None) for m in member_ids]
    subjects.extend((None, r) for r in record_refs)
    if not subjects:
        return 0
    if fields and not isinstance(fields[0], str):
        per_line = [sorted(f) for f in fields]
        if len(per_line) != len(subjects):
            raise ValueError("one list of fields per member or record")
    else:
        per_line = [sorted(fields)] * len(subjects)  # type: ignore[arg-type]
    encoded = [msgspec.json.encode(f).decode() for f in per_line]
    connection = await session_connection(session)
    await connection.execute(
        _INSERT,
        agreement.program_id,
        agreement.id,
        agreement.other(to_partner_id),
        to_partner_id,
        str(channel),
        reference,
        now,
        [new_id() for _ in subjects],
        [m for m, _ in subjects],
        [r for _, r in subjects],
        encoded,
    )
    return len(subjects)


# The sharing partner's members with at least one consented field of the
# agreement: their values and which of the fields they consented to.
_SHARED = text(
    "SELECT m.id, m.email, m.phone, m.tier_code, m.created_at, l.identifier, c.fields"
    " FROM partner_member_links l"
    " CROSS JOIN LATERAL (SELECT array_agg(field ORDER BY field) AS fields"
    "  FROM data_sharing_consents"
    "  WHERE member_id = l.member_id AND withdrawn_at IS NULL AND field = ANY(:fields)) c"
    # A member by its key for each link, in the links' order (OFFSET 0 keeps
    # it a nested loop: a merge join would scan the members from the first).
    " CROSS JOIN LATERAL (SELECT id, email, phone, tier_code, created_at FROM members"
    "  WHERE id = l.member_id AND status <> 'closed' OFFSET 0) m"
    " WHERE l.partner_id = :partner AND l.program_id = :program AND c.fields IS NOT NULL"
    " AND l.member_id > coalesce(CAST(:after AS uuid), '00000000-0000-0000-0000-000000000000')"
    " AND (CAST(:only AS uuid[]) IS NULL OR l.member_id = ANY(:only))"
    " ORDER BY l.member_id LIMIT :limit"
).bindparams(
    bindparam("fields", type_=ARRAY(String())),
    bindparam("after", type_=UUID(as_uuid=True)),
    bindparam("only", type_=_UUIDS),
)

_VALUES = {
    "email": "email",
    "phone": "phone",
    "tier": "tier_code",
    "member_since": "created_at",
    "partner_identifier": "identifier",
}


def _shared(row: Any) -> SharedMember:
    return SharedMember(member=row.id, **{f: getattr(row, _VALUES[f]) for f in row.fields})


def _recipient(agreement: DataSharingAgreement, to_partner_id: uuid.UUID) -> None:
    if not agreement.receives(to_partner_id):
        raise NotARecipient(
            "this agreement's direction does not share the other partner's members with you"
        )


async def shared_members(
    session: AsyncSession,
    agreement: DataSharingAgreement,
    to_partner_id: uuid.UUID,
    *,
    after: uuid.UUID | None = None,
    limit: int,
    only: Sequence[uuid.UUID] | None = None,
) -> list[SharedMember]:
    """The other partner's members as ``to_partner_id`` may see them under
    ``agreement``: the agreement's fields each member consented to. Logs
    nothing: a caller that discloses them records it."""
    _recipient(agreement, to_partner_id)
    rows = await session.execute(
        _SHARED,
        {
            "fields": list(agreement.fields),
            "partner": agreement.other(to_partner_id),
            "program": agreement.program_id,
            "after": after,
            "only": list(only) if only is not None else None,
            "limit": limit,
        },
    )
    return [_shared(row) for row in rows]


def _present(member: SharedMember) -> set[str]:
    return {f for f in _VALUES if getattr(member, f) is not None}


async def read_shared(
    session: AsyncSession,
    agreement: DataSharingAgreement,
    to_partner_id: uuid.UUID,
    now: datetime,
    *,
    cursor: str | None,
    limit: int,
    channel: DisclosureChannel = DisclosureChannel.API,
    reference: str | None = None,
    log: bool = True,
) -> Page[SharedMember]:
    """A page of the shared members, with its disclosure lines written in
    the same transaction (one INSERT). ``log=False`` is for the benchmark's
    comparison only."""
    members = await shared_members(
        session, agreement, to_partner_id, after=decode_cursor(cursor), limit=limit + 1
    )
    page = page_of(members, [m.member for m in members], limit)
    if log and page.items:
        await record_disclosure(
            session,
            agreement=agreement,
            to_partner_id=to_partner_id,
            member_ids=[m.member for m in page.items],
            fields=[sorted(_present(m)) for m in page.items],
            channel=channel,
            now=now,
            reference=reference,
        )
    return page


#: The most members one export holds.
EXPORT_MAX = 100_000


async def export_shared(
    session: AsyncSession,
    agreement: DataSharingAgreement,
    to_partner_id: uuid.UUID,
    now: datetime,
) -> tuple[str, list[SharedMember]]:
    """Every shared member (up to ``EXPORT_MAX``) with the export's id, logged
    as one export."""
    members = await shared_members(session, agreement, to_partner_id, limit=EXPORT_MAX)
    export_id = f"export_{new_id().hex}"
    if members:
        await record_disclosure(
            session,
            agreement=agreement,
            to_partner_id=to_partner_id,
            member_ids=[m.member for m in members],
            fields=[sorted(_present(m)) for m in members],
            channel=DisclosureChannel.EXPORT,
            now=now,
            reference=export_id,
        )
    return export_id, members


_ENDPOINTS = text(
    "SELECT id, program_id, partner_id FROM webhook_endpoints WHERE partner_id = :partner"
    " AND status = 'enabled' AND (event_types IS NULL OR :type = ANY(event_types))"
)


async def push_by_webhook(
    session: AsyncSession,
    agreement: DataSharingAgreement,
    to_partner_id: uuid.UUID,
    member_ids: Sequence[uuid.UUID],
    now: datetime,
) -> tuple[list[uuid.UUID], int]:
    """Send the shared fields of these members (those shared under the
    agreement) to the recipient's webhook endpoints that take
    ``partner.data_shared``: one delivery per endpoint, linked to the
    agreement, logged per delivery. Answers the deliveries and the members
    sent."""
    members = await shared_members(
        session, agreement, to_partner_id, limit=len(member_ids) or 1, only=member_ids
    )
    if not members:
        return [], 0
    endpoints = (
        await session.execute(_ENDPOINTS, {"partner": to_partner_id, "type": DATA_SHARED})
    ).all()
    from partners.webhook_deliveries import body_of

    data = {
        "agreement_id": str(agreement.id),
        "members": msgspec.to_builtins(members),
    }
    made: list[uuid.UUID] = []
    for endpoint in endpoints:
        delivery = new_id()
        await session.execute(
            insert(webhook_deliveries).values(
                id=delivery,
                program_id=endpoint.program_id,
                partner_id=endpoint.partner_id,
                endpoint_id=endpoint.id,
                event_id=new_id(),
                event_type=DATA_SHARED,
                body=body_of(DATA_SHARED, now, data),
                status=DeliveryStatus.PENDING,
                retries_left=len(RETRY_DELAYS),
                next_attempt_at=now,
            )
        )
        await session.execute(
            insert(data_sharing_deliveries).values(delivery_id=delivery, agreement_id=agreement.id)
        )
        await record_disclosure(
            session,
            agreement=agreement,
            to_partner_id=to_partner_id,
            member_ids=[m.member for m in members],
            fields=[sorted(_present(m)) for m in members],
            channel=DisclosureChannel.WEBHOOK,
            now=now,
            reference=f"msg_{delivery.hex}",
        )
        made.append(delivery)
    return made, len(members)


# Cancel the waiting deliveries of these agreements: dead, with an attempt
# line that says why; the disclosure lines of those never attempted go (the
# data never left), those of attempted ones stay (it may have arrived).
_CANCEL = text(
    "WITH cancelled AS ("
    " UPDATE webhook_deliveries d SET status = 'dead', dead_at = :now, lease = NULL,"
    " next_attempt_at = NULL"
    " FROM data_sharing_deliveries s"
    " WHERE s.delivery_id = d.id AND s.agreement_id = ANY(:agreements) AND d.status = 'pending'"
    " RETURNING d.id, d.attempts),"
    " marked AS (UPDATE data_sharing_deliveries s SET cancelled_at = :now,"
    " cancelled_reason = :reason FROM cancelled c WHERE s.delivery_id = c.id),"
    " attempt AS (INSERT INTO webhook_attempts (id, delivery_id, number, attempted_at,"
    " latency_ms, succeeded, error)"
    " SELECT gen_random_uuid(), c.id, c.attempts + 1, :now, 0, false, :error FROM cancelled c),"
    " unlogged AS (DELETE FROM data_disclosures x USING cancelled c"
    " WHERE c.attempts = 0 AND x.channel = 'webhook' AND x.agreement_id = ANY(:agreements)"
    " AND x.reference = 'msg_' || replace(c.id::text, '-', ''))"
    " SELECT count(*) FROM cancelled"
).bindparams(bindparam("agreements", type_=_UUIDS), bindparam("now", type_=DateTime(timezone=True)))


async def cancel_deliveries(
    session: AsyncSession, agreement_ids: Sequence[uuid.UUID], now: datetime, *, reason: str
) -> int:
    """Cancel every waiting webhook delivery carrying data under these
    agreements; answers how many."""
    return int(
        await session.scalar(
            _CANCEL,
            {
                "agreements": list(agreement_ids),
                "now": now,
                "reason": reason,
                "error": f"not sent: the data-sharing agreement was {reason}",
            },
        )
        or 0
    )


_OUT_OF_FORCE = text(
    "SELECT DISTINCT a.id, CASE WHEN a.status = 'active' THEN 'expired' ELSE a.status END"
    " AS reason FROM webhook_deliveries d"
    " JOIN data_sharing_deliveries s ON s.delivery_id = d.id"
    " JOIN data_sharing_agreements a ON a.id = s.agreement_id"
    " WHERE d.status = 'pending' AND (a.status <> 'active' OR a.expires_at <= :now)"
    " AND (CAST(:only AS uuid[]) IS NULL OR d.id = ANY(:only))"
).bindparams(bindparam("only", type_=_UUIDS), bindparam("now", type_=DateTime(timezone=True)))


async def drop_out_of_force(
    session: AsyncSession, now: datetime, *, only: Sequence[uuid.UUID] | None = None
) -> int:
    """Cancel the waiting deliveries (of ``only``, or all) whose agreement is
    no longer in force at ``now``: the sender calls it before it claims, so
    an agreement that expired meanwhile sends nothing more."""
    rows = (
        await session.execute(
            _OUT_OF_FORCE, {"now": now, "only": list(only) if only is not None else None}
        )
    ).all()
    dropped = 0
    for reason in {row.reason for row in rows}:
        ids = [row.id for row in rows if row.reason == reason]
        dropped += await cancel_deliveries(
            session, ids, now, reason="revoked" if reason == "revoked" else "expired"
        )
    return dropped


async def blocked_replays(
    session: AsyncSession, delivery_ids: Sequence[uuid.UUID], now: datetime
) -> set[uuid.UUID]:
    """Of these deliveries, those that carry data under an agreement no
    longer in force: they are never sent again."""
    rows = await session.scalars(
        select(data_sharing_deliveries.c.delivery_id)
        .join(
            DataSharingAgreement,
            DataSharingAgreement.id == data_sharing_deliveries.c.agreement_id,
        )
        .where(
            data_sharing_deliveries.c.delivery_id.in_(list(delivery_ids)),
            or_(DataSharingAgreement.status != "active", DataSharingAgreement.expires_at <= now),
        )
    )
    return set(rows)


async def agreement_log(
    session: AsyncSession,
    agreement: DataSharingAgreement,
    *,
    cursor: str | None,
    limit: int,
) -> Page[DisclosureView]:
    """Every disclosure under the agreement, both ways, oldest first: both
    partners see the same log."""
    query = select(DataDisclosure).where(DataDisclosure.agreement_id == agreement.id)
    if (after := decode_cursor(cursor)) is not None:
        query = query.where(DataDisclosure.id > after)
    rows = list(await session.scalars(query.order_by(DataDisclosure.id).limit(limit + 1)))
    parties = await session.execute(
        select(Partner.id, Partner.slug).where(Partner.id.in_(list(agreement.parties())))
    )
    slugs = {row.id: row.slug for row in parties}
    items = [
        DisclosureView(
            id=r.id,
            agreement_id=r.agreement_id,
            from_partner=slugs[r.from_partner_id],
            to_partner=slugs[r.to_partner_id],
            member=r.member_id,
            record_ref=r.record_ref,
            fields=list(r.fields),
            channel=r.channel,
            reference=r.reference,
            disclosed_at=r.disclosed_at,
        )
        for r in rows
    ]
    return page_of(items, [r.id for r in rows], limit)


async def member_log(
    session: AsyncSession, member: Member, *, cursor: str | None, limit: int
) -> Page[MemberDisclosureView]:
    """What was disclosed about the member, to whom and why, newest first."""
    sender = Partner.__table__.alias("sender")
    receiver = Partner.__table__.alias("receiver")
    query = (
        select(
            DataDisclosure.id,
            sender.c.name.label("from_name"),
            receiver.c.name.label("to_name"),
            DataSharingAgreement.purpose,
            DataDisclosure.fields,
            DataDisclosure.channel,
            DataDisclosure.disclosed_at,
        )
        .join(DataSharingAgreement, DataSharingAgreement.id == DataDisclosure.agreement_id)
        .join(sender, sender.c.id == DataDisclosure.from_partner_id)
        .join(receiver, receiver.c.id == DataDisclosure.to_partner_id)
        .where(DataDisclosure.member_id == member.id)
    )
    if (after := decode_cursor(cursor)) is not None:
        query = query.where(DataDisclosure.id < after)
    rows = (await session.execute(query.order_by(DataDisclosure.id.desc()).limit(limit + 1))).all()
    items = [
        MemberDisclosureView(
            id=r.id,
            from_partner=r.from_name,
            to_partner=r.to_name,
            purpose=r.purpose,
            fields=list(r.fields),
            channel=r.channel,
            disclosed_at=r.disclosed_at,
        )
        for r in rows
    ]
    return page_of(items, [r.id for r in rows], limit)


async def push_members(
    session: AsyncSession,
    agreement: DataSharingAgreement,
    owner_id: uuid.UUID,
    external_ids: Sequence[str],
    now: datetime,
) -> tuple[list[uuid.UUID], int]:
    """The owner of the data (a party) sends these members' shared fields
    to the other party's webhooks (``push_by_webhook``). Members named who
    are unknown, not linked at the owner or consented to none of the
    fields are left out, so the answer tells nothing of them."""
    to_partner_id = agreement.other(owner_id)
    _recipient(agreement, to_partner_id)
    ids = list(
        await session.scalars(
            select(Member.id).where(
                Member.program_id == agreement.program_id,
                Member.external_id.in_(sorted(set(external_ids))),
            )
        )
    )
    if not ids:
        return [], 0
    return await push_by_webhook(session, agreement, to_partner_id, ids, now)
