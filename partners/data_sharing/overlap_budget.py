"""The difference-attack budget of overlap count queries (the rule is in
``partners.data_sharing.overlap``'s docstring and docs/overlap-matching.md):
a count query whose populations differ from an earlier one's by fewer than
the agreement's minimum group size, but not zero, is refused; a repeat is
free; any other spends one of the agreement's count queries."""

from __future__ import annotations

import uuid
from array import array
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from partners.data_sharing.models import DataSharingAgreement
from partners.data_sharing.overlap import COUNT_QUERY_BUDGET, load_list, population, segment_array
from partners.data_sharing.overlap_errors import OverlapQueryRefused
from partners.data_sharing.overlap_models import OverlapCountQuery, OverlapUpload


@dataclass(frozen=True, slots=True)
class ListSide:
    """A stored list read back: its upload, digests and segment codes."""

    upload: OverlapUpload
    digests: bytes
    codes: array[int]


async def read_side(session: AsyncSession, upload: OverlapUpload) -> ListSide:
    digests, codes = await load_list(session, upload.id)
    return ListSide(upload, digests, segment_array(codes))


async def _lock_budget(session: AsyncSession, agreement: DataSharingAgreement) -> None:
    """Count queries of one agreement weigh the budget one at a time."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended('overlap-budget:' || :id, 0))"),
        {"id": str(agreement.id)},
    )


async def check_budget(
    session: AsyncSession,
    agreement: DataSharingAgreement,
    partner_id: uuid.UUID,
    own: ListSide,
    other: ListSide,
    segment_filter: list[str] | None,
) -> tuple[bool, set[bytes], set[bytes]]:
    """Refuse a near-identical count query (``OverlapQueryRefused``), or say
    whether it repeats an earlier one (free). Answers (repeat, own
    population, other population)."""
    await _lock_budget(session, agreement)
    minimum = agreement.min_group_size
    mine = population(own.digests, own.codes, own.upload.segments, segment_filter)
    theirs = population(other.digests, other.codes, other.upload.segments, None)
    earlier = (
        await session.scalars(
            select(OverlapCountQuery).where(
                OverlapCountQuery.agreement_id == agreement.id,
                OverlapCountQuery.key_epoch == agreement.key_epoch,
            )
        )
    ).all()
    cache: dict[uuid.UUID, ListSide] = {own.upload.id: own, other.upload.id: other}
    repeat = False
    for query in earlier:
        same_way = query.partner_id == partner_id
        # The earlier query's populations, seen from this caller's side.
        my_size, their_size = (
            (query.own_population, query.other_population)
            if same_way
            else (query.other_population, query.own_population)
        )
        if abs(my_size - len(mine)) + abs(their_size - len(theirs)) >= minimum:
            continue  # the sizes alone differ by enough
        if await _same_lists(session, query, same_way, own, other, segment_filter):
            repeat = True
            continue
        for upload_id in (query.own_upload_id, query.other_upload_id):
            if upload_id not in cache:
                upload = await session.get_one(OverlapUpload, upload_id)
                cache[upload_id] = await read_side(session, upload)
        q_own, q_other = cache[query.own_upload_id], cache[query.other_upload_id]
        q_own_pop = population(
            q_own.digests, q_own.codes, q_own.upload.segments, query.segment_filter
        )
        q_other_pop = population(q_other.digests, q_other.codes, q_other.upload.segments, None)
        if not same_way:
            q_own_pop, q_other_pop = q_other_pop, q_own_pop
        d = len(mine ^ q_own_pop) + len(theirs ^ q_other_pop)
        if d == 0:
            repeat = True
        elif d < minimum:
            raise OverlapQueryRefused(
                f"this count query's records differ from an earlier query's by {d}, fewer than"
                f" the agreement's minimum group size of {minimum}: the two answers together"
                " would describe fewer records than the agreement allows"
            )
    if not repeat:
        spent = await session.scalar(
            select(func.count())
            .select_from(OverlapCountQuery)
            .where(
                OverlapCountQuery.agreement_id == agreement.id,
                OverlapCountQuery.partner_id == partner_id,
            )
        )
        if (spent or 0) >= COUNT_QUERY_BUDGET:
            raise OverlapQueryRefused(
                f"the agreement's budget of {COUNT_QUERY_BUDGET} count queries is spent"
            )
    return repeat, mine, theirs


async def _same_lists(
    session: AsyncSession,
    query: OverlapCountQuery,
    same_way: bool,
    own: ListSide,
    other: ListSide,
    segment_filter: list[str] | None,
) -> bool:
    """Whether an earlier query counted the very same lists (uploads of the
    same content, by fingerprint) with the same filter: a repeat, known
    without comparing the populations."""
    if query.segment_filter != segment_filter or not same_way:
        return False
    rows = await session.execute(
        select(OverlapUpload.id, OverlapUpload.fingerprint).where(
            OverlapUpload.id.in_([query.own_upload_id, query.other_upload_id])
        )
    )
    prints = {row.id: row.fingerprint for row in rows}
    return (
        prints.get(query.own_upload_id) == own.upload.fingerprint
        and prints.get(query.other_upload_id) == other.upload.fingerprint
    )
