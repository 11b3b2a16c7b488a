"""Member segments, saved, counted and exported.

Revision ID: 0043_segments
Revises: 0042_reconciliation
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0043_segments"
down_revision: str | None = "0042_reconciliation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
