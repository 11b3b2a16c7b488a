"""A partner's webhook endpoints through their use cases: a secret shown once
and never audited, event types and URLs checked, another partner's
endpoint not found (and left as it was), disabling that dead-letters what
is due, enabling that forgets past failures, deletion with its log, and
replays of what was dead-lettered."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.audit import audit_events
from core.errors import NotFound
from core.pagination import decode_cursor
from core.principal import Principal, PrincipalKind
from partners import events
from partners.webhook_deliveries import (
    DeliveryNotReplayable,
    get_delivery,
    list_deliveries,
    replay_dead_since,
    replay_delivery,
    send_test_event,
)
from partners.webhook_endpoints import (
    TooManyEndpoints,
    UnknownEventType,
    delete_endpoint,
    get_endpoint,
    list_endpoints,
    rotate_secret,
    set_endpoint_status,
    update_endpoint,
)
from partners.webhook_models import EndpointStatus
from partners.webhook_schemas import (
    ENDPOINTS_MAX,
    EndpointChange,
    EndpointSecretRotation,
    ReplaySince,
    message_id,
)
from partners.webhook_sending import HttpClients, deliver_due
from partners.webhook_targets import TargetPolicy, WebhookUrlRefused, check_url, refused_target
from tests.conftest import NewProgram
from tests.partners.conftest import NewPartner
from tests.partners.receiver import Answer, receiver
from tests.partners.webhooks import (
    LOCAL,
    Sessions,
    acting_for,
    deliveries_of,
    emit_event,
    fan_out_events,
    http,
    new_endpoint,
    no_stray_deliveries,
    send_due,
    sessions,
)

__all__ = ["http", "no_stray_deliveries", "sessions"]

pytestmark = pytest.mark.usefixtures("no_stray_deliveries")

PUBLIC = TargetPolicy()


async def _row(session: AsyncSession, endpoint_id: object) -> dict[str, object]:
    found = await session.execute(
        text("SELECT to_jsonb(e) AS row FROM webhook_endpoints e WHERE id = :id"),
        {"id": endpoint_id},
    )
    return dict(found.one().row)


async def test_a_new_endpoint_answers_its_secret_once_and_the_trail_never_holds_it(
    sessions: Sessions, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    created = await new_endpoint(
        sessions,
        partner,
        "https://hooks.example.com/coalition",
        event_types=[events.POINTS_ISSUED, events.POINTS_ISSUED, events.POINTS_ACCEPTED],
        description="till system",
    )

    assert created.secret.startswith("whsec_")
    assert len(base64.b64decode(created.secret.removeprefix("whsec_"))) == 32
    assert created.event_types == sorted({events.POINTS_ISSUED, events.POINTS_ACCEPTED})
    async with sessions() as session:
        view = await get_endpoint(session, created.id, principal=acting_for(partner))
        trail = list(
            await session.scalars(
                select(audit_events.c.details).where(audit_events.c.subject.like(f"%{created.id}"))
            )
        )
    assert not hasattr(view, "secret") and view.status == "enabled"
    assert trail and not any(created.secret in str(line) for line in trail)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/",
        "https://127.0.0.1/",
        "https://10.1.2.3/",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://localhost:8443/",
        "https://api.internal/",
        "https://user:pass@hooks.example.com/",
        "https://hooks.example.com/#x",
        "ftp://hooks.example.com/",
        "https://hooks.example.com:99999/",
    ],
)
def test_urls_that_reach_inside_the_platform_are_refused_by_default(url: str) -> None:
    with pytest.raises(WebhookUrlRefused):
        check_url(url, PUBLIC)


def test_a_public_https_url_is_taken_and_a_private_one_where_allowed() -> None:
    assert check_url("https://hooks.example.com/x?y=1", PUBLIC) == "https://hooks.example.com/x?y=1"
    assert check_url("http://127.0.0.1:8080/x", LOCAL) == "http://127.0.0.1:8080/x"


async def test_at_sending_a_local_target_is_refused_and_nothing_sent(
    sessions: Sessions, http: HttpClients, new_program: NewProgram, new_partner: NewPartner
) -> None:
    assert await refused_target("https://localhost/", PUBLIC)
    assert await refused_target("https://[::1]/", PUBLIC)
    assert await refused_target("https://93.184.215.14/", PUBLIC) is None
    partner = await new_partner(await new_program())
    async with receiver() as hooks:
        path = hooks.path()
        # Saved while private targets were allowed; sent where they are not.
        endpoint = await new_endpoint(sessions, partner, hooks.url(path))
        await emit_event(sessions, partner)
        await fan_out_events(sessions)
        assert await deliver_due(sessions, http, datetime.now(UTC), policy=PUBLIC) == 1
        assert hooks.at(path) == []
    [delivery] = await deliveries_of(sessions, endpoint.id)
    async with sessions() as session:
        detail = await get_delivery(session, delivery.id, principal=acting_for(partner))
    assert detail.attempt_log[0].error is not None
    assert detail.attempt_log[0].error.startswith("not sent: 127.0.0.1 is not a public address")


async def test_unknown_event_types_and_too_many_endpoints_are_refused(
    sessions: Sessions, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    with pytest.raises(UnknownEventType, match=r"partner\.points_stolen"):
        await new_endpoint(
            sessions, partner, "https://hooks.example.com/", event_types=["partner.points_stolen"]
        )
    for n in range(ENDPOINTS_MAX):
        await new_endpoint(sessions, partner, f"https://hooks.example.com/{n}")
    with pytest.raises(TooManyEndpoints):
        await new_endpoint(sessions, partner, "https://hooks.example.com/one-more")


async def test_another_partners_endpoint_is_not_found_and_left_as_it_was(
    sessions: Sessions, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program()
    mine, theirs = await new_partner(program), await new_partner(program)
    endpoint = await new_endpoint(sessions, theirs, "https://hooks.example.com/theirs")
    await emit_event(sessions, theirs)
    await fan_out_events(sessions)
    [delivery] = await deliveries_of(sessions, endpoint.id)
    me = acting_for(mine)
    async with sessions() as session:
        before = await _row(session, endpoint.id)

    attempts: list[Callable[[AsyncSession], Awaitable[object]]] = [
        lambda s: get_endpoint(s, endpoint.id, principal=me),
        lambda s: update_endpoint(
            s, endpoint.id, EndpointChange(description="mine now"), principal=me, targets=PUBLIC
        ),
        lambda s: rotate_secret(s, endpoint.id, EndpointSecretRotation(), principal=me),
        lambda s: delete_endpoint(s, endpoint.id, principal=me),
        lambda s: list_deliveries(s, endpoint.id, principal=me),
        lambda s: get_delivery(s, delivery.id, principal=me),
        lambda s: replay_delivery(s, delivery.id, principal=me),
        lambda s: send_test_event(s, endpoint.id, principal=me),
        lambda s: replay_dead_since(
            s, endpoint.id, ReplaySince(since=datetime(2020, 1, 1, tzinfo=UTC)), principal=me
        ),
    ]
    for attempt in attempts:
        async with sessions() as session, session.begin():
            with pytest.raises(NotFound):
                await attempt(session)
        async with sessions() as session:
            listed = await list_endpoints(session, principal=me)
    assert listed.items == []
    async with sessions() as session:
        assert await _row(session, endpoint.id) == before
    # A client whose reach takes in the other firm (its group) sees it.
    async with sessions() as session:
        group = acting_for(mine, theirs)
        assert (await get_endpoint(session, endpoint.id, principal=group)).id == endpoint.id
    # An operator of another program does not.
    other = Principal(
        kind=PrincipalKind.OPERATOR, actor="key:x", program_id=(await new_program()).id
    )
    async with sessions() as session:
        with pytest.raises(NotFound):
            await get_endpoint(session, endpoint.id, principal=other)


async def test_lists_come_in_pages_newest_first(
    sessions: Sessions, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    made = [await new_endpoint(sessions, partner, f"https://h.example.com/{n}") for n in range(3)]
    async with sessions() as session:
        first = await list_endpoints(session, principal=acting_for(partner), limit=2)
        assert first.next_cursor is not None and decode_cursor(first.next_cursor)
        rest = await list_endpoints(
            session, principal=acting_for(partner), limit=2, cursor=first.next_cursor
        )
    assert [e.id for e in first.items + rest.items] == [e.id for e in reversed(made)]
    assert rest.next_cursor is None


async def test_disabling_dead_letters_what_is_due_and_enabling_forgets_past_failures(
    sessions: Sessions, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    endpoint = await new_endpoint(sessions, partner, "https://hooks.example.com/")
    await emit_event(sessions, partner)
    await fan_out_events(sessions)
    operator = Principal(
        kind=PrincipalKind.OPERATOR, actor="key:ops", program_id=partner.program_id
    )
    async with sessions() as session, session.begin():
        await session.execute(
            text("UPDATE webhook_endpoints SET failing_since = now() WHERE id = :id"),
            {"id": endpoint.id},
        )
        disabled = await set_endpoint_status(
            session,
            endpoint.id,
            EndpointStatus.DISABLED,
            principal=operator,
            partner_id=partner.id,
            reason="maintenance",
        )
    assert (disabled.status, disabled.disabled_reason) == ("disabled", "maintenance")
    assert [d.status for d in await deliveries_of(sessions, endpoint.id)] == ["dead"]
    await emit_event(sessions, partner)
    await fan_out_events(sessions)
    assert len(await deliveries_of(sessions, endpoint.id)) == 1
    async with sessions() as session, session.begin():
        with pytest.raises(DeliveryNotReplayable):
            await replay_dead_since(
                session,
                endpoint.id,
                ReplaySince(since=datetime(2020, 1, 1, tzinfo=UTC)),
                principal=acting_for(partner),
            )
    async with sessions() as session, session.begin():
        enabled = await update_endpoint(
            session,
            endpoint.id,
            EndpointChange(status="enabled"),
            principal=acting_for(partner),
            targets=PUBLIC,
        )
    assert (enabled.status, enabled.failing_since, enabled.disabled_at) == ("enabled", None, None)


async def test_replaying_dead_letters_since_a_date_sends_them_again_with_their_ids(
    sessions: Sessions, http: HttpClients, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    async with receiver() as hooks:
        path = hooks.path([Answer(200)])
        endpoint = await new_endpoint(sessions, partner, hooks.url(path))
        for _ in range(2):
            await emit_event(sessions, partner)
        await fan_out_events(sessions)
        async with sessions() as session, session.begin():
            await session.execute(
                text(
                    "UPDATE webhook_deliveries SET status = 'dead', next_attempt_at = NULL,"
                    " dead_at = now() WHERE endpoint_id = :id"
                ),
                {"id": endpoint.id},
            )
        async with sessions() as session, session.begin():
            count = await replay_dead_since(
                session,
                endpoint.id,
                ReplaySince(since=datetime.now(UTC) - timedelta(hours=1)),
                principal=acting_for(partner),
            )
        assert count == 2
        assert await send_due(sessions, http) == 2
        ids = {r.headers["webhook-id"] for r in hooks.at(path)}

    rows = await deliveries_of(sessions, endpoint.id)
    assert ids == {message_id(d.id) for d in rows}
    assert {d.status for d in rows} == {"succeeded"}


async def test_a_test_event_goes_to_that_endpoint_only(
    sessions: Sessions, http: HttpClients, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    async with receiver() as hooks:
        one, two = hooks.path(), hooks.path()
        endpoint = await new_endpoint(sessions, partner, hooks.url(one))
        await new_endpoint(sessions, partner, hooks.url(two))
        async with sessions() as session, session.begin():
            made = await send_test_event(session, endpoint.id, principal=acting_for(partner))
        assert await send_due(sessions, http) == 1
        [request] = hooks.at(one)
    assert hooks.at(two) == []
    assert request.headers["webhook-id"] == made.id
    assert b'"type":"webhook.test"' in request.body


async def test_deleting_an_endpoint_deletes_its_log(
    sessions: Sessions, new_program: NewProgram, new_partner: NewPartner
) -> None:
    partner = await new_partner(await new_program())
    endpoint = await new_endpoint(sessions, partner, "https://hooks.example.com/")
    await emit_event(sessions, partner)
    await fan_out_events(sessions)
    async with sessions() as session, session.begin():
        await delete_endpoint(session, endpoint.id, principal=acting_for(partner))
    assert await deliveries_of(sessions, endpoint.id) == []
    async with sessions() as session:
        with pytest.raises(NotFound):
            await get_endpoint(session, endpoint.id, principal=acting_for(partner))
