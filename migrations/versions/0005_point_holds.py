"""Points as payment: holds on a member's points at checkout.

Revision ID: 0005_point_holds
Revises: 0004_redemptions
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_point_holds"
down_revision: str | None = "0004_redemptions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""CREATE TABLE point_holds (
        id UUID PRIMARY KEY,
        program_id UUID NOT NULL REFERENCES programs (id),
        member_id UUID NOT NULL REFERENCES members (id),
        idempotency_key VARCHAR(200) NOT NULL,
        order_ref VARCHAR(200) NOT NULL,
        points BIGINT NOT NULL CHECK (points > 0),
        value_minor BIGINT NOT NULL CHECK (value_minor >= 0),
        transfer_id UUID NOT NULL UNIQUE,
        status VARCHAR(16) NOT NULL CHECK (status IN ('held', 'captured', 'released')),
        captured_points BIGINT NOT NULL DEFAULT 0 CHECK (captured_points >= 0),
        expires_at TIMESTAMPTZ NOT NULL,
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT uq_point_holds_key UNIQUE (member_id, idempotency_key)
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS point_holds")
