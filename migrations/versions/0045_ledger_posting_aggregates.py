"""Posting-path aggregates (stub: filled by the ledger work).

Revision ID: 0045_ledger_posting_aggregates
Revises: 0044_lead_routing_compact
Create Date: 2026-12-07
"""

from collections.abc import Sequence

revision: str = "0045_ledger_posting_aggregates"
down_revision: str | None = "0044_lead_routing_compact"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
