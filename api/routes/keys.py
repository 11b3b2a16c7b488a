"""The operator API of API keys: issue (the key shown once), list, revoke.
Every change is audited under the operator who made it; a re-issue (the
issue's request repeated a moment later, see ``api.access.issue_key``)
answers that issue again, and its line stands.

A caller grants at most the scopes and the tenant it holds itself: a key
that may manage keys cannot mint one stronger than itself, and a key bound
to a program issues, lists and revokes only keys of that program.
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
    REISSUE_WINDOW,
    SCOPES,
    Gatekeeper,
    IssuedKey,
    KeyBeyondIssuer,
    KeyNameTaken,
    KeyRefused,
    KeyView,
    issue_key,
    list_keys,
    operator,
    require_scope,
    revoke_key,
)
from api.problems import not_found, problem, problem_responses
from api.routes import OPERATOR_CREATE, OPERATOR_DELETE, OPERATOR_LIST
from ledger.bounds import Text100
from rewards.connections import session_connection
from rewards.programs import SLUG_PATTERN

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
    program: (
        Annotated[
            str,
            msgspec.Meta(
                pattern=SLUG_PATTERN,
                description="The slug of the one program the key may act in; left out: the"
                " caller's own program, or every program for a caller of the whole platform."
                " A caller bound to a program can name only that one.",
                examples=["shop"],
            ),
        ]
        | None
    ) = None


def _refused(error: KeyRefused) -> ProblemDetailsException:
    if isinstance(error, KeyBeyondIssuer):
        return problem(HTTPStatus.FORBIDDEN, "forbidden", str(error))
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
        description="Issues a key with the scopes asked for, bound to a program if asked"
        " (or if the caller is); the key is in this answer only (the server keeps its"
        " hash). Unknown scopes or none: 422 naming `scopes`; a scope the caller lacks:"
        " 403; a name already used: 409 naming `name`; a program that is not there, or"
        " not the caller's: 422 naming `program`."
        "\n\nA retry after a lost answer cannot be shown the key again. So the same"
        " request again (same name, scopes and program, from the same caller) within"
        f" {REISSUE_WINDOW.seconds // 60} minutes of the key's issue re-issues that key:"
        " 201 with the same `id` and `name`, a fresh key and `prefix`, and `reissued` true;"
        " the key answered before stops working at once on this server, and within"
        f" {CACHE_SECONDS:.0f} s on every other. Later, or with any field changed, the name"
        " is taken: 409.",
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
            issued = await issue_key(
                await session_connection(db_session),
                data.name,
                data.scopes,
                data.program,
                principal=principal,
            )
        except KeyRefused as error:
            raise _refused(error) from None
        if issued.reissued:
            # The issue's audit line stands (who issued which key, with what):
            # a re-issue answers the same request again, as a replay does.
            # Committed before this server forgets the earlier secret, so that
            # no request can verify it again in between and be trusted a while.
            await db_session.commit()
            gatekeeper: Gatekeeper = request.app.state.gatekeeper
            gatekeeper.forget(issued.name)
            return issued
        return issued

    @get(
        "/",
        summary="List API keys",
        description="Every key issued, active and revoked, oldest first: names, prefixes,"
        " scopes, programs and dates, never a secret. A caller bound to a program sees"
        " the keys of that program only.",
        responses=problem_responses(*OPERATOR_LIST),
    )
    async def list_all(
        self, request: Request[Any, Any, Any], db_session: NamedDependency[AsyncSession]
    ) -> list[KeyView]:
        return await list_keys(await session_connection(db_session), principal=operator(request))

    @delete(
        "/{name:str}",
        summary="Revoke an API key",
        description="The key stops working at once on this server, and within"
        f" {CACHE_SECONDS:.0f} s on every other. A name with no active key (or, for a"
        " caller bound to a program, none of that program): 404.",
        status_code=HTTPStatus.NO_CONTENT,
        responses=problem_responses(*OPERATOR_DELETE),
    )
    async def revoke(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        name: KeyNamePath,
    ) -> None:
        principal = operator(request)
        if not await revoke_key(await session_connection(db_session), name, principal=principal):
            raise not_found(f"an active API key named {name!r}")
        # Committed before this server forgets the key, so that no request
        # can verify it again in between and be trusted for a while more.
        await db_session.commit()
        gatekeeper: Gatekeeper = request.app.state.gatekeeper
        gatekeeper.forget(name)
