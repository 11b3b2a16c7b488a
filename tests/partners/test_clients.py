"""Partner OAuth clients, by their use cases: made with their scopes and
reach, secrets hashed with Argon2id and shown once, rotated, revoked, each
audited, within the principal's tenant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import audit_events
from core.errors import AlreadyExists, NotFound
from core.models import Program
from core.principal import Principal, PrincipalKind, Reach, system
from partners.access_models import PartnerClient
from partners.client_access import ClientNotAuthorized, InvalidClient, authenticate_client
from partners.client_schemas import ClientSpec, SecretRotation
from partners.clients import (
    ClientRefused,
    ClientRevoked,
    create_client,
    list_clients,
    revoke_client,
    rotate_secret,
)
from partners.models import Partner, PartnerStatus
from tests.conftest import NewProgram
from tests.partners.conftest import NewPartner

OPERATOR = system("test")


def spec(name: str = "pos", scopes: list[str] | None = None, **fields: object) -> ClientSpec:
    return ClientSpec(name=name, scopes=scopes or ["points:issue"], **fields)  # type: ignore[arg-type]


async def lines(session: AsyncSession, action: str, client_id: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(audit_events)
        .where(audit_events.c.action == action, audit_events.c.subject.endswith(client_id))
    )
    return int(count or 0)


@pytest.fixture
async def firm(new_program: NewProgram, new_partner: NewPartner) -> tuple[Program, Partner]:
    program = await new_program()
    return program, await new_partner(program)


async def test_a_client_is_made_with_a_secret_kept_only_hashed(
    session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm

    issued = await create_client(
        session,
        program,
        partner,
        spec(scopes=["statements:read", "points:issue", "points:issue"], reach=Reach.GROUP),
        principal=OPERATOR,
    )
    await session.commit()

    assert issued.client_id.startswith("pc_") and issued.client_secret.startswith("pcs_")
    assert issued.scopes == ["points:issue", "statements:read"]
    stored = await session.scalar(
        select(PartnerClient).where(PartnerClient.client_id == issued.client_id)
    )
    assert stored is not None
    assert stored.secret_hash.startswith("$argon2id$")
    assert issued.client_secret not in stored.secret_hash
    assert (stored.reach, stored.program_id, stored.partner_id) == (
        "group",
        program.id,
        partner.id,
    )
    assert await lines(session, "partner-client.create", issued.client_id) == 1
    grant = await authenticate_client(session, issued.client_id, issued.client_secret)
    assert grant.scopes == {"points:issue", "statements:read"}
    with pytest.raises(InvalidClient):
        await authenticate_client(session, issued.client_id, issued.client_secret + "x")


async def test_a_clients_name_is_its_key_in_the_firm(
    session: AsyncSession, firm: tuple[Program, Partner], new_partner: NewPartner
) -> None:
    program, partner = firm
    await create_client(session, program, partner, spec("till"), principal=OPERATOR)
    await session.commit()

    # Refused before anything is written.
    with pytest.raises(AlreadyExists) as taken:
        await create_client(session, program, partner, spec("till"), principal=OPERATOR)

    assert taken.value.field == "name"
    # Another firm may use the name.
    other = await new_partner(program)
    await create_client(session, program, other, spec("till"), principal=OPERATOR)


async def test_unknown_scopes_and_offboarded_firms_are_refused(
    session: AsyncSession, firm: tuple[Program, Partner], new_partner: NewPartner
) -> None:
    program, partner = firm
    with pytest.raises(ClientRefused, match="ledger:write"):
        await create_client(
            session, program, partner, spec(scopes=["ledger:write"]), principal=OPERATOR
        )
    gone = await new_partner(program, status=PartnerStatus.OFFBOARDED)
    with pytest.raises(ClientRefused, match="offboarded"):
        await create_client(session, program, gone, spec(), principal=OPERATOR)
    await session.rollback()
    assert (
        await session.scalar(select(func.count()).where(PartnerClient.partner_id == gone.id)) == 0
    )


async def test_clients_are_listed_newest_first_a_page_at_a_time(
    session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm
    made = [
        (await create_client(session, program, partner, spec(f"c{n}"), principal=OPERATOR))
        for n in range(3)
    ]
    await session.commit()

    first = await list_clients(session, program, partner, principal=OPERATOR, limit=2)
    rest = await list_clients(
        session, program, partner, principal=OPERATOR, limit=2, cursor=first.next_cursor
    )

    listed = [c.client_id for c in [*first.items, *rest.items]]
    assert listed == [c.client_id for c in reversed(made)]
    assert rest.next_cursor is None
    fields = set(type(first.items[0]).__struct_fields__)
    assert not fields & {"client_secret", "secret_hash", "previous_secret_hash"}


async def test_a_rotation_keeps_at_most_two_secrets(
    session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm
    issued = await create_client(session, program, partner, spec(), principal=OPERATOR)
    now = datetime.now(UTC)
    second = await rotate_secret(
        session, program, partner, issued.client_id, SecretRotation(), principal=OPERATOR, now=now
    )
    third = await rotate_secret(
        session,
        program,
        partner,
        issued.client_id,
        SecretRotation(overlap_seconds=60),
        principal=OPERATOR,
        now=now,
    )
    await session.commit()

    assert second.previous_valid_until == now + timedelta(hours=24)
    assert third.previous_valid_until == now + timedelta(seconds=60)
    for secret in (second.client_secret, third.client_secret):
        await authenticate_client(session, issued.client_id, secret, now=now)
    with pytest.raises(InvalidClient):
        await authenticate_client(session, issued.client_id, issued.client_secret, now=now)
    # Past the overlap only the newest works.
    later = now + timedelta(seconds=61)
    with pytest.raises(InvalidClient):
        await authenticate_client(session, issued.client_id, second.client_secret, now=later)
    await authenticate_client(session, issued.client_id, third.client_secret, now=later)
    assert await lines(session, "partner-client.rotate-secret", issued.client_id) == 2
    # No overlap: the previous secret stops at once.
    fourth = await rotate_secret(
        session,
        program,
        partner,
        issued.client_id,
        SecretRotation(overlap_seconds=0),
        principal=OPERATOR,
        now=now,
    )
    assert fourth.previous_valid_until is None
    with pytest.raises(InvalidClient):
        await authenticate_client(session, issued.client_id, third.client_secret, now=now)


async def test_a_revoked_client_stays_revoked(
    session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm
    issued = await create_client(session, program, partner, spec(), principal=OPERATOR)
    await revoke_client(session, program, partner, issued.client_id, principal=OPERATOR)
    await revoke_client(session, program, partner, issued.client_id, principal=OPERATOR)
    await session.commit()

    assert await lines(session, "partner-client.revoke", issued.client_id) == 1
    with pytest.raises(InvalidClient):
        await authenticate_client(session, issued.client_id, issued.client_secret)
    with pytest.raises(ClientRevoked):
        await rotate_secret(
            session, program, partner, issued.client_id, SecretRotation(), principal=OPERATOR
        )


async def test_a_firm_that_is_not_active_gets_no_grant(
    session: AsyncSession, firm: tuple[Program, Partner]
) -> None:
    program, partner = firm
    issued = await create_client(session, program, partner, spec(), principal=OPERATOR)
    partner.status = PartnerStatus.SUSPENDED
    await session.commit()

    with pytest.raises(ClientNotAuthorized, match="suspended"):
        await authenticate_client(session, issued.client_id, issued.client_secret)


async def test_another_tenants_client_is_not_found(
    session: AsyncSession,
    firm: tuple[Program, Partner],
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program, partner = firm
    issued = await create_client(session, program, partner, spec(), principal=OPERATOR)
    await session.commit()
    elsewhere = await new_program()
    other_firm = await new_partner(program)
    bound_elsewhere = Principal(
        kind=PrincipalKind.OPERATOR,
        actor="key:elsewhere",
        scopes=frozenset({"partners:write"}),
        program_id=elsewhere.id,
    )

    attempts = [
        # The client under another firm of its program.
        revoke_client(session, program, other_firm, issued.client_id, principal=OPERATOR),
        # A key bound to another program.
        revoke_client(session, program, partner, issued.client_id, principal=bound_elsewhere),
        rotate_secret(
            session,
            program,
            partner,
            issued.client_id,
            SecretRotation(),
            principal=bound_elsewhere,
        ),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound):
            await attempt
    page = await list_clients(session, program, partner, principal=bound_elsewhere, limit=10)
    assert page.items == []
    await session.rollback()
    assert await lines(session, "partner-client.revoke", issued.client_id) == 0
