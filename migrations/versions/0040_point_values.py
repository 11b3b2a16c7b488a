"""The redemption value of a point in force on each date.

Revision ID: 0040_point_values
Revises: 0039_lot_operations
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0040_point_values"
down_revision: str | None = "0039_lot_operations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
