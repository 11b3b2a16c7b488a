"""Blocks of points prepaid partners buy through Stripe: each purchase, its
price under the contract in force, the PaymentIntent asked for and its
outcome (``partners.funding_purchase_models``).

Revision ID: 0029_partner_funding_purchases
Revises: 0028_partner_departures
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0029_partner_funding_purchases"
down_revision: str | None = "0028_partner_departures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""CREATE TABLE partner_funding_purchases (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        purchase_id VARCHAR(200) NOT NULL,
        points BIGINT NOT NULL CHECK (points > 0),
        amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
        currency VARCHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        contract_version INTEGER NOT NULL CHECK (contract_version > 0),
        status VARCHAR(10) NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        payment_method_id VARCHAR(255) NOT NULL,
        payment_intent_id VARCHAR(255),
        failure VARCHAR(500),
        funding_id UUID,
        completed_at TIMESTAMP WITH TIME ZONE,
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        CONSTRAINT pk_partner_funding_purchases PRIMARY KEY (id),
        CONSTRAINT uq_partner_funding_purchases_partner_id UNIQUE (partner_id, purchase_id),
        CONSTRAINT fk_partner_funding_purchases_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_partner_funding_purchases_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id),
        CONSTRAINT fk_partner_funding_purchases_funding_id_partner_fundings
            FOREIGN KEY (funding_id) REFERENCES partner_fundings (id),
        CONSTRAINT ck_partner_funding_purchases_funded
            CHECK ((status = 'succeeded') = (funding_id IS NOT NULL))
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE partner_funding_purchases")
