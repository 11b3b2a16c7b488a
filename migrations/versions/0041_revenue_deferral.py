"""IFRS 15 revenue deferral: allocations, breakage estimates, recognitions.

Revision ID: 0041_revenue_deferral
Revises: 0040_point_values
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0041_revenue_deferral"
down_revision: str | None = "0040_point_values"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
