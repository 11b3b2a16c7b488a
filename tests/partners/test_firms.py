"""Partner firms' use cases against PostgreSQL: idempotent creation, the
hierarchy (member companies, cycles and depth refused, reach resolved),
the status machine and its history, lists, users, and tenancy in the
queries."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from core.errors import AlreadyExists, NotFound
from core.models import Program
from core.pagination import InvalidPageCursor
from core.principal import Principal, PrincipalKind, Reach
from partners import users
from partners.firm_schemas import PartnerChange, PartnerSpec, StatusMove
from partners.firms import (
    StatusMoveRefused,
    change_status,
    companies_of,
    create_partner,
    get_partner,
    list_partners,
    partner_history,
    update_partner,
)
from partners.hierarchy import PartnerHierarchyRefused
from partners.models import Partner, PartnerRole, PartnerStatus, PartnerStatusChange, PartnerUser
from tests.conftest import NewProgram
from tests.partners.conftest import NewPartner


def operator_of(program: Program, actor: str = "key:partner-desk") -> Principal:
    return Principal(
        kind=PrincipalKind.OPERATOR,
        actor=actor,
        scopes=frozenset({"partners:write"}),
        program_id=program.id,
    )


def spec(slug: str, **fields: Any) -> PartnerSpec:
    values = {
        "slug": slug,
        "name": "Fuel & Go",
        "legal_name": "Fuel & Go (Pty) Ltd",
        "country": "ZA",
        "contacts": [{"name": "Thandi", "email": "thandi@fuelandgo.example", "role": "billing"}],
        **fields,
    }
    return msgspec.convert(values, PartnerSpec)


async def refused(
    session: AsyncSession, error: type[Exception], call: Callable[[], Awaitable[Any]]
) -> Any:
    """The error ``call`` raised, its writes rolled back (to a savepoint:
    the test's objects stay loaded)."""
    with pytest.raises(error) as caught:
        async with session.begin_nested():
            await call()
    return caught.value


async def count(session: AsyncSession, model: Any, **where: Any) -> int:
    query = select(func.count()).select_from(model).filter_by(**where)
    return int(await session.scalar(query) or 0)


async def audit_lines(session: AsyncSession, program: Program) -> list[str]:
    rows = await session.execute(
        text("SELECT action FROM audit_events WHERE subject LIKE :s ORDER BY occurred_at, id"),
        {"s": f"program:{program.slug}:partner:%"},
    )
    return [row.action for row in rows]


async def test_a_partner_is_created_once_with_its_first_status(
    session: AsyncSession, new_program: NewProgram
) -> None:
    program = await new_program()
    ops = operator_of(program)

    view, created = await create_partner(session, program, spec("fuel-and-go"), principal=ops)
    again, created_again = await create_partner(
        session, program, spec("fuel-and-go"), principal=ops
    )

    assert (created, created_again) == (True, False)
    assert again == view
    assert (view.status, view.currency, view.parent) == ("invited", "ZAR", None)
    assert view.contacts[0].email == "thandi@fuelandgo.example"
    partner = await get_partner(session, ops, program, "fuel-and-go")
    assert partner.contacts == [
        {"name": "Thandi", "email": "thandi@fuelandgo.example", "role": "billing"}
    ]
    history = await partner_history(session, program, partner, principal=ops, limit=10)
    assert [(c.from_status, c.to_status, c.actor) for c in history.items] == [
        (None, "invited", "key:partner-desk")
    ]
    assert await audit_lines(session, program) == ["partner.create"]
    # Another firm under the slug: refused naming it, nothing written.
    error = await refused(
        session,
        AlreadyExists,
        lambda: create_partner(session, program, spec("fuel-and-go", name="Other"), principal=ops),
    )
    assert error.field == "slug" and "name" in str(error)
    assert await count(session, Partner, program_id=program.id) == 1
    assert await audit_lines(session, program) == ["partner.create"]


async def test_a_partner_in_another_currency_and_active_from_the_start(
    session: AsyncSession, new_program: NewProgram
) -> None:
    program = await new_program()
    view, _ = await create_partner(
        session,
        program,
        spec("bank", currency="USD", status="active", tier="gold"),
        principal=operator_of(program),
    )
    assert (view.currency, view.status, view.tier) == ("USD", "active", "gold")


async def test_member_companies_are_under_a_parent_of_the_same_program(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program, other = await new_program(), await new_program()
    ops = operator_of(program)
    await new_partner(other, slug="elsewhere")
    await create_partner(session, program, spec("group"), principal=ops)

    store, _ = await create_partner(session, program, spec("store", parent="group"), principal=ops)

    assert store.parent == "group"
    for parent in ("elsewhere", "nobody"):
        error = await refused(
            session,
            PartnerHierarchyRefused,
            lambda p=parent: create_partner(  # type: ignore[misc]
                session, program, spec("store-2", parent=p), principal=ops
            ),
        )
        assert f"no partner {parent!r}" in str(error)
    assert await count(session, Partner, program_id=program.id) == 2


async def test_a_group_is_at_most_five_levels_deep(
    session: AsyncSession, new_program: NewProgram
) -> None:
    program = await new_program()
    ops = operator_of(program)
    parent = None
    for level in range(1, 6):
        await create_partner(session, program, spec(f"level-{level}", parent=parent), principal=ops)
        parent = f"level-{level}"

    error = await refused(
        session,
        PartnerHierarchyRefused,
        lambda: create_partner(session, program, spec("level-6", parent="level-5"), principal=ops),
    )
    assert "6 levels deep" in str(error)
    # Moving a two-level subtree under level 4 would make six levels too.
    await create_partner(session, program, spec("region"), principal=ops)
    await create_partner(session, program, spec("shop", parent="region"), principal=ops)
    region = await get_partner(session, ops, program, "region")
    await refused(
        session,
        PartnerHierarchyRefused,
        lambda: update_partner(
            session, program, region, PartnerChange(parent="level-4"), principal=ops
        ),
    )
    moved = await update_partner(
        session, program, region, PartnerChange(parent="level-3"), principal=ops
    )
    assert moved.parent == "level-3"


async def test_cycles_are_refused_and_a_firm_can_leave_its_group(
    session: AsyncSession, new_program: NewProgram
) -> None:
    program = await new_program()
    ops = operator_of(program)
    await create_partner(session, program, spec("a"), principal=ops)
    await create_partner(session, program, spec("b", parent="a"), principal=ops)
    await create_partner(session, program, spec("c", parent="b"), principal=ops)
    a = await get_partner(session, ops, program, "a")

    for below in ("a", "b", "c"):
        error = await refused(
            session,
            PartnerHierarchyRefused,
            lambda p=below: update_partner(  # type: ignore[misc]
                session, program, a, PartnerChange(parent=p), principal=ops
            ),
        )
        assert "cannot contain itself" in str(error)
    assert (await get_partner(session, ops, program, "a")).parent_id is None

    b = await get_partner(session, ops, program, "b")
    left = await update_partner(session, program, b, PartnerChange(parent=None), principal=ops)
    assert left.parent is None
    # Now a may go under c (c is b's, no longer a's).
    under_c = await update_partner(session, program, a, PartnerChange(parent="c"), principal=ops)
    assert under_c.parent == "c"
    assert await audit_lines(session, program) == ["partner.create"] * 3 + ["partner.update"] * 2


async def test_a_profile_change_sets_what_it_gives_and_audits_what_changed(
    session: AsyncSession, new_program: NewProgram
) -> None:
    program = await new_program()
    ops = operator_of(program)
    await create_partner(session, program, spec("p", tier="silver"), principal=ops)
    partner = await get_partner(session, ops, program, "p")

    view = await update_partner(
        session, program, partner, PartnerChange(name="Fuel & Go Stores", tier=None), principal=ops
    )
    same = await update_partner(
        session, program, partner, PartnerChange(name="Fuel & Go Stores"), principal=ops
    )

    assert (view.name, view.tier, view.legal_name) == (
        "Fuel & Go Stores",
        None,
        "Fuel & Go (Pty) Ltd",
    )
    assert same == view
    details = await session.scalar(
        text("SELECT details FROM audit_events WHERE action = 'partner.update' AND subject = :s"),
        {"s": f"program:{program.slug}:partner:p"},
    )
    assert details == {
        "name": {"from": "Fuel & Go", "to": "Fuel & Go Stores"},
        "tier": {"from": "silver", "to": None},
    }
    assert await audit_lines(session, program) == ["partner.create", "partner.update"]


async def test_companies_of_resolves_each_reach(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program, other = await new_program(), await new_program()
    group = await new_partner(program)
    north = await new_partner(program, parent=group)
    south = await new_partner(program, parent=group)
    shop_1 = await new_partner(program, parent=north)
    shop_2 = await new_partner(program, parent=north)
    shop_3 = await new_partner(program, parent=south)
    alone = await new_partner(program)
    await new_partner(other)

    assert await companies_of(session, shop_1.id, Reach.COMPANY) == {shop_1.id}
    assert await companies_of(session, north.id, Reach.SUBSIDIARIES) == {
        north.id,
        shop_1.id,
        shop_2.id,
    }
    everyone = {group.id, north.id, south.id, shop_1.id, shop_2.id, shop_3.id}
    assert await companies_of(session, shop_1.id, Reach.GROUP) == everyone
    assert await companies_of(session, group.id, Reach.SUBSIDIARIES) == everyone
    assert await companies_of(session, shop_3.id, Reach.SUBSIDIARIES) == {shop_3.id}
    assert await companies_of(session, alone.id, Reach.GROUP) == {alone.id}


async def test_the_status_machine_and_its_history(
    session: AsyncSession, new_program: NewProgram
) -> None:
    program = await new_program()
    ops = operator_of(program)
    await create_partner(session, program, spec("p"), principal=ops)
    partner = await get_partner(session, ops, program, "p")

    error = await refused(
        session,
        StatusMoveRefused,
        lambda: change_status(
            session, program, partner, StatusMove(status=PartnerStatus.SUSPENDED), principal=ops
        ),
    )
    assert "active or offboarded" in str(error)
    moves = [
        (PartnerStatus.ACTIVE, "contract signed"),
        (PartnerStatus.SUSPENDED, "unpaid statement"),
        (PartnerStatus.ACTIVE, "paid"),
    ]
    for status, reason in moves:
        _, moved = await change_status(
            session, program, partner, StatusMove(status=status, reason=reason), principal=ops
        )
        assert moved
    last, moved = await change_status(
        session, program, partner, StatusMove(status=PartnerStatus.ACTIVE), principal=ops
    )
    assert not moved and (last.from_status, last.to_status, last.reason) == (
        "suspended",
        "active",
        "paid",
    )
    await change_status(
        session, program, partner, StatusMove(status=PartnerStatus.OFFBOARDED), principal=ops
    )
    error = await refused(
        session,
        StatusMoveRefused,
        lambda: change_status(
            session, program, partner, StatusMove(status=PartnerStatus.ACTIVE), principal=ops
        ),
    )
    assert "offboarded is final" in str(error)

    first = await partner_history(session, program, partner, principal=ops, limit=3)
    assert first.next_cursor is not None
    rest = await partner_history(
        session, program, partner, principal=ops, limit=3, cursor=first.next_cursor
    )
    assert rest.next_cursor is None
    history = [(c.from_status, c.to_status, c.reason) for c in first.items + rest.items]
    assert history == [
        ("active", "offboarded", None),
        ("suspended", "active", "paid"),
        ("active", "suspended", "unpaid statement"),
        ("invited", "active", "contract signed"),
        (None, "invited", "created"),
    ]
    assert (await get_partner(session, ops, program, "p")).status == "offboarded"
    assert await audit_lines(session, program) == ["partner.create"] + ["partner.status"] * 4
    assert await count(session, PartnerStatusChange, partner_id=partner.id) == 5


async def test_a_group_is_offboarded_after_its_member_companies(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    ops = operator_of(program)
    await create_partner(session, program, spec("group", status="active"), principal=ops)
    await create_partner(session, program, spec("shop", parent="group"), principal=ops)
    group = await get_partner(session, ops, program, "group")
    shop = await get_partner(session, ops, program, "shop")
    offboard = StatusMove(status=PartnerStatus.OFFBOARDED)

    error = await refused(
        session,
        StatusMoveRefused,
        lambda: change_status(session, program, group, offboard, principal=ops),
    )
    assert "(shop)" in str(error)
    await change_status(session, program, shop, offboard, principal=ops)
    await change_status(session, program, group, offboard, principal=ops)
    # An offboarded firm takes no member companies.
    await refused(
        session,
        PartnerHierarchyRefused,
        lambda: create_partner(session, program, spec("late", parent="group"), principal=ops),
    )


async def test_lists_filter_and_page(session: AsyncSession, new_program: NewProgram) -> None:
    program = await new_program()
    ops = operator_of(program)
    await create_partner(session, program, spec("group", status="active"), principal=ops)
    for n in range(5):
        await create_partner(session, program, spec(f"shop-{n}", parent="group"), principal=ops)

    seen: list[str] = []
    cursor = None
    while True:
        page = await list_partners(session, program, principal=ops, limit=2, cursor=cursor)
        seen += [p.slug for p in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"shop-{n}" for n in reversed(range(5))] + ["group"]
    active = await list_partners(
        session, program, principal=ops, status=PartnerStatus.ACTIVE, limit=50
    )
    assert [p.slug for p in active.items] == ["group"]
    members = await list_partners(session, program, principal=ops, parent="group", limit=50)
    assert {p.slug for p in members.items} == {f"shop-{n}" for n in range(5)}
    assert {p.parent for p in members.items} == {"group"}
    with pytest.raises(InvalidPageCursor):
        await list_partners(session, program, principal=ops, limit=2, cursor="not-a-cursor")


async def test_tenancy_is_in_the_queries(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    a, b = await new_program(), await new_program()
    mine = await new_partner(a, slug="mine")
    sibling = await new_partner(a, slug="sibling")
    of_b = operator_of(b)
    # A key of program B, handed program A (as a path would): A's firm is not found.
    with pytest.raises(NotFound, match="no partner 'mine'"):
        await get_partner(session, of_b, a, "mine")
    assert (await list_partners(session, a, principal=of_b, limit=50)).items == []
    # A partner's principal sees the firms of its reach only.
    as_mine = Principal(
        kind=PrincipalKind.PARTNER,
        actor="partner:client-1",
        program_id=a.id,
        partner_id=mine.id,
        partner_ids=frozenset({mine.id}),
    )
    assert (await get_partner(session, as_mine, a, "mine")).id == mine.id
    with pytest.raises(NotFound, match="no partner 'sibling'"):
        await get_partner(session, as_mine, a, "sibling")
    listed = await list_partners(session, a, principal=as_mine, limit=50)
    assert [p.slug for p in listed.items] == ["mine"]
    hidden = await users.list_users(session, a, sibling, principal=as_mine, limit=50)
    assert hidden.items == []


async def test_partner_users(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    ops = operator_of(program)
    partner = await new_partner(program)
    ann = msgspec.convert(
        {"email": "Ann@FuelAndGo.example", "name": "Ann", "role": "finance"}, users.UserSpec
    )

    added, created = await users.add_user(session, program, partner, ann, principal=ops)
    again, created_again = await users.add_user(session, program, partner, ann, principal=ops)

    assert (created, created_again) == (True, False) and again == added
    assert added.email == "ann@fuelandgo.example"
    other_role = msgspec.structs.replace(ann, role="admin")
    error = await refused(
        session,
        AlreadyExists,
        lambda: users.add_user(session, program, partner, other_role, principal=ops),
    )
    assert error.field == "email"
    changed = await users.change_user(
        session, program, partner, added.id, users.UserChange(role=PartnerRole.ADMIN), principal=ops
    )
    assert changed.role == "admin"
    await users.remove_user(session, program, partner, added.id, principal=ops)
    await users.remove_user(session, program, partner, added.id, principal=ops)
    assert (await users.list_users(session, program, partner, principal=ops, limit=50)).items == []
    await refused(
        session,
        NotFound,
        lambda: users.change_user(
            session,
            program,
            partner,
            added.id,
            users.UserChange(role=PartnerRole.SALES),
            principal=ops,
        ),
    )
    await refused(
        session,
        NotFound,
        lambda: users.remove_user(session, program, partner, uuid.uuid4(), principal=ops),
    )
    # The same e-mail again brings the user back, as the new request says.
    back, created = await users.add_user(session, program, partner, ann, principal=ops)
    assert created and (back.id, back.role) == (added.id, "finance")
    listed = await users.list_users(session, program, partner, principal=ops, limit=50)
    assert [u.id for u in listed.items] == [added.id]
    assert await count(session, PartnerUser, partner_id=partner.id) == 1
    actions = await session.scalars(
        text("SELECT action FROM audit_events WHERE subject = :s ORDER BY occurred_at, id"),
        {"s": f"program:{program.slug}:partner:{partner.slug}:user:{added.id}"},
    )
    assert list(actions) == [
        "partner-user.add",
        "partner-user.change",
        "partner-user.remove",
        "partner-user.restore",
    ]


async def test_two_creates_of_one_firm_at_once_make_one(
    engine: AsyncEngine, new_program: NewProgram
) -> None:
    program = await new_program()
    ops = operator_of(program)

    async def create() -> bool:
        async with AsyncSession(engine, expire_on_commit=False) as own:
            _, created = await create_partner(own, program, spec("twin"), principal=ops)
            await own.commit()
            return created

    assert sorted(await asyncio.gather(create(), create())) == [False, True]


async def test_two_moves_at_once_make_no_cycle(
    engine: AsyncEngine, session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    ops = operator_of(program)
    a, b = await new_partner(program, slug="a"), await new_partner(program, slug="b")

    async def move(partner: Partner, parent: str) -> str:
        async with AsyncSession(engine, expire_on_commit=False) as own:
            view = await update_partner(
                own, program, partner, PartnerChange(parent=parent), principal=ops
            )
            await own.commit()
            return str(view.parent)

    outcomes = await asyncio.gather(move(a, "b"), move(b, "a"), return_exceptions=True)

    assert sorted(type(o).__name__ for o in outcomes) == ["PartnerHierarchyRefused", "str"]
    parents = await session.execute(
        select(Partner.slug, Partner.parent_id).where(Partner.program_id == program.id)
    )
    assert sum(parent is not None for _, parent in parents) == 1


async def test_the_same_status_for_a_firm_without_history_starts_it(
    session: AsyncSession, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    ops = operator_of(program)
    partner = await new_partner(program)  # a row alone, no creation recorded

    first, moved = await change_status(
        session, program, partner, StatusMove(status=PartnerStatus.ACTIVE), principal=ops
    )
    again, _ = await change_status(
        session, program, partner, StatusMove(status=PartnerStatus.ACTIVE), principal=ops
    )

    assert not moved and again == first
    assert (first.from_status, first.to_status) == (None, "active")
    assert await count(session, PartnerStatusChange, partner_id=partner.id) == 1
