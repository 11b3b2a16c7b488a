"""The transactional outbox (``core.outbox``): events written with the change
they describe, handed to subscribers by the worker after commit.

Revision ID: 0016_outbox
Revises: 0015_named_ledger_results
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016_outbox"
down_revision: str | None = "0015_named_ledger_results"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""CREATE TABLE outbox_events (
        id UUID PRIMARY KEY,
        position BIGSERIAL NOT NULL,
        topic VARCHAR(100) NOT NULL,
        subject VARCHAR(300) NOT NULL,
        payload JSONB NOT NULL CHECK (jsonb_typeof(payload) = 'object'),
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        handled_at TIMESTAMPTZ,
        attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        next_attempt_at TIMESTAMPTZ,
        last_error TEXT
    )""")
    op.execute(
        "CREATE INDEX ix_outbox_events_pending ON outbox_events (position) WHERE handled_at IS NULL"
    )
    op.execute(
        "CREATE INDEX ix_outbox_events_subject_pending ON outbox_events (subject, position)"
        " WHERE handled_at IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS outbox_events")
