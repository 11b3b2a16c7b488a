"""Rewards on lots: cancellations, reinstatements and a program's sunset.

Revision ID: 0039_lot_operations
Revises: 0038_period_close
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0039_lot_operations"
down_revision: str | None = "0038_period_close"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
