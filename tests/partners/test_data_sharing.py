"""Data-sharing agreements, members' consent by field and the disclosure
log, against PostgreSQL: nothing is shared before both partners opted in,
a field without the member's consent never leaves by any path (read,
export, webhook), every path writes its log lines, a revocation stops the
webhook deliveries still waiting, and a third partner finds nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Member, Program
from core.principal import Principal
from core.principal import member as member_principal
from ledger import Ledger
from partners import webhook_job
from partners.coalition_models import PartnerMemberLink
from partners.data_sharing import agreements, consent, disclosures
from partners.data_sharing.errors import (
    AgreementClosed,
    AgreementNotFound,
    AgreementNotInForce,
    InvalidAgreement,
    NotARecipient,
)
from partners.data_sharing.member_data import MEMBER_DATA
from partners.data_sharing.models import (
    DataDisclosure,
    DataSharingAgreement,
    DisclosureChannel,
    data_sharing_deliveries,
)
from partners.data_sharing.schemas import SharingProposal
from partners.models import Partner
from partners.webhook_deliveries import DeliveryNotReplayable, replay_delivery
from partners.webhook_models import webhook_attempts, webhook_deliveries
from partners.webhook_sending import deliver_due
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import enrolled, partner_principal
from tests.partners.conftest import NewPartner
from tests.partners.webhooks import LOCAL, QUICK, Sessions, no_stray_deliveries, sessions

__all__ = ["no_stray_deliveries", "sessions"]

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def acting(partner: Partner) -> Principal:
    return partner_principal(partner, scopes=("data:share",))


def proposal(to: Partner, **fields: Any) -> SharingProposal:
    counterparty = fields.pop("counterparty", to)
    values: dict[str, Any] = {
        "counterparty": counterparty.slug,
        "purpose": "Joint offers to shared customers",
        "direction": "proposer_to_counterparty",
        "fields": ["email", "tier", "phone"],
        "expires_at": NOW + timedelta(days=90),
        **fields,
    }
    return SharingProposal(**values)


class World:
    def __init__(self, program: Program, a: Partner, b: Partner, c: Partner, members: list[Member]):
        self.program, self.a, self.b, self.c, self.members = program, a, b, c, members


@pytest.fixture
async def world(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> World:
    program = await new_program()
    a = await new_partner(program)
    b = await new_partner(program)
    c = await new_partner(program)
    members = []
    for name in ("ann", "bob", "cy"):
        member = await enrolled(session, ledger, program, f"{name}-{uuid.uuid4().hex[:6]}")
        member.email = f"{name}@example.com"
        member.phone = "+27115550000"
        member.tier_code = "gold" if name == "cy" else None
        session.add(
            PartnerMemberLink(
                program_id=program.id,
                partner_id=a.id,
                member_id=member.id,
                identifier=f"card-{name}",
            )
        )
        members.append(member)
    await session.commit()
    return World(program, a, b, c, members)


async def active_agreement(session: AsyncSession, w: World, **fields: Any) -> DataSharingAgreement:
    agreement = await agreements.propose(
        session, proposal(w.b, **fields), NOW, principal=acting(w.a)
    )
    await agreements.opt_in(session, agreement.id, NOW, principal=acting(w.a))
    await agreements.opt_in(session, agreement.id, NOW, principal=acting(w.b))
    await session.commit()
    return agreement


async def grant(session: AsyncSession, w: World, member: Member, *fields: str) -> None:
    for field in fields:
        await consent.set_consent(
            session,
            w.program,
            member,
            field,
            True,
            NOW,
            principal=member_principal(w.program.id, member.external_id),
        )
    await session.commit()


async def log_of(session: AsyncSession, agreement: DataSharingAgreement) -> list[DataDisclosure]:
    return list(
        await session.scalars(
            select(DataDisclosure)
            .where(DataDisclosure.agreement_id == agreement.id)
            .order_by(DataDisclosure.id)
            .execution_options(populate_existing=True)
        )
    )


async def test_nothing_is_shared_until_both_opt_in(session: AsyncSession, world: World) -> None:
    w = world
    agreement = await agreements.propose(session, proposal(w.b), NOW, principal=acting(w.a))
    await session.commit()
    assert agreement.status == "proposed"
    with pytest.raises(AgreementNotInForce):
        await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    await session.commit()
    await agreements.opt_in(session, agreement.id, NOW, principal=acting(w.a))
    await session.commit()
    with pytest.raises(AgreementNotInForce):
        await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    await session.commit()
    opted = await agreements.opt_in(session, agreement.id, NOW, principal=acting(w.b))
    await session.commit()
    assert opted.status == "active"
    assert opted.proposer_opted_in_at == NOW and opted.counterparty_opted_in_at == NOW
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    assert found.id == agreement.id
    await session.commit()


async def test_a_third_partner_finds_nothing(session: AsyncSession, world: World) -> None:
    w = world
    agreement = await active_agreement(session, w)
    with pytest.raises(AgreementNotFound):
        await agreements.agreement_in_force(session, agreement.id, w.c.id, NOW)
    await session.commit()
    for call in (agreements.opt_in, agreements.revoke):
        with pytest.raises(AgreementNotFound):
            await call(session, agreement.id, NOW, principal=acting(w.c))
        await session.commit()
    with pytest.raises(AgreementNotFound):
        await agreements.agreement_in_force(session, uuid.uuid4(), w.a.id, NOW)
    await session.commit()
    page = await agreements.list_agreements(session, principal=acting(w.c))
    assert page.items == []


async def test_bad_proposals_are_refused(session: AsyncSession, world: World) -> None:
    w = world
    for bad in (
        {"expires_at": NOW - timedelta(seconds=1)},
        {"expires_at": NOW + timedelta(days=5 * 365)},
        {"fields": ["email", "email"]},
        {"counterparty": w.a},
    ):
        with pytest.raises(InvalidAgreement):
            await agreements.propose(session, proposal(w.b, **bad), NOW, principal=acting(w.a))
        await session.commit()
    count = await session.scalar(
        select(func.count())
        .select_from(DataSharingAgreement)
        .where(DataSharingAgreement.proposer_partner_id == w.a.id)
    )
    assert count == 0


async def test_a_field_without_consent_is_never_read(session: AsyncSession, world: World) -> None:
    w = world
    ann, bob, cy = w.members
    agreement = await active_agreement(session, w, fields=["email", "tier"])
    await grant(session, w, ann, "email", "phone")
    await grant(session, w, bob, "phone")  # not a field of the agreement
    await grant(session, w, cy, "email", "tier")
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    page = await disclosures.read_shared(session, found, w.b.id, NOW, cursor=None, limit=50)
    await session.commit()
    shared = {m.member: m for m in page.items}
    assert set(shared) == {ann.id, cy.id}  # bob consented to none of its fields
    assert shared[ann.id].email == ann.email and shared[ann.id].phone is None
    assert shared[ann.id].tier is None
    assert shared[cy.id].email == cy.email and shared[cy.id].tier == "gold"
    log = await log_of(session, agreement)
    assert {(line.member_id, tuple(line.fields)) for line in log} == {
        (ann.id, ("email",)),
        (cy.id, ("email", "tier")),
    }
    assert {line.channel for line in log} == {"api"}
    assert {(line.from_partner_id, line.to_partner_id) for line in log} == {(w.a.id, w.b.id)}

    # Withdrawn: the next read leaves it out, the log says so.
    await consent.set_consent(
        session,
        w.program,
        cy,
        "email",
        False,
        NOW,
        principal=member_principal(w.program.id, cy.external_id),
    )
    await session.commit()
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    page = await disclosures.read_shared(session, found, w.b.id, NOW, cursor=None, limit=50)
    await session.commit()
    shared = {m.member: m for m in page.items}
    assert shared[cy.id].email is None and shared[cy.id].tier == "gold"
    log = await log_of(session, agreement)
    assert [tuple(line.fields) for line in log if line.member_id == cy.id][-1] == ("tier",)


async def test_the_direction_decides_who_receives(session: AsyncSession, world: World) -> None:
    w = world
    agreement = await active_agreement(session, w)
    found = await agreements.agreement_in_force(session, agreement.id, w.a.id, NOW)
    with pytest.raises(NotARecipient):
        await disclosures.read_shared(session, found, w.a.id, NOW, cursor=None, limit=10)
    await session.commit()


async def test_pages_log_what_each_page_disclosed(session: AsyncSession, world: World) -> None:
    w = world
    agreement = await active_agreement(session, w, fields=["email"])
    for member in w.members:
        await grant(session, w, member, "email")
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    first = await disclosures.read_shared(session, found, w.b.id, NOW, cursor=None, limit=2)
    second = await disclosures.read_shared(
        session, found, w.b.id, NOW, cursor=first.next_cursor, limit=2
    )
    await session.commit()
    assert len(first.items) == 2 and len(second.items) == 1
    log = await log_of(session, agreement)
    assert sorted(str(line.member_id) for line in log) == sorted(str(m.id) for m in w.members)


async def test_export_is_filtered_and_logged(session: AsyncSession, world: World) -> None:
    w = world
    ann, bob, _ = w.members
    agreement = await active_agreement(session, w, fields=["email", "partner_identifier"])
    await grant(session, w, ann, "partner_identifier")
    await grant(session, w, bob, "email", "partner_identifier")
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    export_id, members = await disclosures.export_shared(session, found, w.b.id, NOW)
    await session.commit()
    by_id = {m.member: m for m in members}
    assert set(by_id) == {ann.id, bob.id}
    assert by_id[ann.id].email is None and by_id[ann.id].partner_identifier == "card-ann"
    log = await log_of(session, agreement)
    assert {(line.member_id, tuple(line.fields), line.channel, line.reference) for line in log} == {
        (ann.id, ("partner_identifier",), "export", export_id),
        (bob.id, ("email", "partner_identifier"), "export", export_id),
    }


async def test_overlap_lines_are_recorded(session: AsyncSession, world: World) -> None:
    w = world
    agreement = await active_agreement(session, w)
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    written = await disclosures.record_disclosure(
        session,
        agreement=found,
        to_partner_id=w.b.id,
        record_refs=["acct-1", "acct-2"],
        fields=["domain"],
        channel=DisclosureChannel.OVERLAP,
        now=NOW,
        reference="match-1",
    )
    await session.commit()
    assert written == 2
    log = await log_of(session, agreement)
    assert [(line.record_ref, line.channel, line.from_partner_id) for line in log] == [
        ("acct-1", "overlap", w.a.id),
        ("acct-2", "overlap", w.a.id),
    ]


async def endpoint_of(session: AsyncSession, partner: Partner) -> uuid.UUID:
    endpoint = uuid.uuid4()
    await session.execute(
        text(
            "INSERT INTO webhook_endpoints (id, program_id, partner_id, url, description, status,"
            " secret) VALUES (:id, :program, :partner, 'https://example.com/hook', 'test',"
            " 'enabled', 'whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=')"
        ),
        {"id": endpoint, "program": partner.program_id, "partner": partner.id},
    )
    await session.commit()
    return endpoint


async def test_a_revocation_stops_a_waiting_webhook(session: AsyncSession, world: World) -> None:
    w = world
    ann, bob, _ = w.members
    endpoint = await endpoint_of(session, w.b)
    agreement = await active_agreement(session, w, fields=["email", "tier"])
    await grant(session, w, ann, "email")
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    made, sent = await disclosures.push_by_webhook(session, found, w.b.id, [ann.id, bob.id], NOW)
    await session.commit()
    assert sent == 1 and len(made) == 1
    row = (
        await session.execute(select(webhook_deliveries).where(webhook_deliveries.c.id == made[0]))
    ).one()
    assert row.endpoint_id == endpoint and row.status == "pending"
    assert str(agreement.id) in row.body and ann.email in row.body
    assert str(bob.id) not in row.body  # no consent: not even named
    assert '"tier"' not in row.body
    log = await log_of(session, agreement)
    assert [(line.member_id, line.channel, line.reference) for line in log] == [
        (ann.id, "webhook", f"msg_{made[0].hex}")
    ]

    await agreements.revoke(session, agreement.id, NOW, principal=acting(w.b))
    await session.commit()
    row = (
        await session.execute(select(webhook_deliveries).where(webhook_deliveries.c.id == made[0]))
    ).one()
    assert row.status == "dead" and row.dead_at == NOW
    attempt = (
        await session.execute(
            select(webhook_attempts).where(webhook_attempts.c.delivery_id == made[0])
        )
    ).one()
    assert attempt.succeeded is False and "revoked" in (attempt.error or "")
    link = (
        await session.execute(
            select(data_sharing_deliveries).where(data_sharing_deliveries.c.delivery_id == made[0])
        )
    ).one()
    assert link.cancelled_reason == "revoked"
    assert await log_of(session, agreement) == []  # never sent: never disclosed
    with pytest.raises(DeliveryNotReplayable):
        await replay_delivery(session, made[0], principal=acting(w.b))
    await session.commit()
    with pytest.raises(AgreementNotInForce):
        await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    await session.commit()


async def test_an_expired_agreement_drops_its_waiting_webhooks(
    session: AsyncSession, world: World
) -> None:
    w = world
    ann = w.members[0]
    await endpoint_of(session, w.b)
    agreement = await active_agreement(session, w, fields=["email"])
    await grant(session, w, ann, "email")
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    made, _ = await disclosures.push_by_webhook(session, found, w.b.id, [ann.id], NOW)
    await session.commit()
    later = agreement.expires_at + timedelta(seconds=1)
    # Past its expiry, before the expiry job: the sender's check drops it.
    assert await disclosures.drop_out_of_force(session, NOW, only=made) == 0
    assert await disclosures.drop_out_of_force(session, later, only=made) == 1
    await session.commit()
    status = await session.scalar(
        select(webhook_deliveries.c.status).where(webhook_deliveries.c.id == made[0])
    )
    assert status == "dead"
    with pytest.raises(AgreementNotInForce):
        await agreements.agreement_in_force(session, agreement.id, w.b.id, later)
    await session.commit()
    assert await agreements.expire_agreements(session, later) >= 1
    await session.commit()
    await session.refresh(agreement)
    assert agreement.status == "expired"
    with pytest.raises(AgreementClosed):
        await agreements.opt_in(session, agreement.id, later, principal=acting(w.a))
    await session.commit()


async def test_either_partner_revokes(session: AsyncSession, world: World) -> None:
    w = world
    agreement = await active_agreement(session, w)
    revoked = await agreements.revoke(session, agreement.id, NOW, principal=acting(w.a))
    await session.commit()
    assert revoked.status == "revoked" and revoked.revoked_by_partner_id == w.a.id
    # again: nothing changes
    again = await agreements.revoke(
        session, agreement.id, NOW + timedelta(hours=1), principal=acting(w.b)
    )
    await session.commit()
    assert again.revoked_at == NOW and again.revoked_by_partner_id == w.a.id
    with pytest.raises(AgreementClosed):
        await agreements.opt_in(session, agreement.id, NOW, principal=acting(w.b))
    await session.commit()


async def test_a_member_sees_what_went_to_whom(session: AsyncSession, world: World) -> None:
    w = world
    ann, bob, _ = w.members
    agreement = await active_agreement(session, w, fields=["email"])
    await grant(session, w, ann, "email")
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    await disclosures.read_shared(session, found, w.b.id, NOW, cursor=None, limit=10)
    await session.commit()
    mine = await disclosures.member_log(session, ann, cursor=None, limit=10)
    assert [(d.from_partner, d.to_partner, d.fields, d.channel) for d in mine.items] == [
        (w.a.name, w.b.name, ["email"], "api")
    ]
    assert mine.items[0].purpose == agreement.purpose
    assert (await disclosures.member_log(session, bob, cursor=None, limit=10)).items == []
    views = await consent.consents(session, ann)
    assert {v.field: v.granted for v in views} == {
        "email": True,
        "phone": False,
        "tier": False,
        "member_since": False,
        "partner_identifier": False,
    }


class Recorder:
    """A transport that answers 200 and keeps what was posted."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    async def post(
        self, endpoint: uuid.UUID, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        self.bodies.append(body.decode())
        return 200, b"ok"


@pytest.mark.usefixtures("no_stray_deliveries")
async def test_the_sender_sends_nothing_under_a_revoked_agreement(
    session: AsyncSession, sessions: Sessions, world: World
) -> None:
    w = world
    ann = w.members[0]
    await session.execute(
        text(
            "INSERT INTO webhook_endpoints (id, program_id, partner_id, url, description, status,"
            " secret) VALUES (:id, :program, :partner, 'http://127.0.0.1:9/hook', 'test',"
            " 'enabled', 'whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=')"
        ),
        {"id": uuid.uuid4(), "program": w.program.id, "partner": w.b.id},
    )
    await session.commit()
    kept = await active_agreement(session, w, fields=["email"])
    doomed = await active_agreement(session, w, fields=["email"])
    await grant(session, w, ann, "email")
    now = datetime.now(UTC)
    made: dict[uuid.UUID, uuid.UUID] = {}
    for agreement in (kept, doomed):
        found = await agreements.agreement_in_force(session, agreement.id, w.b.id, now)
        [made[agreement.id]], _ = await disclosures.push_by_webhook(
            session, found, w.b.id, [ann.id], now
        )
        await session.commit()
    # Waiting in the outbox when B revokes the second.
    await agreements.revoke(session, doomed.id, now, principal=acting(w.b))
    await session.commit()
    transport = Recorder()
    sent = await deliver_due(sessions, transport, datetime.now(UTC), policy=LOCAL, options=QUICK)
    assert sent == 1
    assert len(transport.bodies) == 1 and str(kept.id) in transport.bodies[0]
    assert not any(str(doomed.id) in body for body in transport.bodies)
    rows = await session.execute(
        select(webhook_deliveries.c.id, webhook_deliveries.c.status).where(
            webhook_deliveries.c.id.in_(list(made.values()))
        )
    )
    statuses = {row.id: row.status for row in rows}
    assert statuses == {made[kept.id]: "succeeded", made[doomed.id]: "dead"}


@pytest.mark.usefixtures("no_stray_deliveries")
async def test_the_webhook_job_drops_deliveries_of_an_agreement_that_expired(
    session: AsyncSession, sessions: Sessions, world: World
) -> None:
    w = world
    ann = w.members[0]
    await endpoint_of(session, w.b)
    agreement = await active_agreement(session, w, fields=["email"])
    await grant(session, w, ann, "email")
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    [delivery], _ = await disclosures.push_by_webhook(session, found, w.b.id, [ann.id], NOW)
    await session.commit()
    later = agreement.expires_at + timedelta(minutes=1)
    run = webhook_job._Run(sessions, {}, SimpleNamespace(now=lambda: later))  # type: ignore[arg-type]
    await run._drop_out_of_force()
    status = await session.scalar(
        select(webhook_deliveries.c.status).where(webhook_deliveries.c.id == delivery)
    )
    assert status == "dead"
    reason = await session.scalar(
        select(data_sharing_deliveries.c.cancelled_reason).where(
            data_sharing_deliveries.c.delivery_id == delivery
        )
    )
    assert reason == "expired"


async def test_both_partners_read_the_same_log(session: AsyncSession, world: World) -> None:
    w = world
    ann = w.members[0]
    agreement = await active_agreement(session, w, fields=["email"])
    await grant(session, w, ann, "email")
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    await disclosures.read_shared(session, found, w.b.id, NOW, cursor=None, limit=10)
    await session.commit()
    for partner in (w.a, w.b):
        seen = await agreements.get(session, agreement.id, principal=acting(partner))
        page = await disclosures.agreement_log(session, seen, cursor=None, limit=10)
        assert [(d.from_partner, d.to_partner, d.member, d.fields) for d in page.items] == [
            (w.a.slug, w.b.slug, ann.id, ["email"])
        ]
    with pytest.raises(AgreementNotFound):
        await agreements.get(session, agreement.id, principal=acting(w.c))


async def test_a_members_export_and_erasure(session: AsyncSession, world: World) -> None:
    w = world
    ann = w.members[0]
    agreement = await active_agreement(session, w, fields=["email"])
    await grant(session, w, ann, "email")
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    await disclosures.read_shared(session, found, w.b.id, NOW, cursor=None, limit=10)
    await session.commit()
    exported = await MEMBER_DATA.export(session, ann)
    assert [c["field"] for c in exported["consents"]] == ["email"]
    assert [(d["to_partner"], d["fields"]) for d in exported["disclosures"]] == [
        (w.b.slug, ["email"])
    ]
    await MEMBER_DATA.erase(session, ann)
    await session.commit()
    assert (await MEMBER_DATA.export(session, ann))["consents"] == []
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    page = await disclosures.read_shared(session, found, w.b.id, NOW, cursor=None, limit=10)
    await session.commit()
    assert ann.id not in {m.member for m in page.items}


async def test_nothing_goes_while_a_party_is_suspended(session: AsyncSession, world: World) -> None:
    w = world
    agreement = await active_agreement(session, w)
    await session.execute(update(Partner).where(Partner.id == w.b.id).values(status="suspended"))
    await session.commit()
    with pytest.raises(AgreementNotInForce):
        await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    await session.commit()
    await session.execute(update(Partner).where(Partner.id == w.b.id).values(status="active"))
    await session.commit()
    found = await agreements.agreement_in_force(session, agreement.id, w.b.id, NOW)
    assert found.id == agreement.id
    await session.commit()
