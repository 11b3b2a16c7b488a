"""A match of the caller's list against the other partner's, its result
shown only by the agreement's rules, and the difference-attack budget of
count queries (the rule is in ``partners.data_sharing.overlap``'s
docstring and docs/overlap-matching.md).

What a result shows:

- ``overlaps`` (keyed hashes only; the caller must receive the other's data
  under the agreement's direction): the caller's positions that matched
  and, for each, the other's record fields the agreement shares; nothing
  (not even the count) when fewer than ``min_group_size`` matched.
- ``counts`` (keyed hashes or PSI): the number of distinct matched
  identifiers per segment of the caller's list (records with no segment
  form one group); a group below ``min_group_size`` is left out, and the
  total is shown only if nothing was left out or what was left out adds up
  to at least ``min_group_size`` (else the total minus the shown groups
  would give the hidden ones).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.principal import Principal
from ledger import new_id
from partners.acting import partner_of
from partners.data_sharing import overlap_hmac, overlap_psi
from partners.data_sharing.agreements import agreement_in_force
from partners.data_sharing.disclosures import record_disclosure
from partners.data_sharing.errors import NotARecipient
from partners.data_sharing.models import DataSharingAgreement, DisclosureChannel
from partners.data_sharing.overlap import (
    NO_SEGMENT,
    epoch_key,
    latest_upload,
    population,
)
from partners.data_sharing.overlap_budget import ListSide, check_budget, read_side
from partners.data_sharing.overlap_errors import (
    InvalidOverlapRun,
    OverlapRunNotFound,
)
from partners.data_sharing.overlap_models import (
    MatchMode,
    OverlapCountQuery,
    OverlapRun,
    ResultKind,
    overlap_psi_setups,
    overlap_record_fields,
)
from partners.data_sharing.overlap_schemas import Counts, Match, Overlaps, RunView

#: The group of the records that carry no segment label.
UNSEGMENTED = ""


def _label(side: ListSide, position: int) -> str:
    code = side.codes[position]
    return UNSEGMENTED if code == NO_SEGMENT else side.upload.segments[code]


def _suppress(groups: dict[str, int], minimum: int) -> dict[str, Any]:
    shown = {label: n for label, n in sorted(groups.items()) if n >= minimum}
    hidden = sum(n for label, n in groups.items() if label not in shown)
    total = sum(groups.values())
    nothing_hidden = len(shown) == len(groups)
    show_total = total >= minimum and (nothing_hidden or hidden >= minimum)
    return {
        "total": total if show_total else None,
        "segments": {label: n for label, n in shown.items() if label != UNSEGMENTED},
        "unsegmented": shown.get(UNSEGMENTED),
        "suppressed_groups": len(groups) - len(shown),
    }


# -- matching -----------------------------------------------------------------


def _hash_counts(
    own: ListSide, matched: set[bytes], segment_filter: list[str] | None
) -> dict[str, int]:
    """The matched identifiers (of the filtered population) by group: an
    identifier counts in the group of its first record in the caller's
    list among the filtered ones."""
    if not own.upload.segments:
        return {UNSEGMENTED: len(matched)}
    wanted = None if segment_filter is None else set(segment_filter)
    groups: dict[str, int] = dict.fromkeys(
        sorted(wanted) if wanted is not None else own.upload.segments, 0
    )
    counted: set[bytes] = set()
    for position, digest in enumerate(overlap_hmac.split_digests(own.digests)):
        if digest not in matched or digest in counted:
            continue
        label = _label(own, position)
        if wanted is not None and label not in wanted:
            continue
        counted.add(digest)
        groups[label] = groups.get(label, 0) + 1
    return groups


async def _psi_setup(
    session: AsyncSession, agreement: DataSharingAgreement, psi_key: bytes, other: ListSide
) -> bytes:
    """The other list's setup message under the epoch's key: from the cache,
    else made and cached."""
    cached = await session.scalar(
        select(overlap_psi_setups.c.setup).where(
            overlap_psi_setups.c.upload_id == other.upload.id,
            overlap_psi_setups.c.key_epoch == agreement.key_epoch,
        )
    )
    if cached is not None:
        return bytes(cached)
    items = sorted(d.hex() for d in population(other.digests, other.codes, [], None))
    setup = overlap_psi.server_setup(psi_key, items)
    await session.execute(
        insert(overlap_psi_setups)
        .values(
            upload_id=other.upload.id,
            key_epoch=agreement.key_epoch,
            agreement_id=agreement.id,
            setup=setup,
        )
        .on_conflict_do_nothing()
    )
    return setup


async def _psi_counts(
    session: AsyncSession,
    agreement: DataSharingAgreement,
    own: ListSide,
    other: ListSide,
    segment_filter: list[str] | None,
) -> dict[str, int]:
    """PSI run by the platform for both partners (the on-behalf mode): the
    other's list is the server, each group of the caller's list one client
    request against the same cached setup."""
    key = await epoch_key(session, agreement)
    setup = await _psi_setup(session, agreement, key.psi_key, other)
    groups: dict[str, set[str]] = {}
    if segment_filter is not None:
        groups = {label: set() for label in segment_filter}
    for position, digest in enumerate(overlap_hmac.split_digests(own.digests)):
        if digest == overlap_hmac.UNMATCHABLE:
            continue
        label = _label(own, position)
        if segment_filter is not None and label not in groups:
            continue
        groups.setdefault(label, set()).add(digest.hex())
    counts: dict[str, int] = {}
    seen: set[str] = set()
    for label, items in sorted(groups.items()):
        fresh = sorted(items - seen)  # an identifier counts in its first group
        seen |= items
        counts[label] = (
            overlap_psi.count_intersection(key.psi_key, [], fresh, cached_setup=setup).count
            if fresh
            else 0
        )
    return counts


async def run_match(
    session: AsyncSession,
    principal: Principal,
    agreement_id: uuid.UUID,
    *,
    mode: MatchMode,
    result_kind: ResultKind,
    now: datetime,
    segment_filter: list[str] | None = None,
) -> OverlapRun:
    """Match the caller's latest list against the other partner's (both of
    the agreement's current key epoch), record the run, what it showed and
    the disclosure."""
    _, partner_id = partner_of(principal)
    agreement = await agreement_in_force(session, agreement_id, partner_id, now)
    if mode is MatchMode.PSI and result_kind is ResultKind.OVERLAPS:
        raise InvalidOverlapRun("PSI matching counts only: ask for counts")
    if result_kind is ResultKind.OVERLAPS and not agreement.receives(partner_id):
        raise NotARecipient("the agreement's direction does not send the other's data to you")
    other_id = agreement.other(partner_id)
    own = await read_side(session, await latest_upload(session, agreement, partner_id, mine=True))
    other = await read_side(session, await latest_upload(session, agreement, other_id, mine=False))
    if own.upload.identifier_kind != other.upload.identifier_kind:
        raise InvalidOverlapRun(
            f"your list holds {own.upload.identifier_kind} identifiers and the other's"
            f" {other.upload.identifier_kind}: they cannot match"
        )
    if segment_filter is not None:
        unknown = sorted(set(segment_filter) - set(own.upload.segments))
        if unknown:
            raise InvalidOverlapRun(f"your list has no segment {', '.join(unknown)}")
    minimum = agreement.min_group_size
    run = OverlapRun(
        id=new_id(),
        program_id=agreement.program_id,
        agreement_id=agreement.id,
        partner_id=partner_id,
        own_upload_id=own.upload.id,
        other_upload_id=other.upload.id,
        key_epoch=agreement.key_epoch,
        mode=mode.value,
        result_kind=result_kind.value,
        segment_filter=segment_filter,
        min_group_size=minimum,
    )
    if result_kind is ResultKind.OVERLAPS:
        match = overlap_hmac.match_lists(own.digests, other.digests)
        run.matched = match.count
        visible = match.count >= minimum
        run.shown = {"records": match.count if visible else None}
        run.own_positions = match.left if visible else None
        run.other_positions = match.right if visible else None
        session.add(run)
        await session.flush()
        if visible:
            await _disclose_overlaps(
                session, agreement, partner_id, other.upload.id, match.right, run, now
            )
    else:
        repeat, own_population, other_population = await check_budget(
            session, agreement, partner_id, own, other, segment_filter
        )
        if mode is MatchMode.PSI:
            groups = await _psi_counts(session, agreement, own, other, segment_filter)
        else:
            groups = _hash_counts(own, own_population & other_population, segment_filter)
        run.matched = sum(groups.values())
        run.shown = _suppress(groups, minimum)
        session.add(run)
        await session.flush()
        if not repeat:
            session.add(
                OverlapCountQuery(
                    agreement_id=agreement.id,
                    partner_id=partner_id,
                    run_id=run.id,
                    key_epoch=agreement.key_epoch,
                    own_upload_id=own.upload.id,
                    other_upload_id=other.upload.id,
                    segment_filter=segment_filter,
                    own_population=len(own_population),
                    other_population=len(other_population),
                )
            )
        await _disclose_counts(session, agreement, partner_id, run, now)
    await audit.record(
        session, principal, "overlap.matched", f"overlap-run:{run.id}",
        {"agreement": str(agreement.id), "mode": mode.value, "result": result_kind.value},
    )  # fmt: skip
    await session.flush()
    return run


async def _disclose_overlaps(
    session: AsyncSession,
    agreement: DataSharingAgreement,
    partner_id: uuid.UUID,
    other_upload_id: uuid.UUID,
    positions: list[int],
    run: OverlapRun,
    now: datetime,
) -> None:
    """One disclosure line per record of the other's list that the caller
    now knows it shares, with the fields it gets of it."""
    fields = await record_fields(session, other_upload_id, positions)
    await record_disclosure(
        session,
        agreement=agreement,
        to_partner_id=partner_id,
        fields=[sorted(fields.get(p, {})) for p in positions],
        channel=DisclosureChannel.OVERLAP,
        now=now,
        record_refs=[f"overlap-upload:{other_upload_id}#{p}" for p in positions],
        reference=f"overlap-run:{run.id}",
    )


async def record_fields(
    session: AsyncSession, upload_id: uuid.UUID, positions: list[int]
) -> dict[int, dict[str, Any]]:
    if not positions:
        return {}
    rows = (
        await session.execute(
            select(overlap_record_fields.c.position, overlap_record_fields.c.fields).where(
                overlap_record_fields.c.upload_id == upload_id,
                overlap_record_fields.c.position.in_(positions),
            )
        )
    ).all()
    return {row.position: dict(row.fields) for row in rows}


async def get_run(
    session: AsyncSession, principal: Principal, agreement_id: uuid.UUID, run_id: uuid.UUID
) -> OverlapRun:
    """One of the caller's own runs (the other party's is not found: each
    sees only what it asked for)."""
    _, partner_id = partner_of(principal)
    run = await session.scalar(
        select(OverlapRun).where(
            OverlapRun.id == run_id,
            OverlapRun.agreement_id == agreement_id,
            OverlapRun.partner_id == partner_id,
        )
    )
    if run is None:
        raise OverlapRunNotFound(f"no overlap run {run_id}")
    return run


async def view_of(session: AsyncSession, run: OverlapRun) -> RunView:
    counts = overlaps = None
    if run.result_kind == ResultKind.COUNTS:
        counts = msgspec.convert(run.shown, Counts)
    else:
        own, other = run.own_positions or [], run.other_positions or []
        fields = await record_fields(session, run.other_upload_id, other)
        overlaps = Overlaps(
            records=run.shown.get("records"),
            matches=[
                Match(position=p, fields={k: str(v) for k, v in fields.get(q, {}).items()})
                for p, q in zip(own, other, strict=True)
            ],
        )
    return RunView(
        id=run.id,
        agreement_id=run.agreement_id,
        mode=run.mode,
        result=run.result_kind,
        key_epoch=run.key_epoch,
        own_upload_id=run.own_upload_id,
        min_group_size=run.min_group_size,
        segments=run.segment_filter,
        counts=counts,
        overlaps=overlaps,
        created_at=run.created_at,
    )


async def show_run(
    session: AsyncSession,
    principal: Principal,
    agreement_id: uuid.UUID,
    run_id: uuid.UUID,
    now: datetime,
) -> RunView:
    """A run of the caller's, read again: only while the agreement is in
    force (a revoked agreement shows nothing more), and an overlaps result
    is a disclosure again, logged as the first."""
    _, partner_id = partner_of(principal)
    agreement = await agreement_in_force(session, agreement_id, partner_id, now)
    run = await get_run(session, principal, agreement_id, run_id)
    if run.result_kind == ResultKind.OVERLAPS:
        if run.other_positions:
            await _disclose_overlaps(
                session, agreement, partner_id, run.other_upload_id, run.other_positions, run, now
            )
    else:
        await _disclose_counts(session, agreement, partner_id, run, now)
    return await view_of(session, run)


async def _disclose_counts(
    session: AsyncSession,
    agreement: DataSharingAgreement,
    partner_id: uuid.UUID,
    run: OverlapRun,
    now: datetime,
) -> None:
    """One disclosure line for the counts a run showed (no record's field)."""
    await record_disclosure(
        session,
        agreement=agreement,
        to_partner_id=partner_id,
        fields=[],
        channel=DisclosureChannel.OVERLAP,
        now=now,
        record_refs=[f"overlap-run:{run.id}"],
        reference=f"overlap-run:{run.id}",
    )
