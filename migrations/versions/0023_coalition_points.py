"""Coalition points: partner contracts, fundings, member links, issuances and acceptances
(``partners.coalition_models``).

Revision ID: 0023_coalition_points
Revises: 0022_partner_access
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023_coalition_points"
down_revision: str | None = "0022_partner_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = """
    sa_orm_sentinel INTEGER,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
"""


def _tenant(table: str) -> str:
    """The program and partner columns' keys (every table has both)."""
    return f"""
        CONSTRAINT fk_{table}_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_{table}_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id)
    """


def upgrade() -> None:
    op.execute(f"""CREATE TABLE partner_contracts (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        version INTEGER NOT NULL CHECK (version > 0),
        status VARCHAR(16) NOT NULL CHECK (status IN ('draft', 'published')),
        roles VARCHAR(8) NOT NULL CHECK (roles IN ('issuer', 'acceptor', 'both')),
        issue_price_per_point NUMERIC(18, 6) NOT NULL CHECK (issue_price_per_point >= 0),
        redemption_rate_per_point NUMERIC(18, 6) NOT NULL
            CHECK (redemption_rate_per_point >= 0),
        issuance_share NUMERIC(7, 6) NOT NULL CHECK (issuance_share BETWEEN 0 AND 1),
        funding_model VARCHAR(8) NOT NULL CHECK (funding_model IN ('prepaid', 'postpaid')),
        credit_limit_points BIGINT NOT NULL CHECK (credit_limit_points >= 0),
        settlement_period VARCHAR(10) NOT NULL
            CHECK (settlement_period IN ('weekly', 'monthly', 'quarterly')),
        currency VARCHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
        issuance_tax_code VARCHAR(32),
        redemption_tax_code VARCHAR(32),
        fee_tax_code VARCHAR(32),
        prepaid_credit_minor BIGINT NOT NULL CHECK (prepaid_credit_minor >= 0),
        minimum_commitment_minor BIGINT NOT NULL CHECK (minimum_commitment_minor >= 0),
        note VARCHAR(500),
        effective_from TIMESTAMP WITH TIME ZONE,
        published_at TIMESTAMP WITH TIME ZONE,
        {AUDIT},
        CONSTRAINT pk_partner_contracts PRIMARY KEY (id),
        CONSTRAINT uq_partner_contracts_partner_id UNIQUE (partner_id, version),
        {_tenant("partner_contracts")},
        CHECK (funding_model = 'postpaid' OR credit_limit_points = 0),
        CHECK ((status = 'published') = (effective_from IS NOT NULL)),
        CHECK ((status = 'published') = (published_at IS NOT NULL))
    )""")
    # The version in force: the published one with the latest start.
    op.execute(
        "CREATE INDEX ix_partner_contracts_in_force ON partner_contracts"
        " (partner_id, effective_from) WHERE status = 'published'"
    )
    op.execute(f"""CREATE TABLE partner_fundings (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        reference VARCHAR(200) NOT NULL,
        points BIGINT NOT NULL CHECK (points > 0),
        amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
        currency VARCHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
        paid_at TIMESTAMP WITH TIME ZONE NOT NULL,
        transfer_id UUID NOT NULL,
        {AUDIT},
        CONSTRAINT pk_partner_fundings PRIMARY KEY (id),
        CONSTRAINT uq_partner_fundings_partner_id UNIQUE (partner_id, reference),
        {_tenant("partner_fundings")}
    )""")
    op.execute(f"""CREATE TABLE partner_member_links (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        member_id UUID NOT NULL,
        identifier VARCHAR(200) NOT NULL,
        {AUDIT},
        CONSTRAINT pk_partner_member_links PRIMARY KEY (id),
        CONSTRAINT uq_partner_member_links_partner_id UNIQUE (partner_id, identifier),
        CONSTRAINT uq_partner_member_links_member_id UNIQUE (member_id, partner_id),
        CONSTRAINT fk_partner_member_links_member_id_members
            FOREIGN KEY (member_id) REFERENCES members (id),
        {_tenant("partner_member_links")}
    )""")
    op.execute(f"""CREATE TABLE partner_issuances (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        company_id UUID NOT NULL,
        transaction_id VARCHAR(200) NOT NULL,
        member_id UUID NOT NULL,
        identifier VARCHAR(200),
        points BIGINT NOT NULL CHECK (points >= 0),
        purchase_amount_minor BIGINT CHECK (purchase_amount_minor >= 0),
        currency VARCHAR(3) CHECK (currency ~ '^[A-Z]{{3}}$'),
        contract_version INTEGER NOT NULL,
        rule_version INTEGER,
        transfer_id UUID,
        request_digest BYTEA NOT NULL,
        {AUDIT},
        CONSTRAINT pk_partner_issuances PRIMARY KEY (id),
        CONSTRAINT uq_partner_issuances_partner_id UNIQUE (partner_id, transaction_id),
        CONSTRAINT fk_partner_issuances_company_id_partners
            FOREIGN KEY (company_id) REFERENCES partners (id),
        CONSTRAINT fk_partner_issuances_member_id_members
            FOREIGN KEY (member_id) REFERENCES members (id),
        {_tenant("partner_issuances")},
        CHECK ((points > 0) = (transfer_id IS NOT NULL))
    )""")
    op.execute("CREATE INDEX ix_partner_issuances_company_id ON partner_issuances (company_id, id)")
    op.execute(f"""CREATE TABLE partner_holds (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        company_id UUID NOT NULL,
        checkout_id VARCHAR(200) NOT NULL,
        member_id UUID NOT NULL,
        identifier VARCHAR(200),
        points BIGINT NOT NULL CHECK (points > 0),
        status VARCHAR(10) NOT NULL CHECK (status IN ('held', 'captured', 'released')),
        captured_points BIGINT NOT NULL CHECK (captured_points >= 0),
        refunded_points BIGINT NOT NULL CHECK (refunded_points >= 0),
        expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
        contract_version INTEGER NOT NULL,
        transfer_id UUID NOT NULL,
        request_digest BYTEA NOT NULL,
        {AUDIT},
        CONSTRAINT pk_partner_holds PRIMARY KEY (id),
        CONSTRAINT uq_partner_holds_partner_id UNIQUE (partner_id, checkout_id),
        CONSTRAINT fk_partner_holds_company_id_partners
            FOREIGN KEY (company_id) REFERENCES partners (id),
        CONSTRAINT fk_partner_holds_member_id_members
            FOREIGN KEY (member_id) REFERENCES members (id),
        {_tenant("partner_holds")},
        CHECK (captured_points <= points),
        CHECK (refunded_points <= captured_points)
    )""")
    op.execute("CREATE INDEX ix_partner_holds_company_id ON partner_holds (company_id, id)")
    op.execute(f"""CREATE TABLE partner_refunds (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        hold_id UUID NOT NULL,
        refund_id VARCHAR(200) NOT NULL,
        points BIGINT NOT NULL CHECK (points > 0),
        transfer_id UUID NOT NULL,
        {AUDIT},
        CONSTRAINT pk_partner_refunds PRIMARY KEY (id),
        CONSTRAINT uq_partner_refunds_hold_id UNIQUE (hold_id, refund_id),
        CONSTRAINT fk_partner_refunds_hold_id_partner_holds
            FOREIGN KEY (hold_id) REFERENCES partner_holds (id),
        {_tenant("partner_refunds")}
    )""")


def downgrade() -> None:
    for table in (
        "partner_refunds",
        "partner_holds",
        "partner_issuances",
        "partner_member_links",
        "partner_fundings",
        "partner_contracts",
    ):
        op.execute(f"DROP TABLE {table}")
