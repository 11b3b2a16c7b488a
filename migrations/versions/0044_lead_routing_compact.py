"""Lead routing decisions stored in a compact form.

A decision among a thousand partners was a JSON document of ~100 kB (every
candidate's scores as an object, every partner left out as an object); it
becomes arrays: the candidates' ids, registration moments and scores (a
row per candidate, in the order of ``criteria``) in rank order, and the
partners left out grouped by reason (the reasons, a count each, the ids in
the same order). Totals and ranks are derived from scores and weights.
Existing decisions are converted; the downgrade rebuilds the documents.

Revision ID: 0044_lead_routing_compact
Revises: 0043_segments
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0044_lead_routing_compact"
down_revision: str | None = "0043_segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CRITERIA = ("territory", "capability", "tier", "capacity", "acceptance_rate", "response_time")
_COLUMNS = {
    "criteria": "TEXT[]",
    "candidate_ids": "UUID[]",
    "candidate_registered_at": "TIMESTAMP WITH TIME ZONE[]",
    "candidate_scores": "INTEGER[]",
    "excluded_reasons": "TEXT[]",
    "excluded_counts": "INTEGER[]",
    "excluded_ids": "UUID[]",
}


def upgrade() -> None:
    for name, kind in _COLUMNS.items():
        op.execute(f"ALTER TABLE lead_routing_decisions ADD COLUMN {name} {kind}")
    scores = ", ".join(f"(c.value -> 'scores' ->> '{name}')::int" for name in _CRITERIA)
    criteria = ", ".join(f"'{name}'" for name in _CRITERIA)
    # The stored rank orders the candidates; the reasons (and the ids in
    # each) are ordered as the decisions made from now on order them.
    op.execute(f"""UPDATE lead_routing_decisions d SET
        criteria = ARRAY[{criteria}],
        candidate_ids = COALESCE((SELECT array_agg((c.value ->> 'partner_id')::uuid
            ORDER BY (c.value ->> 'rank')::int) FROM jsonb_array_elements(d.candidates) c), '{{}}'),
        candidate_registered_at = COALESCE((SELECT array_agg(
            (c.value ->> 'registered_at')::timestamptz ORDER BY (c.value ->> 'rank')::int)
            FROM jsonb_array_elements(d.candidates) c), '{{}}'),
        candidate_scores = COALESCE((SELECT array_agg(ARRAY[{scores}]
            ORDER BY (c.value ->> 'rank')::int) FROM jsonb_array_elements(d.candidates) c), '{{}}'),
        excluded_reasons = COALESCE((SELECT array_agg(r.reason ORDER BY r.reason) FROM
            (SELECT DISTINCT e.value ->> 'reason' AS reason
             FROM jsonb_array_elements(d.excluded) e) r), '{{}}'),
        excluded_counts = COALESCE((SELECT array_agg(r.n ORDER BY r.reason) FROM
            (SELECT e.value ->> 'reason' AS reason, count(*)::int AS n
             FROM jsonb_array_elements(d.excluded) e GROUP BY 1) r), '{{}}'),
        excluded_ids = COALESCE((SELECT array_agg((e.value ->> 'partner_id')::uuid
            ORDER BY e.value ->> 'reason', (e.value ->> 'partner_id')::uuid)
            FROM jsonb_array_elements(d.excluded) e), '{{}}')""")
    for name in _COLUMNS:
        op.execute(f"ALTER TABLE lead_routing_decisions ALTER COLUMN {name} SET NOT NULL")
    op.execute("ALTER TABLE lead_routing_decisions DROP COLUMN candidates")
    op.execute("ALTER TABLE lead_routing_decisions DROP COLUMN excluded")


def downgrade() -> None:
    op.execute("ALTER TABLE lead_routing_decisions ADD COLUMN candidates JSONB")
    op.execute("ALTER TABLE lead_routing_decisions ADD COLUMN excluded JSONB")
    op.execute("""UPDATE lead_routing_decisions d SET
        candidates = COALESCE((SELECT jsonb_agg(jsonb_build_object(
            'partner_id', c.id::text, 'slug', p.slug,
            'registered_at', to_char(c.registered_at AT TIME ZONE 'UTC',
                'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'),
            'scores', s.scores, 'total', s.total, 'rank', c.rank) ORDER BY c.rank)
          FROM unnest(d.candidate_ids, d.candidate_registered_at)
              WITH ORDINALITY AS c(id, registered_at, rank)
            JOIN partners p ON p.id = c.id
            CROSS JOIN LATERAL (
              SELECT jsonb_object_agg(d.criteria[k], d.candidate_scores[c.rank][k]) AS scores,
                sum((d.weights ->> d.criteria[k])::int * d.candidate_scores[c.rank][k])::int
                  AS total
              FROM generate_subscripts(d.criteria, 1) k) s), '[]'),
        excluded = COALESCE((SELECT jsonb_agg(jsonb_build_object(
            'partner_id', e.id::text, 'slug', p.slug, 'reason', r.reason) ORDER BY e.n)
          FROM unnest(d.excluded_ids) WITH ORDINALITY AS e(id, n)
            JOIN partners p ON p.id = e.id
            CROSS JOIN LATERAL (
              SELECT d.excluded_reasons[g] AS reason
              FROM generate_subscripts(d.excluded_reasons, 1) g
              WHERE e.n > (SELECT COALESCE(sum(x), 0) FROM unnest(d.excluded_counts[1:g - 1]) x)
              ORDER BY g DESC LIMIT 1) r), '[]')""")
    op.execute("ALTER TABLE lead_routing_decisions ALTER COLUMN candidates SET NOT NULL")
    op.execute("ALTER TABLE lead_routing_decisions ALTER COLUMN excluded SET NOT NULL")
    for name in _COLUMNS:
        op.execute(f"ALTER TABLE lead_routing_decisions DROP COLUMN {name}")
