"""Partner machine access: signing keys, OAuth clients, idempotency keys.

Placeholder: filled by the session's work on issue 10.

Revision ID: 0022_partner_access
Revises: 0021_partners
Create Date: 2026-12-02
"""

from collections.abc import Sequence

revision: str = "0022_partner_access"
down_revision: str | None = "0021_partners"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
