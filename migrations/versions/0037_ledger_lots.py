"""Lots (the credits each wallet debit consumed) and the daily aggregates
that the posting path keeps (ledger).

Revision ID: 0037_ledger_lots
Revises: 0036_overlap_matching
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0037_ledger_lots"
down_revision: str | None = "0036_overlap_matching"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
