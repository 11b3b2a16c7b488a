"""Partner firms as the program's operators manage them: their profile,
their place in a group (member companies), their status and its history.

Every read filters by the principal's program and, for a partner principal,
by the partner firms of its reach: a firm outside them is not found, with
the very answer a missing one gets.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from msgspec import UNSET
from sqlalchemy import ColumnElement, Select, and_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from core import audit
from core.errors import AlreadyExists, DomainError, ErrorKind, NotFound
from core.models import Program
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal, PrincipalKind, Reach
from partners.firm_schemas import (
    PartnerChange,
    PartnerSpec,
    PartnerView,
    StatusChangeView,
    StatusMove,
    stored_contacts,
)
from partners.hierarchy import (
    PartnerHierarchyRefused,
    ancestors,
    check_depth,
    descendants,
    lock_hierarchy,
)
from partners.models import STATUS_MOVES, Partner, PartnerStatus, PartnerStatusChange


class StatusMoveRefused(DomainError):
    """The firm's status cannot move there from where it is (STATUS_MOVES)."""

    type_slug = "partner-status-move-refused"
    kind = ErrorKind.CONFLICT


def tenant_of(
    principal: Principal, program: Program, partner: Any = Partner
) -> list[ColumnElement[bool]]:
    """The conditions on ``partner`` (the ``Partner`` entity or an alias of
    it) for the firms of ``program`` that ``principal`` may see: every one
    for an operator of the program (or of the platform), those of its reach
    for a partner."""
    conditions: list[ColumnElement[bool]] = [partner.program_id == program.id]
    if principal.program_id is not None:
        conditions.append(partner.program_id == principal.program_id)
    if principal.kind is PrincipalKind.PARTNER:
        conditions.append(partner.id.in_(principal.partner_ids))
    return conditions


def readable_partners(principal: Principal, program: Program) -> Select[Partner]:
    return select(Partner).where(*tenant_of(principal, program))


async def get_partner(
    session: AsyncSession, principal: Principal, program: Program, slug: str
) -> Partner:
    """The firm of ``program`` with this slug, within ``principal``'s reach."""
    partner = await session.scalar(
        readable_partners(principal, program).where(Partner.slug == slug)
    )
    if partner is None:
        raise NotFound(f"no partner {slug!r}")
    return partner


async def partner_view(
    session: AsyncSession, program: Program, partner: Partner, *, principal: Principal
) -> PartnerView:
    """The firm as the API shows it: its parent by slug (one the principal
    may see; else none is shown)."""
    parent = None
    if partner.parent_id is not None:
        parent = await session.scalar(
            select(Partner.slug).where(
                Partner.id == partner.parent_id, *tenant_of(principal, program)
            )
        )
    return PartnerView.of(partner, parent)


def _subject(program: Program, slug: str) -> str:
    # Under the program's subject: the program's trail holds its partners'.
    return f"program:{program.slug}:partner:{slug}"


async def create_partner(
    session: AsyncSession, program: Program, spec: PartnerSpec, *, principal: Principal
) -> tuple[PartnerView, bool]:
    """Create a partner firm, audited, with its first status in its history;
    and whether it is new. Idempotent by slug: the same spec again answers
    the firm as it is and writes nothing; another spec under its slug is
    refused (``AlreadyExists`` naming ``slug``), whatever differs."""
    await lock_hierarchy(session, program)
    fields: dict[str, Any] = {
        "name": spec.name,
        "legal_name": spec.legal_name,
        "country": spec.country,
        "currency": spec.currency or program.currency,
        "contacts": stored_contacts(spec.contacts),
        "tier": spec.tier,
        "status": spec.status,
    }
    existing = await session.scalar(
        readable_partners(principal, program).where(Partner.slug == spec.slug)
    )
    if existing is not None:
        view = await partner_view(session, program, existing, principal=principal)
        different = [name for name, value in fields.items() if getattr(existing, name) != value]
        if view.parent != spec.parent:
            different.append("parent")
        if different:
            raise AlreadyExists(
                f"partner {spec.slug!r} exists with other {', '.join(different)}", field="slug"
            )
        return view, False
    parent = None
    if spec.parent is not None:
        parent = await _parent(session, program, spec.parent, principal=principal)
        await check_depth(session, parent, height=1)
    now = datetime.now(UTC)
    partner = Partner(
        program_id=program.id,
        slug=spec.slug,
        status_changed_at=now,
        parent_id=parent.id if parent else None,
        **fields,
    )
    session.add(partner)
    await session.flush()
    session.add(
        PartnerStatusChange(
            partner_id=partner.id,
            from_status=None,
            to_status=spec.status,
            reason="created",
            actor=principal.actor,
            at=now,
        )
    )
    await session.flush()
    await audit.record(session, principal, "partner.create", _subject(program, spec.slug), spec)
    return PartnerView.of(partner, spec.parent), True


async def update_partner(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    change: PartnerChange,
    *,
    principal: Principal,
) -> PartnerView:
    """Set the profile fields ``change`` gives, keep the others, and answer
    the firm; audited with each changed field before and after (a change
    that changes nothing writes no line). A new parent must be a firm of
    the program, not offboarded, neither this firm nor one below it, and
    keep the group within ``DEPTH_MAX`` levels."""
    if change.parent is not UNSET:
        # Before the row (the order every hierarchy change takes them in).
        await lock_hierarchy(session, program)
    locked = await _lock(session, program, partner, principal=principal)
    wanted: dict[str, Any] = {
        name: getattr(change, name)
        for name in ("name", "legal_name", "country", "currency", "tier")
        if getattr(change, name) is not UNSET
    }
    if change.contacts is not UNSET:
        wanted["contacts"] = stored_contacts(change.contacts)
    changed: dict[str, dict[str, Any]] = {
        name: {"from": getattr(locked, name), "to": value}
        for name, value in wanted.items()
        if getattr(locked, name) != value
    }
    if change.parent is not UNSET:
        before = await partner_view(session, program, locked, principal=principal)
        if before.parent != change.parent:
            parent_id = await _new_parent(session, program, locked, change.parent, principal)
            changed["parent"] = {"from": before.parent, "to": change.parent}
            locked.parent_id = parent_id
    if changed:
        for name, values in changed.items():
            if name != "parent":
                setattr(locked, name, values["to"])
        await session.flush()
        await audit.record(
            session, principal, "partner.update", _subject(program, locked.slug), changed
        )
    return await partner_view(session, program, locked, principal=principal)


async def change_status(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    move: StatusMove,
    *,
    principal: Principal,
) -> tuple[StatusChangeView, bool]:
    """Move the firm's status (``STATUS_MOVES``), recording the move in its
    history and the audit trail together; and whether it moved. A move to
    the status the firm has already changes nothing and answers the move
    that took it there (a retried request converges). A firm is offboarded
    only once its member companies are."""
    if move.status is PartnerStatus.OFFBOARDED:
        # So that no member company is created or moved under it meanwhile.
        await lock_hierarchy(session, program)
    locked = await _lock(session, program, partner, principal=principal)
    current = PartnerStatus(locked.status)
    if move.status is current:
        last = await session.scalar(
            select(PartnerStatusChange)
            .where(PartnerStatusChange.partner_id == locked.id)
            .order_by(PartnerStatusChange.at.desc(), PartnerStatusChange.id.desc())
            .limit(1)
        )
        if last is None:
            # A firm written without its creation (by hand, or a test's row):
            # its history starts here, with the status it has.
            last = PartnerStatusChange(
                partner_id=locked.id,
                from_status=None,
                to_status=current,
                reason="recorded",
                actor=principal.actor,
                at=locked.status_changed_at,
            )
            session.add(last)
            await session.flush()
        return StatusChangeView.of(last), False
    if move.status not in STATUS_MOVES[current]:
        allowed = sorted(STATUS_MOVES[current])
        raise StatusMoveRefused(
            f"partner {locked.slug!r} is {current}: it can move to "
            + (" or ".join(allowed) if allowed else "no other status (offboarded is final)")
        )
    if move.status is PartnerStatus.OFFBOARDED:
        await _refuse_offboarding_a_group(session, locked)
    now = datetime.now(UTC)
    record = PartnerStatusChange(
        partner_id=locked.id,
        from_status=current,
        to_status=move.status,
        reason=move.reason,
        actor=principal.actor,
        at=now,
    )
    session.add(record)
    locked.status = move.status
    locked.status_changed_at = now
    await session.flush()
    await audit.record(
        session,
        principal,
        "partner.status",
        _subject(program, locked.slug),
        {"from": current, "to": move.status, "reason": move.reason},
    )
    return StatusChangeView.of(record), True


async def list_partners(
    session: AsyncSession,
    program: Program,
    *,
    principal: Principal,
    status: PartnerStatus | None = None,
    parent: str | None = None,
    limit: int,
    cursor: str | None = None,
) -> Page[PartnerView]:
    """The program's firms, newest first, a page at a time; of one status,
    or the member companies of one firm (by its slug), if asked."""
    after = decode_cursor(cursor)
    above = aliased(Partner)
    query = (
        select(Partner, above.slug)
        .outerjoin(
            above, and_(above.id == Partner.parent_id, *tenant_of(principal, program, above))
        )
        .where(*tenant_of(principal, program))
        .order_by(Partner.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(Partner.id < after)
    if status is not None:
        query = query.where(Partner.status == status)
    if parent is not None:
        query = query.where(above.slug == parent)
    rows = (await session.execute(query)).all()
    return page_of([PartnerView.of(p, slug) for p, slug in rows], [p.id for p, _ in rows], limit)


async def partner_history(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None = None,
) -> Page[StatusChangeView]:
    """The firm's status moves, newest first, a page at a time."""
    after = decode_cursor(cursor)
    query = (
        select(PartnerStatusChange)
        .join(Partner, Partner.id == PartnerStatusChange.partner_id)
        .where(PartnerStatusChange.partner_id == partner.id, *tenant_of(principal, program))
        .order_by(PartnerStatusChange.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(PartnerStatusChange.id < after)
    changes = list(await session.scalars(query))
    return page_of([StatusChangeView.of(c) for c in changes], [c.id for c in changes], limit)


async def companies_of(
    session: AsyncSession, partner_id: uuid.UUID, reach: Reach
) -> frozenset[uuid.UUID]:
    """The firms a credential of ``partner_id`` with ``reach`` may see: the
    company alone; it and every company below it; or its whole group (every
    company under its top-level firm). Walked within the firm's program."""
    if reach is Reach.COMPANY:
        return frozenset({partner_id})
    top = partner_id
    if reach is Reach.GROUP:
        top = (await ancestors(session, partner_id))[-1]
    return frozenset((await descendants(session, top)).keys())


async def _parent(
    session: AsyncSession, program: Program, slug: str, *, principal: Principal
) -> Partner:
    parent = await session.scalar(readable_partners(principal, program).where(Partner.slug == slug))
    if parent is None:
        raise PartnerHierarchyRefused(f"parent: no partner {slug!r} in program {program.slug!r}")
    if parent.status == PartnerStatus.OFFBOARDED:
        raise PartnerHierarchyRefused(
            f"parent: partner {slug!r} is offboarded and takes no member companies"
        )
    return parent


async def _new_parent(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    slug: str | None,
    principal: Principal,
) -> uuid.UUID | None:
    """The id of the firm ``partner`` moves under (None: it becomes a
    top-level firm), once the move is known to keep the rules."""
    if slug is None:
        return None
    parent = await _parent(session, program, slug, principal=principal)
    if partner.id in await ancestors(session, parent.id):
        raise PartnerHierarchyRefused(
            f"parent: {slug!r} is {partner.slug!r} itself or one of its member companies;"
            " a group cannot contain itself"
        )
    below = await descendants(session, partner.id)
    await check_depth(session, parent, height=max(below.values()))
    return parent.id


async def _refuse_offboarding_a_group(session: AsyncSession, partner: Partner) -> None:
    remaining = await session.scalars(
        select(Partner.slug)
        .where(
            Partner.parent_id == partner.id,
            Partner.program_id == partner.program_id,
            Partner.status != PartnerStatus.OFFBOARDED,
        )
        .order_by(Partner.slug)
        .limit(5)
    )
    if names := list(remaining):
        raise StatusMoveRefused(
            f"partner {partner.slug!r} has member companies still in the coalition"
            f" ({', '.join(names)}): offboard them, or move them to another parent, first"
        )


async def _lock(
    session: AsyncSession, program: Program, partner: Partner, *, principal: Principal
) -> Partner:
    """The firm's row locked to the end of the transaction, as it is now (of
    two changes at once the second waits and sees the first's)."""
    locked = await session.scalar(
        readable_partners(principal, program)
        .where(Partner.id == partner.id)
        # NO KEY UPDATE: rows that refer to the firm (its member companies,
        # users, contracts) are written meanwhile as ever.
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    if locked is None:
        raise NotFound(f"no partner {partner.slug!r}")
    return locked
