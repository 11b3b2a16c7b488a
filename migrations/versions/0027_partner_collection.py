"""Collection of partners' statements through Stripe: each partner's Stripe
customer and saved payment method, and each statement's collection (its
attempts, their outcome, the next retry) (``partners.collection_models``).

Revision ID: 0027_partner_collection
Revises: 0026_partner_statements
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0027_partner_collection"
down_revision: str | None = "0026_partner_statements"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = """
    sa_orm_sentinel INTEGER,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
"""


def _tenant(table: str) -> str:
    return f"""
        CONSTRAINT fk_{table}_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_{table}_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id)
    """


def upgrade() -> None:
    op.execute(f"""CREATE TABLE partner_payment_accounts (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        payment_method_id VARCHAR(255),
        stripe_customer_id VARCHAR(255),
        {AUDIT},
        CONSTRAINT pk_partner_payment_accounts PRIMARY KEY (id),
        CONSTRAINT uq_partner_payment_accounts_partner_id UNIQUE (partner_id),
        {_tenant("partner_payment_accounts")}
    )""")
    op.execute(f"""CREATE TABLE partner_collections (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        statement_id UUID NOT NULL,
        status VARCHAR(10) NOT NULL
            CHECK (status IN ('pending', 'succeeded', 'failed', 'given_up')),
        attempts INTEGER NOT NULL CHECK (attempts >= 0),
        items_created BOOLEAN NOT NULL DEFAULT false,
        payment_intent_id VARCHAR(255),
        failure VARCHAR(500),
        next_attempt_at TIMESTAMP WITH TIME ZONE,
        {AUDIT},
        CONSTRAINT pk_partner_collections PRIMARY KEY (id),
        CONSTRAINT uq_partner_collections_statement_id UNIQUE (statement_id),
        CONSTRAINT fk_partner_collections_statement_id_partner_statements
            FOREIGN KEY (statement_id) REFERENCES partner_statements (id),
        {_tenant("partner_collections")}
    )""")
    # The retry job's scan: only collections waiting for a retry.
    op.execute(
        "CREATE INDEX ix_partner_collections_next_attempt_at ON partner_collections"
        " (next_attempt_at) WHERE status = 'failed'"
    )


def downgrade() -> None:
    op.execute("DROP TABLE partner_collections")
    op.execute("DROP TABLE partner_payment_accounts")
