"""Webhooks from the outbox to a real receiver on loopback: made once per
endpoint for committed events only, signed per Standard Webhooks (checked
with the package's own verifier, as a partner would), retried on the
schedule with the same webhook-id and a fresh timestamp, dead-lettered,
replayed, and an endpoint failing for five days disabled with one notice;
a slow endpoint delays no other."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks import Webhook

from api.modules import JOBS, SUBSCRIBERS
from core.audit import audit_events
from core.modules import JobContext
from core.outbox import BatchSubscriber, OutboxEvent, drain, emit, outbox_events
from ledger import Ledger
from partners import events, webhook_job, webhook_sending, webhook_targets
from partners.webhook_deliveries import make_deliveries, replay_delivery
from partners.webhook_endpoints import rotate_secret
from partners.webhook_models import RETRY_DELAYS, WebhookEndpoint, partner_notices
from partners.webhook_schemas import EndpointSecretRotation, message_id
from partners.webhook_sending import HttpClients, Sender, SendingOptions
from partners.webhook_verify import WebhookVerifier
from tests.conftest import NewProgram
from tests.partners.conftest import NewPartner
from tests.partners.receiver import Answer, receiver
from tests.partners.webhooks import (
    LOCAL,
    QUICK,
    Sessions,
    acting_for,
    attempts_of,
    deliveries_of,
    emit_event,
    fan_out_events,
    http,
    new_endpoint,
    no_stray_deliveries,
    send_due,
    sessions,
    set_failing_since,
)

__all__ = ["http", "no_stray_deliveries", "sessions"]

pytestmark = pytest.mark.usefixtures("no_stray_deliveries")


async def test_a_committed_event_is_delivered_signed_and_logged(
    sessions: Sessions, http: HttpClients, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    async with receiver() as hooks:
        path = hooks.path()
        endpoint = await new_endpoint(sessions, partner, hooks.url(path))
        event_id = await emit_event(sessions, partner, member="m-1")
        await fan_out_events(sessions)

        assert await send_due(sessions, http) == 1

        [request] = hooks.at(path)
    [delivery] = await deliveries_of(sessions, endpoint.id)
    assert (delivery.status, delivery.attempts, delivery.event_id) == ("succeeded", 1, event_id)
    assert request.headers["webhook-id"] == message_id(delivery.id)
    # As the partner checks it: the package's verifier, and the project's.
    payload = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert payload["type"] == events.POINTS_ISSUED
    assert payload["data"] == {"points": 100, "member": "m-1"}
    assert payload["timestamp"].endswith("Z")
    assert WebhookVerifier(endpoint.secret).verify(request.body, request.headers) == payload
    [attempt] = await attempts_of(sessions, delivery.id)
    assert (attempt.number, attempt.status_code, attempt.succeeded) == (1, 200, True)
    assert attempt.response_head == "ok" and attempt.latency_ms >= 0


async def test_a_change_that_rolled_back_makes_no_delivery(
    sessions: Sessions, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    endpoint = await new_endpoint(sessions, partner, "http://127.0.0.1:9/hooks")
    async with sessions() as session:
        await emit(session, events.POINTS_ISSUED, events.subject(partner.id), {"points": 1})
        await session.rollback()
    committed = await emit_event(sessions, partner, topic=events.POINTS_REFUNDED)

    await fan_out_events(sessions)

    assert [d.event_id for d in await deliveries_of(sessions, endpoint.id)] == [committed]


async def test_each_enabled_endpoint_taking_the_type_gets_one_delivery_however_often_fanned_out(
    sessions: Sessions, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    partner, other = await new_partner(program), await new_partner(program)
    every = await new_endpoint(sessions, partner, "http://127.0.0.1:9/every")
    accepted = await new_endpoint(
        sessions, partner, "http://127.0.0.1:9/accepted", event_types=[events.POINTS_ACCEPTED]
    )
    others = await new_endpoint(sessions, other, "http://127.0.0.1:9/other")
    issued = await emit_event(sessions, partner, topic=events.POINTS_ISSUED)
    await fan_out_events(sessions)
    # The fan-out of the same event again (a drain retried after its commit).
    async with sessions() as session, session.begin():
        again = OutboxEvent(
            id=issued,
            position=0,
            topic=events.POINTS_ISSUED,
            subject=events.subject(partner.id),
            payload={"points": 100},
            created_at=datetime.now(UTC),
        )
        await make_deliveries(session, [again, again])

    assert [d.event_id for d in await deliveries_of(sessions, every.id)] == [issued]
    assert await deliveries_of(sessions, accepted.id) == []
    assert await deliveries_of(sessions, others.id) == []


async def test_the_fan_out_ends_once_caught_up_while_events_keep_coming(
    sessions: Sessions, new_program: NewProgram, new_partner: NewPartner
) -> None:
    """A steady stream of events never holds the fan-out in one drain (the
    job's claims wait for it): the drain hands over what is due now, then
    ends."""
    partner = await new_partner(await new_program())
    await fan_out_events(sessions)
    await emit_event(sessions, partner)
    batches: list[int] = []

    async def streaming(session: AsyncSession, batch: Sequence[OutboxEvent]) -> None:
        await make_deliveries(session, batch)
        batches.append(len(batch))
        # Meanwhile another change commits its event.
        await emit_event(sessions, partner)

    handled = await drain(
        sessions,
        dict.fromkeys(events.TOPICS, BatchSubscriber(streaming)),
        datetime.now(UTC) + timedelta(seconds=1),
        limit=50,
    )

    assert (handled, batches) == (1, [1])
    assert await fan_out_events(sessions) == 1


def _steps(start: datetime) -> Iterator[datetime]:
    """Real times a minute apart, ending about now: each within the five
    minutes a receiver allows, each different."""
    return iter(start + timedelta(seconds=30 * n) for n in itertools.count())


async def test_a_failing_delivery_follows_the_schedule_to_the_dead_letter_then_is_replayed(
    sessions: Sessions, http: HttpClients, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    async with receiver() as hooks:
        script = [Answer(500), Answer(close=True), *[Answer(503)] * 6, Answer(200)]
        path = hooks.path(script)
        endpoint = await new_endpoint(sessions, partner, hooks.url(path))
        await emit_event(sessions, partner)
        await fan_out_events(sessions)
        [delivery] = await deliveries_of(sessions, endpoint.id)
        clock = _steps(datetime.now(UTC) - timedelta(minutes=4))
        at = datetime.now(UTC)

        for attempt, delay in enumerate(RETRY_DELAYS, start=1):
            sender = Sender(
                sessions,
                http,
                options=QUICK,
                policy=LOCAL,
                started=at,
                signing_clock=lambda: next(clock),
            )
            assert await sender.claim() == 1
            await sender.finish()
            [row] = await deliveries_of(sessions, endpoint.id)
            last = (await attempts_of(sessions, delivery.id))[-1]
            assert (row.status, row.attempts, last.number) == ("pending", attempt, attempt)
            assert row.next_attempt_at == last.attempted_at + delay
            # Not due a moment before its time.
            assert await send_due(sessions, http, row.next_attempt_at - timedelta(seconds=1)) == 0
            at = row.next_attempt_at
        sender = Sender(
            sessions,
            http,
            options=QUICK,
            policy=LOCAL,
            started=at,
            signing_clock=lambda: next(clock),
        )
        assert await sender.claim() == 1
        await sender.finish()
        [dead] = await deliveries_of(sessions, endpoint.id)
        assert (dead.status, dead.attempts, dead.next_attempt_at) == ("dead", 8, None)
        assert await send_due(sessions, http, at + timedelta(days=30)) == 0

        async with sessions() as session, session.begin():
            replayed = await replay_delivery(session, delivery.id, principal=acting_for(partner))
        assert replayed.status == "pending"
        assert await send_due(sessions, http) == 1
        requests = hooks.at(path)

    log = await attempts_of(sessions, delivery.id)
    assert [a.status_code for a in log] == [500, None, 503, 503, 503, 503, 503, 503, 200]
    assert "closed without an answer" in log[1].error
    [done] = await deliveries_of(sessions, endpoint.id)
    assert (done.status, done.attempts) == ("succeeded", 9)
    # One webhook-id throughout; each attempt signed afresh.
    assert {r.headers["webhook-id"] for r in requests} == {message_id(delivery.id)}
    stamps = [int(r.headers["webhook-timestamp"]) for r in requests[:8]]
    assert stamps == sorted(set(stamps)) and len(stamps) == 8
    for request in requests[:8]:
        assert Webhook(endpoint.secret).verify(request.body, request.headers)["data"]


async def test_a_timeout_is_a_failed_attempt_retried_later(
    sessions: Sessions, http: HttpClients, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    never = asyncio.Event()
    async with receiver() as hooks:
        path = hooks.path([Answer(hold=never)])
        endpoint = await new_endpoint(sessions, partner, hooks.url(path))
        await emit_event(sessions, partner)
        await fan_out_events(sessions)

        assert await send_due(sessions, http, options=SendingOptions(timeout=0.2)) == 1
        never.set()

    [delivery] = await deliveries_of(sessions, endpoint.id)
    [attempt] = await attempts_of(sessions, delivery.id)
    assert (attempt.succeeded, attempt.status_code) == (False, None)
    assert attempt.error == "no answer within 0.2 s"
    assert delivery.status == "pending"
    assert delivery.next_attempt_at == attempt.attempted_at + RETRY_DELAYS[0]


async def test_a_slow_endpoint_does_not_delay_another(
    sessions: Sessions, http: HttpClients, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    slow_partner, fast_partner = await new_partner(program), await new_partner(program)
    release = asyncio.Event()
    async with receiver() as hooks:
        slow_path, fast_path = hooks.path([Answer(hold=release)]), hooks.path()
        slow = await new_endpoint(sessions, slow_partner, hooks.url(slow_path))
        fast = await new_endpoint(sessions, fast_partner, hooks.url(fast_path))
        # The slow endpoint is already failing: it gets two calls at a time.
        await set_failing_since(sessions, slow.id, datetime.now(UTC) - timedelta(hours=1))
        for _ in range(5):
            await emit_event(sessions, slow_partner)
            await emit_event(sessions, fast_partner)
        await fan_out_events(sessions)
        options = SendingOptions(timeout=30, failing_slots=2)
        sender = Sender(sessions, http, options=options, policy=LOCAL, started=datetime.now(UTC))

        assert await sender.claim() == 7
        await hooks.until(fast_path, 5)
        await _until_answered(sender, 5)
        assert await sender.record(force=True) == 5
        # While the slow one's two calls hang, a claim takes none of its others.
        assert await sender.claim() == 0
        fast_rows = await deliveries_of(sessions, fast.id)
        slow_rows = await deliveries_of(sessions, slow.id)
        assert [d.status for d in fast_rows] == ["succeeded"] * 5
        assert [d.status for d in slow_rows] == ["pending"] * 5
        assert len(hooks.at(slow_path)) == 2
        release.set()
        await sender.finish()

    assert [d.status for d in await deliveries_of(sessions, slow.id)].count("succeeded") == 2


async def _until_answered(sender: Sender, count: int) -> None:
    """Until ``count`` calls have their outcome (the others hang)."""
    async with asyncio.timeout(30):
        while len(sender._outcomes) < count:
            await asyncio.wait(set(sender._tasks), return_when=asyncio.FIRST_COMPLETED)


async def test_a_sender_gone_mid_call_leaves_the_delivery_to_be_sent_again_with_its_id(
    sessions: Sessions, http: HttpClients, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    hang = asyncio.Event()
    async with receiver() as hooks:
        path = hooks.path([Answer(hold=hang), Answer(200)])
        endpoint = await new_endpoint(sessions, partner, hooks.url(path))
        await emit_event(sessions, partner)
        await fan_out_events(sessions)
        start = datetime.now(UTC)
        gone = Sender(sessions, http, options=QUICK, policy=LOCAL, started=start)
        assert await gone.claim() == 1
        await hooks.until(path, 1)
        # The worker dies: its call is cut, nothing of it is recorded.
        for task in list(gone._tasks):
            task.cancel()
        await asyncio.gather(*gone._tasks, return_exceptions=True)

        # Leased meanwhile: nobody sends it again before the lease ends.
        assert await send_due(sessions, http, start + timedelta(seconds=30)) == 0
        assert await send_due(sessions, http, start + QUICK.lease + timedelta(seconds=1)) == 1
        first, second = await hooks.until(path, 2)
        hang.set()

    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    [delivery] = await deliveries_of(sessions, endpoint.id)
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert [a.number for a in await attempts_of(sessions, delivery.id)] == [2]


async def test_during_a_rotation_each_delivery_carries_both_signatures(
    sessions: Sessions, http: HttpClients, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    async with receiver() as hooks:
        path = hooks.path()
        endpoint = await new_endpoint(sessions, partner, hooks.url(path))
        async with sessions() as session, session.begin():
            rotated = await rotate_secret(
                session,
                endpoint.id,
                EndpointSecretRotation(overlap_seconds=3600),
                principal=acting_for(partner),
            )
        await emit_event(sessions, partner)
        await fan_out_events(sessions)
        assert await send_due(sessions, http) == 1
        await emit_event(sessions, partner)
        await fan_out_events(sessions)
        # After the overlap, the new secret alone.
        assert await send_due(sessions, http, datetime.now(UTC) + timedelta(hours=2)) == 1
        during, after = hooks.at(path)

    assert rotated.secret != endpoint.secret
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    for secret in (endpoint.secret, rotated.secret):
        assert Webhook(secret).verify(during.body, during.headers)
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert Webhook(rotated.secret).verify(after.body, after.headers)
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(endpoint.secret).verify(after.body, after.headers)


async def _endpoint(sessions: Sessions, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    async with sessions() as session:
        found = await session.get(WebhookEndpoint, endpoint_id)
    assert found is not None
    return found


async def test_an_endpoint_failing_for_five_days_is_disabled_once_with_one_notice(
    sessions: Sessions, http: HttpClients, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    async with receiver() as hooks:
        path = hooks.path([Answer(500)])
        endpoint = await new_endpoint(sessions, partner, hooks.url(path))
        # After each event's commit (a delivery is due from its event's time).
        start = datetime.now(UTC) + timedelta(seconds=5)
        for day in (0, 4, 5, 5):
            await emit_event(sessions, partner)
            await fan_out_events(sessions)
            # A minute a day later, so that day 5 is past five days of failing.
            await send_due(sessions, http, start + timedelta(days=day, minutes=day))
            state = await _endpoint(sessions, endpoint.id)
            if day < 5:
                assert state.status == "enabled" and state.failing_since is not None
        await emit_event(sessions, partner)
        await fan_out_events(sessions)

    assert state.status == "disabled"
    assert state.disabled_reason == "disabled after 5 days of failed deliveries"
    rows = await deliveries_of(sessions, endpoint.id)
    # Due ones dead-lettered (to replay); none made once it is disabled.
    assert len(rows) == 3 and {d.status for d in rows} == {"dead"}
    async with sessions() as session:
        notices = (
            await session.execute(
                select(partner_notices).where(partner_notices.c.partner_id == partner.id)
            )
        ).all()
        lines = await session.scalar(
            select(func.count()).where(
                audit_events.c.action == "webhook-endpoint.disable",
                audit_events.c.subject.like(f"%{endpoint.id}"),
            )
        )
    assert len(notices) == 1 and lines == 1
    assert notices[0].kind == "webhook-endpoint-disabled"
    assert hooks.url(path) in notices[0].body


async def test_a_success_ends_a_run_of_failures(
    sessions: Sessions, http: HttpClients, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    async with receiver() as hooks:
        path = hooks.path([Answer(500), Answer(200), Answer(200), Answer(500)])
        endpoint = await new_endpoint(sessions, partner, hooks.url(path))
        start = datetime.now(UTC) + timedelta(seconds=5)
        for day in (0, 1, 6):
            await emit_event(sessions, partner)
            await fan_out_events(sessions)
            await send_due(sessions, http, start + timedelta(days=day))
            state = await _endpoint(sessions, endpoint.id)
            if day == 1:
                assert state.failing_since is None

    # Failing again since day 6 only: not five days of failures.
    assert state.status == "enabled"
    assert state.failing_since is not None
    assert state.failing_since >= start + timedelta(days=6)


async def test_the_job_hands_committed_events_to_the_fan_out_and_sends_them(
    sessions: Sessions,
    new_program: NewProgram,
    new_partner: NewPartner,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhook_job, "IDLE_SECONDS", 0.2)
    monkeypatch.setattr(webhook_targets, "_policy", LOCAL)
    partner = await new_partner(await new_program())
    async with receiver() as hooks:
        path = hooks.path()
        endpoint = await new_endpoint(sessions, partner, hooks.url(path))
        event_id = await emit_event(sessions, partner)
        context = JobContext(
            sessions=sessions, ledger=ledger, now=datetime.now(UTC), subscribers=SUBSCRIBERS
        )
        try:
            assert await JOBS["deliver-webhooks"].run(context) >= 1
        finally:
            await webhook_sending.http_clients().aclose()
        [request] = hooks.at(path)

    [delivery] = await deliveries_of(sessions, endpoint.id)
    assert (delivery.event_id, delivery.status) == (event_id, "succeeded")
    assert Webhook(endpoint.secret).verify(request.body, request.headers)
    async with sessions() as session:
        handled = await session.scalar(
            select(outbox_events.c.handled_at).where(outbox_events.c.id == event_id)
        )
    assert handled is not None


async def test_a_run_past_its_time_serves_others_while_a_slow_call_hangs(
    sessions: Sessions,
    new_program: NewProgram,
    new_partner: NewPartner,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run's time ends while a call hangs: the run goes on serving the
    other endpoints, and starts no new call to the hanging one."""
    monkeypatch.setattr(webhook_job, "RUN_SECONDS", 0.3)
    monkeypatch.setattr(webhook_targets, "_policy", LOCAL)
    program = await new_program()
    slow_partner, fast_partner = await new_partner(program), await new_partner(program)
    release = asyncio.Event()
    async with receiver() as hooks:
        slow_path, fast_path = hooks.path([Answer(hold=release), Answer(200)]), hooks.path()
        slow = await new_endpoint(sessions, slow_partner, hooks.url(slow_path))
        fast = await new_endpoint(sessions, fast_partner, hooks.url(fast_path))
        await emit_event(sessions, slow_partner)
        context = JobContext(
            sessions=sessions, ledger=ledger, now=datetime.now(UTC), subscribers=SUBSCRIBERS
        )
        run = asyncio.create_task(JOBS["deliver-webhooks"].run(context))
        try:
            await hooks.until(slow_path, 1)
            # Well past the run's time: it is winding down, the call still hangs.
            await asyncio.sleep(1.0)
            await emit_event(sessions, slow_partner)
            await emit_event(sessions, fast_partner)
            await hooks.until(fast_path, 1)
            assert not run.done()
            release.set()
            assert await run == 2
        finally:
            release.set()
            await asyncio.gather(run, return_exceptions=True)
            await webhook_sending.http_clients().aclose()
        assert len(hooks.at(slow_path)) == 1

    assert [d.status for d in await deliveries_of(sessions, fast.id)] == ["succeeded"]
    # The hanging endpoint's later delivery waits for the next run.
    assert [d.status for d in await deliveries_of(sessions, slow.id)] == ["succeeded", "pending"]


async def test_only_so_many_runs_of_the_job_work_at_once(
    sessions: Sessions, ledger: Ledger
) -> None:
    context = JobContext(sessions=sessions, ledger=ledger, now=datetime.now(UTC))
    async with sessions() as holder, holder.begin():
        for place in range(webhook_job.SENDERS_MAX):
            await holder.execute(
                text("SELECT pg_advisory_xact_lock(:locks, :place)"),
                {"locks": webhook_job._LOCKS, "place": place},
            )
        # Every place taken: a run scheduled meanwhile ends at once.
        assert await JOBS["deliver-webhooks"].run(context) == 0
