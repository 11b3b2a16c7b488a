"""A test app: the real app with a probe of the partner API mounted under
``/partner/probe`` behind the real partner middleware (token, rate limit,
Idempotency-Key) and guards, for the tests of that machinery.

- ``GET /partner/probe`` (statements:read): who the token is.
- ``POST /partner/probe/notes`` (points:issue): writes an audit line in the
  request's transaction and answers a fresh id; ``outcome`` makes it refuse
  (422), conflict (409) or fail (500). A note named in ``HELD`` waits for
  its gate first (a request in flight for as long as a test needs).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any, Literal

import msgspec
from litestar import Controller, Litestar, Request, Router, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from api.app import create_app
from api.idempotency import IdempotencyKeyHeader
from api.partner_access import partner, partner_middleware, partner_scope, partner_security
from api.settings import Settings
from core import audit
from core.errors import ConcurrentChange, DomainError, ErrorKind
from tests.api.conftest import ADMIN_TOKEN, SIGNING_SECRET

#: Note -> (entered, gate): a note's request sets ``entered`` and then
#: waits for ``gate`` (threading events: whatever loop each side runs on).
HELD: dict[str, tuple[threading.Event, threading.Event]] = {}


class ProbeRefused(DomainError):
    type_slug = "probe-refused"
    kind = ErrorKind.INVALID


class Note(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    note: str
    outcome: Literal["ok", "refused", "conflict", "fail"] = "ok"


class ProbeController(Controller):
    path = "/probe"

    @get(
        "/", guards=[partner_scope("statements:read")], security=partner_security("statements:read")
    )
    async def whoami(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        principal = partner(request)
        return {
            "actor": principal.actor,
            "program_id": str(principal.program_id),
            "partner_id": str(principal.partner_id),
            "partner_ids": sorted(str(p) for p in principal.partner_ids),
            "scopes": sorted(principal.scopes),
        }

    @post(
        "/notes",
        status_code=201,
        guards=[partner_scope("points:issue")],
        security=partner_security("points:issue"),
    )
    async def note(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[Note],
        idempotency_key: IdempotencyKeyHeader,
    ) -> dict[str, str]:
        held = HELD.get(data.note)
        if held is not None:
            entered, gate = held
            entered.set()
            await asyncio.to_thread(gate.wait, 30)
        principal = partner(request)
        await audit.record(db_session, principal, "probe.note", f"probe:{data.note}", {"k": 1})
        if data.outcome == "refused":
            raise ProbeRefused(f"the probe refuses {data.note!r}")
        if data.outcome == "conflict":
            raise ConcurrentChange("the probe met another request")
        if data.outcome == "fail":
            raise RuntimeError("the probe fails")
        return {"note": data.note, "id": str(uuid.uuid4())}


def probe_app(database_url: str, **settings: Any) -> Litestar:
    app = create_app(
        Settings(
            admin_token=ADMIN_TOKEN, sweep_interval=0, signing_secret=SIGNING_SECRET, **settings
        ),
        database_url=database_url,
    )
    app.register(
        Router(path="/partner", route_handlers=[ProbeController], middleware=[partner_middleware])
    )
    return app
