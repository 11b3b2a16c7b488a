"""Redeeming: the rewards catalog, redemptions and member-to-member gifts.

Revision ID: 0004_redemptions
Revises: 0003_operator_access
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004_redemptions"
down_revision: str | None = "0003_operator_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = """
    sa_orm_sentinel INTEGER,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
"""

STATEMENTS = [
    """ALTER TABLE programs ADD COLUMN gift_daily_limit BIGINT NOT NULL DEFAULT 10000
        CHECK (gift_daily_limit >= 0)""",
    f"""CREATE TABLE catalog_rewards (
        id UUID PRIMARY KEY,
        program_id UUID NOT NULL REFERENCES programs (id),
        sku VARCHAR(100) NOT NULL,
        name VARCHAR(200) NOT NULL,
        points_price BIGINT NOT NULL CHECK (points_price > 0),
        -- NULL: unlimited.
        stock INTEGER CHECK (stock >= 0),
        valid_from TIMESTAMPTZ,
        valid_until TIMESTAMPTZ,
        fulfilling_partner VARCHAR(100),
        {AUDIT},
        CONSTRAINT uq_catalog_rewards_sku UNIQUE (program_id, sku)
    )""",
    f"""CREATE TABLE redemptions (
        id UUID PRIMARY KEY,
        program_id UUID NOT NULL REFERENCES programs (id),
        member_id UUID NOT NULL REFERENCES members (id),
        -- The member app's Idempotency-Key.
        idempotency_key VARCHAR(200) NOT NULL,
        reward_id UUID NOT NULL REFERENCES catalog_rewards (id),
        quantity INTEGER NOT NULL CHECK (quantity > 0),
        points BIGINT NOT NULL CHECK (points > 0),
        transfer_id UUID NOT NULL,
        {AUDIT},
        CONSTRAINT uq_redemptions_key UNIQUE (member_id, idempotency_key)
    )""",
    f"""CREATE TABLE gifts (
        id UUID PRIMARY KEY,
        program_id UUID NOT NULL REFERENCES programs (id),
        sender_id UUID NOT NULL REFERENCES members (id),
        recipient_id UUID NOT NULL REFERENCES members (id),
        idempotency_key VARCHAR(200) NOT NULL,
        points BIGINT NOT NULL CHECK (points > 0),
        transfer_id UUID NOT NULL,
        {AUDIT},
        CONSTRAINT uq_gifts_key UNIQUE (sender_id, idempotency_key),
        CHECK (sender_id <> recipient_id)
    )""",
    "CREATE INDEX ix_gifts_sender_day ON gifts (sender_id, created_at)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS gifts, redemptions, catalog_rewards")
    op.execute("ALTER TABLE programs DROP COLUMN IF EXISTS gift_daily_limit")
