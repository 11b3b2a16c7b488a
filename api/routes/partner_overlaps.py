"""The partner API of overlap matching under a data-sharing agreement
(docs/overlap-matching.md): the agreement's key of its epoch (for lists the
partner hashes itself) and its rotation, uploads of a list, matches and
their results. An agreement the partner is no party to is not found (404),
as one that does not exist; so are the other party's uploads and runs.
Each handler parses, calls one use case (``partners.data_sharing.overlap``,
``overlap_runs``) and renders."""

from __future__ import annotations

from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter
from sqlalchemy.ext.asyncio import AsyncSession

from api.idempotency import IdempotencyKeyHeader
from api.partner_access import PARTNER_WRITE, partner, partner_scope, partner_security
from api.problems import problem_responses
from partners.data_sharing import overlap, overlap_runs
from partners.data_sharing.identifiers import IdentifierKind
from partners.data_sharing.overlap_models import HashedBy, MatchMode, ResultKind
from partners.data_sharing.overlap_schemas import (
    OverlapKeyView,
    RunRequest,
    RunView,
    UploadRequest,
    UploadView,
)

SCOPE = "data:match"

AgreementIdPath = Annotated[UUID, PathParameter(description="The agreement's id.")]
UploadIdPath = Annotated[UUID, PathParameter(description="The upload's id.")]
RunIdPath = Annotated[UUID, PathParameter(description="The run's id.")]

#: A read under an agreement: not in force answers 409.
IN_FORCE_READ = (400, 401, 403, 404, 409, 429, 503)

UPLOAD_DESCRIPTION = (
    "The partner's list for the agreement, under its current key epoch; the latest upload is"
    " the one matched. hashed_by platform: identifiers in the clear, normalised (e-mail"
    " lower-cased, phone to E.164, domain stripped to its host) and hashed with HMAC-SHA256"
    " under the epoch's key; the platform keeps only the hashes, segment labels and the"
    " fields the agreement shares, and sees the identifiers while it hashes them. hashed_by"
    " partner: 64-hex-digit digests made with the key of `GET .../overlap-key`; the platform"
    " never sees an identifier. A record is known by its position. Refused, nothing"
    " written: 422 invalid-overlap-list (a field the agreement does not share, a digest that"
    " is not 64 hex digits, another key epoch), 409 data-sharing-agreement-not-in-force."
)
RUN_DESCRIPTION = (
    "Matches your latest list against the other partner's (both of the current key epoch)."
    " counts: distinct matched identifiers by segment of your list; a group below the"
    " agreement's min_group_size is never shown, nor a total that would reveal it."
    " overlaps (keyed_hash only, when the agreement sends the other's data to you): your"
    " matched positions and the other's shared fields, nothing below min_group_size; each"
    " matched record is written to the disclosure log. A count query whose counted records"
    " differ from an earlier one's by fewer than min_group_size (but not zero) is refused:"
    " 409 overlap-query-refused (the difference attack), also once the agreement's budget"
    " of count queries is spent. Also 409 overlap-list-missing, 403"
    " data-sharing-not-a-recipient, 422 invalid-overlap-run."
)


class PartnerOverlapController(Controller):
    path = "/data-sharing/agreements/{agreement_id:uuid}"
    tags = ["overlap matching"]
    guards = [partner_scope(SCOPE)]
    security = partner_security(SCOPE)

    @get(
        "/overlap-key",
        summary="The agreement's HMAC key of its current epoch",
        description="For lists the partner hashes itself (hashed_by partner): HMAC-SHA256 of"
        " each normalised identifier under this key. Both parties get the same key; the"
        " platform holds it too. Each fetch is in the audit trail. Not in force: 409.",
        responses=problem_responses(*IN_FORCE_READ),
    )
    async def key(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        agreement_id: AgreementIdPath,
    ) -> OverlapKeyView:
        epoch, key = await overlap.partner_key(
            db_session, partner(request), agreement_id, datetime.now(UTC)
        )
        return OverlapKeyView(key_epoch=epoch, hmac_key=key.hex())

    @post(
        "/overlap-key/rotations",
        status_code=HTTPStatus.CREATED,
        summary="Rotate the agreement's overlap key (a new epoch)",
        description="A new key of the next epoch: lists uploaded before no longer match, both"
        " partners upload again. Not in force: 409.",
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def rotate(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        agreement_id: AgreementIdPath,
    ) -> OverlapKeyView:
        principal = partner(request)
        now = datetime.now(UTC)
        await overlap.rotate_key(db_session, principal, agreement_id, now)
        epoch, key = await overlap.partner_key(db_session, principal, agreement_id, now)
        return OverlapKeyView(key_epoch=epoch, hmac_key=key.hex())

    @post(
        "/overlap-uploads",
        status_code=HTTPStatus.CREATED,
        summary="Upload a list for overlap matching",
        description=UPLOAD_DESCRIPTION,
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def upload(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        agreement_id: AgreementIdPath,
        data: JSONBody[UploadRequest],
    ) -> UploadView:
        made = await overlap.upload_list(
            db_session,
            partner(request),
            agreement_id,
            IdentifierKind(data.identifier_kind),
            overlap.records_of(data),
            hashed_by=HashedBy(data.hashed_by),
            now=datetime.now(UTC),
            default_region=data.default_region,
            key_epoch=data.key_epoch,
        )
        return overlap.upload_view(made)

    @get(
        "/overlap-uploads/{upload_id:uuid}",
        summary="One of the partner's uploads for overlap matching",
        responses=problem_responses(*IN_FORCE_READ),
    )
    async def show_upload(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        agreement_id: AgreementIdPath,
        upload_id: UploadIdPath,
    ) -> UploadView:
        found = await overlap.get_upload(db_session, partner(request), agreement_id, upload_id)
        return overlap.upload_view(found)

    @post(
        "/overlap-runs",
        status_code=HTTPStatus.CREATED,
        summary="Match your list against the other partner's",
        description=RUN_DESCRIPTION,
        responses=problem_responses(*PARTNER_WRITE),
    )
    async def run(
        self,
        request: Request[Any, Any, Any],
        idempotency_key: IdempotencyKeyHeader,
        db_session: NamedDependency[AsyncSession],
        agreement_id: AgreementIdPath,
        data: JSONBody[RunRequest],
    ) -> RunView:
        made = await overlap_runs.run_match(
            db_session,
            partner(request),
            agreement_id,
            mode=MatchMode(data.mode),
            result_kind=ResultKind(data.result),
            now=datetime.now(UTC),
            segment_filter=data.segments,
        )
        return await overlap_runs.view_of(db_session, made)

    @get(
        "/overlap-runs/{run_id:uuid}",
        summary="A match's result, read again",
        description="Only the partner that ran it sees it, and only while the agreement is in"
        " force (409 else); an overlaps result read again is logged again as a disclosure.",
        responses=problem_responses(*IN_FORCE_READ),
    )
    async def show_run(
        self,
        request: Request[Any, Any, Any],
        db_session: NamedDependency[AsyncSession],
        agreement_id: AgreementIdPath,
        run_id: RunIdPath,
    ) -> RunView:
        return await overlap_runs.show_run(
            db_session, partner(request), agreement_id, run_id, datetime.now(UTC)
        )
