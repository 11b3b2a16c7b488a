"""Operator webhooks: a program's own webhook endpoints, beside its partners'.

An endpoint (and each of its deliveries) with ``partner_id`` NULL is the
program's own: its operators register it and it receives program events
(``partners.program_webhooks``: a reconciliation's differences first). The
sender, the retries and the delivery log are the partners' machinery, on
the same tables.

Revision ID: 0046_operator_webhooks
Revises: 0045_ledger_posting_aggregates
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0046_operator_webhooks"
down_revision: str | None = "0045_ledger_posting_aggregates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE webhook_endpoints ALTER COLUMN partner_id DROP NOT NULL")
    op.execute("ALTER TABLE webhook_deliveries ALTER COLUMN partner_id DROP NOT NULL")
    # The fan-out's and the operator's look-up of a program's own endpoints.
    op.execute(
        "CREATE INDEX ix_webhook_endpoints_program_own ON webhook_endpoints (program_id, id)"
        " WHERE partner_id IS NULL"
    )


def downgrade() -> None:
    op.execute("DROP INDEX ix_webhook_endpoints_program_own")
    # The programs' own endpoints have no partner to belong to: they go,
    # their deliveries and attempts with them (ON DELETE CASCADE).
    op.execute("DELETE FROM webhook_endpoints WHERE partner_id IS NULL")
    op.execute("DELETE FROM webhook_deliveries WHERE partner_id IS NULL")
    op.execute("ALTER TABLE webhook_deliveries ALTER COLUMN partner_id SET NOT NULL")
    op.execute("ALTER TABLE webhook_endpoints ALTER COLUMN partner_id SET NOT NULL")
