"""Lead routing decisions stored in a compact form.

Revision ID: 0044_lead_routing_compact
Revises: 0043_segments
Create Date: 2026-12-03
"""

from collections.abc import Sequence

revision: str = "0044_lead_routing_compact"
down_revision: str | None = "0043_segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
