"""Stripe events that fail are retried with a growing delay, then left failed

An event whose handling fails for a reason other than a business refusal
(the database refused its data, a bug) keeps its tries, its last error and
when to try again; the inbox goes on with the next event meanwhile. After
``api.stripe.inbox.MAX_ATTEMPTS`` tries it is marked failed (``failed_at``)
and waits for an operator. Events stored before this revision start with
no tries.

Revision ID: 0020_stripe_inbox_retries
Revises: 0019_api_key_program
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020_stripe_inbox_retries"
down_revision: str | None = "0019_api_key_program"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """ALTER TABLE stripe_events
        ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0,
        ADD COLUMN next_attempt_at TIMESTAMPTZ,
        ADD COLUMN last_error TEXT,
        ADD COLUMN failed_at TIMESTAMPTZ"""
    )
    # The inbox walks the events still to process, failed ones aside.
    op.execute("DROP INDEX ix_stripe_events_unprocessed")
    op.execute(
        """CREATE INDEX ix_stripe_events_unprocessed ON stripe_events (received_at)
        WHERE processed_at IS NULL AND failed_at IS NULL"""
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_stripe_events_unprocessed")
    op.execute(
        """CREATE INDEX ix_stripe_events_unprocessed ON stripe_events (received_at)
        WHERE processed_at IS NULL"""
    )
    op.execute(
        """ALTER TABLE stripe_events
        DROP COLUMN failed_at,
        DROP COLUMN last_error,
        DROP COLUMN next_attempt_at,
        DROP COLUMN attempts"""
    )
