"""Partner tokens for tests: a client made for a partner firm (through the
use case, or the operator API), and a bearer header from the real token
endpoint.

    headers = await partner_bearer(client, session, program, partner)
    await client.post("/partner/...", json=..., headers={**headers, "Idempotency-Key": ...})

``client`` is a test client of an app with a signing secret (the ``client``
fixture of tests/api/conftest.py); its own Authorization header is replaced
by the partner's in ``headers``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from core.principal import Reach, system
from partners.client_schemas import ClientSpec, IssuedClient
from partners.clients import create_client
from partners.models import Partner
from partners.module import PARTNER_SCOPES

Client = AsyncTestClient[Litestar]

_names = itertools.count(1)


async def new_client(
    session: AsyncSession,
    program: Program,
    partner: Partner,
    *,
    scopes: Iterable[str] | None = None,
    reach: Reach = Reach.COMPANY,
) -> IssuedClient:
    """A client of the firm, committed; every partner scope unless named."""
    spec = ClientSpec(
        name=f"test-client-{next(_names)}",
        scopes=sorted(scopes if scopes is not None else PARTNER_SCOPES),
        reach=reach,
    )
    issued = await create_client(session, program, partner, spec, principal=system("test"))
    await session.commit()
    return issued


async def token_of(
    client: Client, client_id: str, secret: str, *, scope: str | None = None
) -> dict[str, Any]:
    """The token endpoint's answer for the client (asserted 200)."""
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    if scope is not None:
        form["scope"] = scope
    response = await client.post("/oauth/token", data=form)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def partner_bearer(
    client: Client,
    session: AsyncSession,
    program: Program,
    partner: Partner,
    *,
    scopes: Iterable[str] | None = None,
    reach: Reach = Reach.COMPANY,
) -> dict[str, str]:
    """A bearer header of a new client of the firm, from /oauth/token."""
    issued = await new_client(session, program, partner, scopes=scopes, reach=reach)
    answer = await token_of(client, issued.client_id, issued.client_secret)
    return bearer(answer["access_token"])


async def api_partner_bearer(
    client: Client,
    program: str,
    partner: str,
    *,
    scopes: Iterable[str] | None = None,
    reach: Reach = Reach.COMPANY,
) -> dict[str, str]:
    """``partner_bearer`` by slugs, the client made through the operator API
    (``client`` bears the admin token)."""
    made = await client.post(
        f"/programs/{program}/partners/{partner}/clients",
        json={
            "name": f"test-client-{next(_names)}",
            "scopes": sorted(scopes if scopes is not None else PARTNER_SCOPES),
            "reach": str(reach),
        },
    )
    assert made.status_code == 201, made.text
    issued = made.json()
    answer = await token_of(client, issued["client_id"], issued["client_secret"])
    return bearer(answer["access_token"])
