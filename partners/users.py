"""The people of a partner firm, with their roles (admin, sales, marketing,
finance); the portal they will log into comes later.

A user is known by their e-mail within the firm, lower-cased. Removing one
keeps the row (the audit trail names them): they are no longer listed nor
changed, and adding the same e-mail again brings that user back, with the
name and role of the new request, under the same id.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from msgspec import UNSET
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import AlreadyExists, NotFound
from core.models import Program
from core.pagination import Page, decode_cursor, page_of
from core.principal import Principal
from ledger.bounds import NonEmpty, Text200
from partners.firm_schemas import Email
from partners.firms import tenant_of
from partners.models import Partner, PartnerRole, PartnerUser

Role = Annotated[
    PartnerRole,
    msgspec.Meta(
        description="What the user does in the firm: `admin` (manages the firm's users and"
        " access), `sales`, `marketing` or `finance` (statements and payments)."
    ),
]
UserName = Annotated[Text200, NonEmpty, msgspec.Meta(description="The person's name.")]


class UserSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    email: Annotated[
        Email, msgspec.Meta(description="Their e-mail, the user's key in the firm (lower-cased).")
    ]
    name: UserName
    role: Role


class UserChange(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Each field given is set; each left out is kept."""

    name: UserName | msgspec.UnsetType = UNSET
    role: Role | msgspec.UnsetType = UNSET


class UserView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[uuid.UUID, msgspec.Meta(description="The user's id, in their paths.")]
    email: Annotated[str, msgspec.Meta(description="Their e-mail, lower-cased.")]
    name: Annotated[str, msgspec.Meta(description="The person's name.")]
    role: Annotated[str, msgspec.Meta(description="admin, sales, marketing or finance.")]
    created_at: Annotated[datetime, msgspec.Meta(description="When the user was added.")]

    @classmethod
    def of(cls, user: PartnerUser) -> UserView:
        return cls(
            id=user.id, email=user.email, name=user.name, role=user.role, created_at=user.created_at
        )


def _users(principal: Principal, program: Program, partner: Partner) -> Select[PartnerUser]:
    """The users of ``partner``, within ``principal``'s tenant (its program,
    its reach), removed ones included."""
    return (
        select(PartnerUser)
        .join(Partner, Partner.id == PartnerUser.partner_id)
        .where(PartnerUser.partner_id == partner.id, *tenant_of(principal, program))
    )


def _subject(program: Program, partner: Partner, user: PartnerUser) -> str:
    return f"program:{program.slug}:partner:{partner.slug}:user:{user.id}"


async def add_user(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    spec: UserSpec,
    *,
    principal: Principal,
) -> tuple[UserView, bool]:
    """Add a user to the firm, audited; and whether the request added one.
    The same request again answers the user and writes nothing; another
    name or role under an e-mail in use is refused (``AlreadyExists``
    naming ``email``: change the user instead); a removed user's e-mail
    brings the user back."""
    email = spec.email.lower()
    # Under the firm's row lock: two adds of one e-mail at once find each
    # other's row rather than losing a race on its unique key.
    await _lock_partner(session, principal, program, partner)
    user = await session.scalar(
        _users(principal, program, partner)
        .where(PartnerUser.email == email)
        .execution_options(populate_existing=True)
    )
    if user is not None and user.removed_at is None:
        if (user.name, user.role) != (spec.name, spec.role):
            raise AlreadyExists(
                f"partner {partner.slug!r} has a user {email!r} with another name or role;"
                " change that user instead",
                field="email",
            )
        return UserView.of(user), False
    action = "partner-user.add"
    if user is None:
        user = PartnerUser(partner_id=partner.id, email=email, name=spec.name, role=spec.role)
        session.add(user)
    else:
        action = "partner-user.restore"
        user.name, user.role, user.removed_at = spec.name, spec.role, None
    await session.flush()
    # The e-mail is personal data: the trail names the user by id.
    await audit.record(
        session, principal, action, _subject(program, partner, user), {"role": spec.role}
    )
    return UserView.of(user), True


async def list_users(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    *,
    principal: Principal,
    limit: int,
    cursor: str | None = None,
) -> Page[UserView]:
    """The firm's users (not the removed ones), newest first, a page at a time."""
    after = decode_cursor(cursor)
    query = (
        _users(principal, program, partner)
        .where(PartnerUser.removed_at.is_(None))
        .order_by(PartnerUser.id.desc())
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(PartnerUser.id < after)
    users = list(await session.scalars(query))
    return page_of([UserView.of(u) for u in users], [u.id for u in users], limit)


async def change_user(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    user_id: uuid.UUID,
    change: UserChange,
    *,
    principal: Principal,
) -> UserView:
    """Set the user's name or role, audited with what changed (nothing
    changed: no line). A removed user is not found."""
    user = await _current_user(session, principal, program, partner, user_id)
    wanted = {k: v for k, v in msgspec.structs.asdict(change).items() if v is not UNSET}
    changed = {
        name: {"from": getattr(user, name), "to": value}
        for name, value in wanted.items()
        if getattr(user, name) != value
    }
    if changed:
        for name, values in changed.items():
            setattr(user, name, values["to"])
        await session.flush()
        await audit.record(
            session,
            principal,
            "partner-user.change",
            _subject(program, partner, user),
            # Names are personal data and stay out; roles are not.
            {
                "changed": sorted(changed),
                **({"role": changed["role"]} if "role" in changed else {}),
            },
        )
    return UserView.of(user)


async def remove_user(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    user_id: uuid.UUID,
    *,
    principal: Principal,
) -> None:
    """Remove the user from the firm, audited. Removing a removed user
    again changes nothing; an id that is no user of the firm is not found."""
    user = await session.scalar(
        _users(principal, program, partner)
        .where(PartnerUser.id == user_id)
        .with_for_update(of=PartnerUser)
        .execution_options(populate_existing=True)
    )
    if user is None:
        raise NotFound(f"no user {str(user_id)!r} of partner {partner.slug!r}")
    if user.removed_at is not None:
        return
    user.removed_at = datetime.now(UTC)
    await session.flush()
    await audit.record(session, principal, "partner-user.remove", _subject(program, partner, user))


async def _current_user(
    session: AsyncSession,
    principal: Principal,
    program: Program,
    partner: Partner,
    user_id: uuid.UUID,
) -> PartnerUser:
    user = await session.scalar(
        _users(principal, program, partner)
        .where(PartnerUser.id == user_id, PartnerUser.removed_at.is_(None))
        .with_for_update(of=PartnerUser)
        .execution_options(populate_existing=True)
    )
    if user is None:
        raise NotFound(f"no user {str(user_id)!r} of partner {partner.slug!r}")
    return user


async def _lock_partner(
    session: AsyncSession, principal: Principal, program: Program, partner: Partner
) -> None:
    locked = await session.scalar(
        select(Partner.id)
        .where(Partner.id == partner.id, *tenant_of(principal, program))
        .with_for_update(key_share=True)
    )
    if locked is None:
        raise NotFound(f"no partner {partner.slug!r}")
