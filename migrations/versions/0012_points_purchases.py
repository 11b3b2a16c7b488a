"""Points bought through Stripe, as rows: a refund takes back its share of
them (what the wallet no longer holds becomes the member's debt).

Revision ID: 0012_points_purchases
Revises: 0011_threshold_settlement
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012_points_purchases"
down_revision: str | None = "0011_threshold_settlement"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""CREATE TABLE points_purchases (
        payment_intent VARCHAR(255) PRIMARY KEY,
        program_id UUID NOT NULL REFERENCES programs (id),
        member_id UUID NOT NULL REFERENCES members (id),
        points BIGINT NOT NULL CHECK (points > 0),
        amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
        refunded_minor BIGINT NOT NULL DEFAULT 0,
        points_reversed BIGINT NOT NULL DEFAULT 0,
        debt_points BIGINT NOT NULL DEFAULT 0,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CHECK (refunded_minor BETWEEN 0 AND amount_minor),
        CHECK (points_reversed BETWEEN 0 AND points)
    )""")
    op.execute("CREATE INDEX ix_points_purchases_member ON points_purchases (member_id)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS points_purchases")
