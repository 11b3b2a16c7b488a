"""Coalition points: partner contracts, accounts, member links, issuances and acceptances.

Placeholder: filled by the session's work on issue 10.

Revision ID: 0023_coalition_points
Revises: 0022_partner_access
Create Date: 2026-12-02
"""

from collections.abc import Sequence

revision: str = "0023_coalition_points"
down_revision: str | None = "0022_partner_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
