"""A program's own webhook endpoints (its operators') against real
PostgreSQL and a real receiver on loopback: a reconciliation that finds a
tampered balance delivers its alert, signed per Standard Webhooks (checked
with the package's verifier, as the operator's receiver would), to each
enabled endpoint of the program that takes it, and to no other (disabled,
another type, another program's, a partner's); a clean run sends none.
The endpoints' rules (event types, the limit, rotation, tenancy) too."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks import Webhook

from api.modules import MODULES, SUBSCRIBERS
from core.audit import audit_events
from core.errors import NotFound
from core.models import Program
from core.outbox import drain, emit
from core.principal import Principal, PrincipalKind
from finance.reconciliation import ALERT_TOPIC, run_reconciliation
from finance.reconciliation_schemas import ReconciliationRunDetail, ReconciliationRunRequest
from ledger import Ledger
from partners import webhook_job
from partners.program_webhook_events import (
    OPERATOR_TOPICS,
    RECONCILIATION_DIFFERENCES,
)
from partners.program_webhook_schemas import (
    PROGRAM_ENDPOINTS_MAX,
    CreatedProgramEndpoint,
    ProgramEndpointChange,
    ProgramEndpointSpec,
)
from partners.program_webhooks import (
    create_program_endpoint,
    get_program_endpoint,
    list_program_endpoints,
    program_fan_out,
    rotate_program_secret,
    update_program_endpoint,
)
from partners.webhook_deliveries import get_delivery, send_test_event
from partners.webhook_endpoints import (
    TooManyEndpoints,
    UnknownEventType,
    get_endpoint,
    list_endpoints,
)
from partners.webhook_models import partner_notices
from partners.webhook_schemas import EndpointSecretRotation, message_id
from partners.webhook_sending import HttpClients
from rewards import sunset
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import enrolled
from tests.partners.conftest import NewPartner
from tests.partners.receiver import Answer, receiver
from tests.partners.webhooks import (
    LOCAL,
    Sessions,
    acting_for,
    deliveries_of,
    http,
    new_endpoint,
    no_stray_deliveries,
    send_due,
    sessions,
    set_failing_since,
)

__all__ = ["http", "no_stray_deliveries", "sessions"]

pytestmark = pytest.mark.usefixtures("no_stray_deliveries")

OPERATOR = Principal(
    kind=PrincipalKind.OPERATOR,
    actor="key:operations",
    scopes=frozenset({"webhooks:read", "webhooks:write", "finance:read", "finance:write"}),
)


async def program_endpoint(
    sessions: Sessions, program: Program, url: str, **fields: Any
) -> CreatedProgramEndpoint:
    async with sessions() as session, session.begin():
        return await create_program_endpoint(
            session,
            program,
            ProgramEndpointSpec(url=url, **fields),
            principal=OPERATOR,
            targets=LOCAL,
        )


async def disable(sessions: Sessions, program: Program, endpoint_id: uuid.UUID) -> None:
    async with sessions() as session, session.begin():
        await update_program_endpoint(
            session,
            program,
            endpoint_id,
            ProgramEndpointChange(status="disabled"),
            principal=OPERATOR,
            targets=LOCAL,
        )


async def fan_out_program_events(sessions: Sessions) -> int:
    """What the ``deliver-webhooks`` job drains (the installation's own
    subscribers of the webhooks' topics), program events among them."""
    subscribers = webhook_job._partner_subscribers(SUBSCRIBERS)
    return await drain(sessions, subscribers, datetime.now(UTC) + timedelta(seconds=1))


async def reconcile(sessions: Sessions, program: Program) -> ReconciliationRunDetail:
    async with sessions() as session, session.begin():
        return await run_reconciliation(
            session, program, ReconciliationRunRequest(), datetime.now(UTC), principal=OPERATOR
        )


@pytest.fixture
async def tampered(pool: asyncpg.Pool) -> AsyncIterator[list[uuid.UUID]]:
    """Wallets a test gives 7 posted credits behind the ledger's back, put
    back afterwards: other tests check every ledger's invariants."""
    wallets: list[uuid.UUID] = []
    yield wallets
    for wallet in wallets:
        await pool.execute(
            "UPDATE accounts SET credits_posted = credits_posted - 7 WHERE id = $1", wallet
        )


def test_the_alert_topic_is_finances_and_every_program_topic_reaches_the_fan_out() -> None:
    assert RECONCILIATION_DIFFERENCES == ALERT_TOPIC
    subscribed = {
        topic for m in MODULES for topic, s in m.subscribers.items() if s is program_fan_out
    }
    assert subscribed == OPERATOR_TOPICS
    declared = {topic for m in MODULES for topic in m.topics}
    assert declared >= OPERATOR_TOPICS
    # The sending job fans them out itself, as it does the partners' events.
    assert set(webhook_job._partner_subscribers(SUBSCRIBERS)) >= OPERATOR_TOPICS


async def test_a_reconciliation_that_finds_a_tampered_balance_delivers_a_signed_alert(
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    sessions: Sessions,
    http: HttpClients,
    new_program: NewProgram,
    new_partner: NewPartner,
    tampered: list[uuid.UUID],
    caplog: pytest.LogCaptureFixture,
) -> None:
    program, elsewhere = await new_program(), await new_program()
    member = await enrolled(session, ledger, program)
    partner = await new_partner(program)
    async with receiver() as hooks:
        alerts, every, off, sunsets, others, partners = (hooks.path() for _ in range(6))
        alerted = await program_endpoint(
            sessions, program, hooks.url(alerts), event_types=[ALERT_TOPIC]
        )
        everything = await program_endpoint(sessions, program, hooks.url(every))
        disabled = await program_endpoint(sessions, program, hooks.url(off))
        await disable(sessions, program, disabled.id)
        not_taken = await program_endpoint(
            sessions, program, hooks.url(sunsets), event_types=[sunset.SCHEDULED]
        )
        other_program = await program_endpoint(sessions, elsewhere, hooks.url(others))
        partner_endpoint = await new_endpoint(sessions, partner, hooks.url(partners))
        await pool.execute(
            "UPDATE accounts SET credits_posted = credits_posted + 7 WHERE id = $1",
            member.wallet_account_id,
        )
        tampered.append(member.wallet_account_id)

        with caplog.at_level(logging.WARNING, logger="finance.reconciliation"):
            detail = await reconcile(sessions, program)
        await fan_out_program_events(sessions)
        # Other tests' due deliveries may go out too: this program's are counted.
        await send_due(sessions, http)
        for endpoint in (alerted, everything):
            assert len(await deliveries_of(sessions, endpoint.id)) == 1
        for endpoint in (disabled, not_taken, other_program):
            assert await deliveries_of(sessions, endpoint.id) == []

        [request] = hooks.at(alerts)
        [same] = hooks.at(every)
        for quiet in (off, sunsets, others, partners):
            assert hooks.at(quiet) == []
    assert detail.run.differences > 0
    # As the operator's receiver checks it: the package's own verifier.
    payload = Webhook(alerted.secret).verify(request.body, request.headers)
    assert payload["type"] == ALERT_TOPIC
    data = payload["data"]
    assert data["run_id"] == detail.run.id
    assert data["program"] == program.slug
    assert program.ledger_id in data["ledgers"]
    assert data["differences"] == detail.run.differences
    assert data["checks"]["balances"] == 1
    assert data["path"] == f"/programs/{program.slug}/finance/reconciliations/{detail.run.id}"
    assert Webhook(everything.secret).verify(same.body, same.headers) == payload
    # Signed with each endpoint's own secret: the other's does not verify it.
    with pytest.raises(Exception, match="signature"):
        Webhook(everything.secret).verify(request.body, request.headers)
    [delivery] = await deliveries_of(sessions, alerted.id)
    assert (delivery.status, delivery.partner_id, delivery.program_id) == (
        "succeeded",
        None,
        program.id,
    )
    assert request.headers["webhook-id"] == message_id(delivery.id)
    for nothing in (disabled, not_taken, other_program, partner_endpoint):
        assert await deliveries_of(sessions, nothing.id) == []
    # And the log line, as before: an alert is never only a webhook.
    [line] = [r for r in caplog.records if r.name == "finance.reconciliation"]
    assert line.levelno == logging.WARNING and detail.run.id in line.getMessage()


async def test_a_clean_run_sends_none(
    session: AsyncSession,
    ledger: Ledger,
    sessions: Sessions,
    http: HttpClients,
    new_program: NewProgram,
) -> None:
    program = await new_program()
    await enrolled(session, ledger, program)
    async with receiver() as hooks:
        path = hooks.path()
        endpoint = await program_endpoint(sessions, program, hooks.url(path))

        detail = await reconcile(sessions, program)
        await fan_out_program_events(sessions)
        await send_due(sessions, http)

        assert hooks.at(path) == []
    assert detail.run.differences == 0
    assert await deliveries_of(sessions, endpoint.id) == []


async def test_a_program_event_becomes_one_delivery_per_endpoint_however_often_fanned_out(
    sessions: Sessions, new_program: NewProgram
) -> None:
    program = await new_program()
    endpoint = await program_endpoint(sessions, program, "http://127.0.0.1:9/own")
    async with sessions() as session, session.begin():
        event = await emit(
            session, sunset.SCHEDULED, f"program:{program.id}", {"program": program.slug}
        )
    await fan_out_program_events(sessions)
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE outbox_events SET handled_at = NULL WHERE id = :id"), {"id": event}
        )
    await fan_out_program_events(sessions)

    [delivery] = await deliveries_of(sessions, endpoint.id)
    assert (delivery.event_id, delivery.event_type) == (event, sunset.SCHEDULED)


async def test_an_endpoint_takes_program_event_types_only_and_so_many(
    sessions: Sessions, new_program: NewProgram
) -> None:
    program = await new_program()
    async with sessions() as session:
        with pytest.raises(UnknownEventType, match=r"partner\.points_issued"):
            await create_program_endpoint(
                session,
                program,
                ProgramEndpointSpec(
                    url="http://127.0.0.1:9/x", event_types=["partner.points_issued"]
                ),
                principal=OPERATOR,
                targets=LOCAL,
            )
    made = [
        await program_endpoint(sessions, program, f"http://127.0.0.1:9/{n}")
        for n in range(PROGRAM_ENDPOINTS_MAX)
    ]
    async with sessions() as session:
        with pytest.raises(TooManyEndpoints):
            await create_program_endpoint(
                session,
                program,
                ProgramEndpointSpec(url="http://127.0.0.1:9/one-more"),
                principal=OPERATOR,
                targets=LOCAL,
            )
        with pytest.raises(UnknownEventType):
            await update_program_endpoint(
                session,
                program,
                made[0].id,
                ProgramEndpointChange(event_types=["lead.offered"]),
                principal=OPERATOR,
                targets=LOCAL,
            )
        page = await list_program_endpoints(
            session, program, principal=OPERATOR, limit=PROGRAM_ENDPOINTS_MAX
        )
    assert {e.id for e in page.items} == {e.id for e in made}


async def test_a_programs_endpoints_and_its_partners_never_meet(
    sessions: Sessions, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program, other = await new_program(), await new_program()
    partner = await new_partner(program)
    own = await program_endpoint(sessions, program, "http://127.0.0.1:9/own")
    theirs = await new_endpoint(sessions, partner, "http://127.0.0.1:9/partner")
    bound = Principal(
        kind=PrincipalKind.OPERATOR,
        actor="key:other",
        scopes=OPERATOR.scopes,
        program_id=other.id,
    )
    async with sessions() as session:
        # A partner's reads (as the partner, and as the operator's view of it).
        assert [
            e.id for e in (await list_endpoints(session, principal=acting_for(partner))).items
        ] == [theirs.id]
        with pytest.raises(NotFound):
            await get_endpoint(session, own.id, principal=acting_for(partner))
        with pytest.raises(NotFound):
            await get_endpoint(session, own.id, principal=OPERATOR, partner_id=partner.id)
        # The program's reads.
        assert [
            e.id for e in (await list_program_endpoints(session, program, principal=OPERATOR)).items
        ] == [own.id]
        with pytest.raises(NotFound):
            await get_program_endpoint(session, program, theirs.id, principal=OPERATOR)
        # Another program's, and a key bound to another program.
        with pytest.raises(NotFound):
            await get_program_endpoint(session, other, own.id, principal=OPERATOR)
        with pytest.raises(NotFound):
            await get_program_endpoint(session, program, own.id, principal=bound)
        assert (await list_program_endpoints(session, other, principal=OPERATOR)).items == []


async def test_a_rotated_secret_and_the_one_before_both_sign_a_test_event(
    sessions: Sessions, http: HttpClients, new_program: NewProgram
) -> None:
    program = await new_program()
    async with receiver() as hooks:
        path = hooks.path()
        endpoint = await program_endpoint(sessions, program, hooks.url(path))
        async with sessions() as session, session.begin():
            rotated = await rotate_program_secret(
                session,
                program,
                endpoint.id,
                EndpointSecretRotation(overlap_seconds=3600),
                principal=OPERATOR,
            )
            test = await send_test_event(session, endpoint.id, principal=OPERATOR, own=program.id)
        assert await send_due(sessions, http) == 1
        [request] = hooks.at(path)
    for secret in (endpoint.secret, rotated.secret):
        assert Webhook(secret).verify(request.body, request.headers)["type"] == "webhook.test"
    async with sessions() as session:
        detail = await get_delivery(
            session, uuid.UUID(hex=test.id.removeprefix("msg_")), principal=OPERATOR, own=program.id
        )
        assert detail.status == "succeeded" and len(detail.attempt_log) == 1
        # Not a partner's delivery: the partners' reads do not find it.
        with pytest.raises(NotFound):
            await get_delivery(
                session, uuid.UUID(hex=test.id.removeprefix("msg_")), principal=OPERATOR
            )


async def test_an_endpoint_failing_for_five_days_is_disabled_without_a_partner_notice(
    sessions: Sessions, http: HttpClients, new_program: NewProgram
) -> None:
    program = await new_program()
    async with receiver() as hooks:
        path = hooks.path([Answer(500)])
        endpoint = await program_endpoint(sessions, program, hooks.url(path))
        await set_failing_since(sessions, endpoint.id, datetime.now(UTC) - timedelta(days=6))
        async with sessions() as session, session.begin():
            await send_test_event(session, endpoint.id, principal=OPERATOR, own=program.id)
        await send_due(sessions, http)
    async with sessions() as session:
        view = await get_program_endpoint(session, program, endpoint.id, principal=OPERATOR)
        notices = (
            await session.execute(
                select(partner_notices).where(partner_notices.c.program_id == program.id)
            )
        ).all()
        trail = (
            (
                await session.execute(
                    select(audit_events.c.action).where(
                        audit_events.c.subject
                        == f"program:{program.id}:webhook-endpoint:{endpoint.id}"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert view.status == "disabled" and view.disabled_reason
    assert notices == []
    assert "webhook-endpoint.disable" in trail
