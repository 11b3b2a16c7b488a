"""Webhooks to partners: endpoints, deliveries and their attempts.

Placeholder: filled by the session's work on issue 10.

Revision ID: 0024_partner_webhooks
Revises: 0023_coalition_points
Create Date: 2026-12-02
"""

from collections.abc import Sequence

revision: str = "0024_partner_webhooks"
down_revision: str | None = "0023_coalition_points"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
