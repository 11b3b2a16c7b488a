"""The inbox of Stripe webhook events: stored once, processed by the worker.

Revision ID: 0009_stripe_inbox
Revises: 0008_expiry
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_stripe_inbox"
down_revision: str | None = "0008_expiry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""CREATE TABLE stripe_events (
        -- Stripe's event id: a delivery seen twice is stored once.
        id VARCHAR(255) PRIMARY KEY,
        type VARCHAR(100) NOT NULL,
        payload JSONB NOT NULL,
        received_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        processed_at TIMESTAMPTZ,
        outcome VARCHAR(200)
    )""")
    op.execute("""CREATE INDEX ix_stripe_events_unprocessed ON stripe_events (received_at)
        WHERE processed_at IS NULL""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS stripe_events")
