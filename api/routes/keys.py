"""The operator API of API keys: issue (the key shown once), list, revoke.
Every change is audited under the operator who made it.

A caller grants at most the scopes it holds itself: a key that may manage
keys cannot mint one stronger than itself.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from litestar.plugins.problem_details import ProblemDetailsException
from sqlalchemy.ext.asyncio import AsyncSession

from api.access import (
    CACHE_SECONDS,
    KEY_NAME_PATTERN,
    SCOPES,
    Gatekeeper,
    IssuedKey,
    KeyNameTaken,
    KeyRefused,
    KeyView,
    check_scopes,
    issue_key,
    list_keys,
    operator,
    require_scope,
    revoke_key,
)
from api.problems import not_found, problem, problem_responses
from api.routes import OPERATOR_CREATE, OPERATOR_DELETE, OPERATOR_LIST
from core import audit
from ledger.bounds import Text100
from rewards.connections import session_connection

#: More scopes than there are, so that a list of every one fits.
MAX_SCOPES = 64

KeyNamePath = Annotated[
    str,
    PathParameter(
        description="The key's name, as it was issued.", pattern=KEY_NAME_PATTERN, max_length=100
    ),
]


class KeyRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[
        str,
        msgspec.Meta(
            pattern=KEY_NAME_PATTERN,
            max_length=100,
            description="The key's name, its actor in the audit trail (`key:<name>`): 1 to"
            " 100 letters, digits, '.', '_' or '-'. A name is never given to a second key,"
            " even after the first is revoked.",
            examples=["reporting"],
        ),
    ]
    scopes: Annotated[
        list[Text100],
        msgspec.Meta(
            max_length=MAX_SCOPES,
            description="The scopes to grant, at least one, each held by the caller: "
            + " ".join(f"`{scope}`: {grants}" for scope, grants in sorted(SCOPES.items())),
            examples=[["ledger:read"]],
        ),
    ]


def _refused(error: KeyRefused) -> ProblemDetailsException:
    if isinstance(error, KeyNameTaken):
        status, slug = HTTPStatus.CONFLICT, "api-key-name-taken"
    else:
        status, slug = HTTPStatus.UNPROCESSABLE_ENTITY, "invalid-api-key"
    field_error = {"message": str(error), "key": error.field, "source": "body"}
    return problem(status, slug, str(error), extra={"errors": [field_error]})


class KeyController(Controller):
    path = "/api-keys"
    tags = ["operations"]
    guards = [require_scope("keys:manage")]

    @post(
        "/",
        summary="Issue an API key",
        description="Issues a key with the scopes asked for; the key is in this answer"
        " only (the server keeps its hash). Unknown scopes or none: 422 naming `scopes`;"
        " a scope the caller lacks: 403; a name already used: 409 naming `name`.",
        status_code=HTTPStatus.CREATED,
        responses=problem_responses(*OPERATOR_CREATE),
    )
    async def issue(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        data: JSONBody[KeyRequest],
    ) -> IssuedKey:
        principal = operator(request)
        try:
            wanted = check_scopes(data.scopes)
            if lacking := [scope for scope in wanted if not principal.allows(scope)]:
                raise problem(
                    HTTPStatus.FORBIDDEN,
                    "forbidden",
                    f"scopes: this credential cannot grant {', '.join(lacking)}, which it lacks",
                )
            issued = await issue_key(await session_connection(db_session), data.name, wanted)
        except KeyRefused as error:
            raise _refused(error) from None
        await audit.record(
            db_session,
            principal,
            "api-key.issue",
            f"api-key:{issued.name}",
            {"id": str(issued.id), "prefix": issued.prefix, "scopes": issued.scopes},
        )
        return issued

    @get(
        "/",
        summary="List API keys",
        description="Every key issued, active and revoked, oldest first: names, prefixes,"
        " scopes and dates, never a secret.",
        responses=problem_responses(*OPERATOR_LIST),
    )
    async def list_all(self, db_session: NamedDependency[AsyncSession]) -> list[KeyView]:
        return await list_keys(await session_connection(db_session))

    @delete(
        "/{name:str}",
        summary="Revoke an API key",
        description="The key stops working at once on this server, and within"
        f" {CACHE_SECONDS:.0f} s on every other. A name with no active key: 404.",
        status_code=HTTPStatus.NO_CONTENT,
        responses=problem_responses(*OPERATOR_DELETE),
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        name: KeyNamePath,
    ) -> None:
        if not await revoke_key(await session_connection(db_session), name):
            raise not_found(f"an active API key named {name!r}")
        await audit.record(db_session, operator(request), "api-key.revoke", f"api-key:{name}")
        # Committed before this server forgets the key, so that no request
        # can verify it again in between and be trusted for a while more.
        await db_session.commit()
        gatekeeper: Gatekeeper = request.app.state.gatekeeper
        gatekeeper.forget(name)
