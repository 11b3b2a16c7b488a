"""Rewards: programs, members, earn rule versions, purchases and returns.

Revision ID: 0002_rewards
Revises: 0001_ledger
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_rewards"
down_revision: str | None = "0001_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = """
    sa_orm_sentinel INTEGER,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
"""

STATEMENTS = [
    # Ledger ids of programs start far from the ones operators choose by hand.
    "CREATE SEQUENCE program_ledger_id_seq AS integer START WITH 1000000",
    f"""CREATE TABLE programs (
        id UUID NOT NULL,
        slug VARCHAR(64) NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]*$'),
        name VARCHAR(200) NOT NULL,
        ledger_id INTEGER NOT NULL,
        currency VARCHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
        minor_per_major INTEGER NOT NULL CHECK (minor_per_major IN (1, 10, 100, 1000)),
        point_value_minor NUMERIC(18, 6) NOT NULL CHECK (point_value_minor > 0),
        return_window_days INTEGER NOT NULL CHECK (return_window_days BETWEEN 0 AND 365),
        issuance_account_id UUID NOT NULL,
        redemption_account_id UUID NOT NULL,
        breakage_account_id UUID NOT NULL,
        {AUDIT},
        CONSTRAINT pk_programs PRIMARY KEY (id),
        CONSTRAINT uq_programs_slug UNIQUE (slug),
        CONSTRAINT uq_programs_ledger_id UNIQUE (ledger_id)
    )""",
    f"""CREATE TABLE earn_rule_versions (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        version INTEGER NOT NULL CHECK (version > 0),
        status VARCHAR(16) NOT NULL CHECK (status IN ('draft', 'published')),
        effective_from TIMESTAMP WITH TIME ZONE,
        rules JSONB NOT NULL,
        note VARCHAR(500),
        published_at TIMESTAMP WITH TIME ZONE,
        {AUDIT},
        CONSTRAINT pk_earn_rule_versions PRIMARY KEY (id),
        CONSTRAINT uq_earn_rule_versions_program_id UNIQUE (program_id, version),
        CONSTRAINT fk_earn_rule_versions_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CHECK ((status = 'published') = (effective_from IS NOT NULL))
    )""",
    """CREATE INDEX ix_earn_rule_versions_in_force
        ON earn_rule_versions (program_id, effective_from DESC) WHERE status = 'published'""",
    f"""CREATE TABLE members (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        external_id VARCHAR(200) NOT NULL,
        email VARCHAR(320),
        phone VARCHAR(32),
        consents JSONB NOT NULL DEFAULT '{{}}',
        status VARCHAR(16) NOT NULL CHECK (status IN ('active', 'frozen', 'closed')),
        wallet_account_id UUID NOT NULL,
        debt_account_id UUID,
        {AUDIT},
        CONSTRAINT pk_members PRIMARY KEY (id),
        CONSTRAINT uq_members_program_id UNIQUE (program_id, external_id),
        CONSTRAINT fk_members_program_id_programs FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT uq_members_wallet_account_id UNIQUE (wallet_account_id),
        CONSTRAINT uq_members_debt_account_id UNIQUE (debt_account_id)
    )""",
    f"""CREATE TABLE purchases (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        member_id UUID NOT NULL,
        order_id VARCHAR(200) NOT NULL,
        occurred_at TIMESTAMP WITH TIME ZONE NOT NULL,
        amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
        currency VARCHAR(3) NOT NULL,
        items JSONB NOT NULL DEFAULT '[]',
        rule_version INTEGER,
        points BIGINT NOT NULL CHECK (points >= 0),
        earn_transfer_id UUID,
        matures_at TIMESTAMP WITH TIME ZONE NOT NULL,
        posted_at TIMESTAMP WITH TIME ZONE,
        returned_minor BIGINT NOT NULL DEFAULT 0,
        points_reversed BIGINT NOT NULL DEFAULT 0,
        {AUDIT},
        CONSTRAINT pk_purchases PRIMARY KEY (id),
        CONSTRAINT uq_purchases_program_id UNIQUE (program_id, order_id),
        CONSTRAINT fk_purchases_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_purchases_member_id_members FOREIGN KEY (member_id) REFERENCES members (id),
        CHECK (returned_minor BETWEEN 0 AND amount_minor),
        CHECK (points_reversed BETWEEN 0 AND points)
    )""",
    "CREATE INDEX ix_purchases_member_id ON purchases (member_id)",
    """CREATE INDEX ix_purchases_maturing ON purchases (matures_at)
        WHERE posted_at IS NULL AND earn_transfer_id IS NOT NULL""",
    f"""CREATE TABLE purchase_returns (
        id UUID NOT NULL,
        purchase_id UUID NOT NULL,
        return_id VARCHAR(200) NOT NULL,
        amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
        points_reversed BIGINT NOT NULL CHECK (points_reversed >= 0),
        debt_points BIGINT NOT NULL DEFAULT 0 CHECK (debt_points >= 0),
        {AUDIT},
        CONSTRAINT pk_purchase_returns PRIMARY KEY (id),
        CONSTRAINT uq_purchase_returns_purchase_id UNIQUE (purchase_id, return_id),
        CONSTRAINT fk_purchase_returns_purchase_id_purchases
            FOREIGN KEY (purchase_id) REFERENCES purchases (id)
    )""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute(
        "DROP TABLE IF EXISTS purchase_returns, purchases, members, earn_rule_versions, programs"
    )
    op.execute("DROP SEQUENCE IF EXISTS program_ledger_id_seq")
