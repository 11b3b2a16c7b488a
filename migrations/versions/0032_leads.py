"""Lead sharing and deal registration: leads and their exclusivity
extensions, scoring and routing versions, referral terms, partners' lead
profiles, routing decisions and offers (``partners.leads.models``).

Revision ID: 0032_leads
Revises: 0031_idempotency_in_flight
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0032_leads"
down_revision: str | None = "0031_idempotency_in_flight"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AUDIT = """
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),"""


def _versions(table: str, column: str) -> None:
    op.execute(f"""CREATE TABLE {table} (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        version INTEGER NOT NULL CHECK (version > 0),
        {column} JSONB NOT NULL,{_AUDIT}
        CONSTRAINT pk_{table} PRIMARY KEY (id),
        CONSTRAINT uq_{table}_program_id UNIQUE (program_id, version),
        CONSTRAINT fk_{table}_program_id_programs FOREIGN KEY (program_id) REFERENCES programs (id)
    )""")


def upgrade() -> None:
    _versions("lead_scoring_versions", "criteria")
    _versions("lead_routing_versions", "config")
    op.execute(f"""CREATE TABLE lead_referral_terms (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        reward VARCHAR(8) NOT NULL CHECK (reward IN ('points', 'money')),
        basis VARCHAR(8) NOT NULL CHECK (basis IN ('fixed', 'share')),
        amount BIGINT NOT NULL CHECK (amount >= 0),
        share_bps INTEGER NOT NULL CHECK (share_bps BETWEEN 0 AND 10000),
        currency VARCHAR(3),{_AUDIT}
        CONSTRAINT pk_lead_referral_terms PRIMARY KEY (id),
        CONSTRAINT uq_lead_referral_terms_program_id UNIQUE (program_id),
        CONSTRAINT fk_lead_referral_terms_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id)
    )""")
    op.execute(f"""CREATE TABLE partner_lead_profiles (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        territories JSONB NOT NULL,
        capabilities JSONB NOT NULL,
        capacity INTEGER NOT NULL CHECK (capacity > 0),
        open_leads INTEGER NOT NULL DEFAULT 0 CHECK (open_leads >= 0),
        offers_accepted INTEGER NOT NULL DEFAULT 0,
        offers_declined INTEGER NOT NULL DEFAULT 0,
        offers_withdrawn INTEGER NOT NULL DEFAULT 0,
        response_seconds BIGINT NOT NULL DEFAULT 0,{_AUDIT}
        CONSTRAINT pk_partner_lead_profiles PRIMARY KEY (id),
        CONSTRAINT uq_partner_lead_profiles_partner_id UNIQUE (partner_id),
        CONSTRAINT fk_partner_lead_profiles_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_partner_lead_profiles_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id)
    )""")
    op.execute(
        "CREATE INDEX ix_partner_lead_profiles_program_id ON partner_lead_profiles (program_id)"
    )
    op.execute(f"""CREATE TABLE leads (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        reference VARCHAR(200) NOT NULL,
        shared BOOLEAN NOT NULL,
        company_name VARCHAR(200) NOT NULL,
        company_domain VARCHAR(253) NOT NULL,
        domain_key VARCHAR(253) NOT NULL,
        name_key VARCHAR(200) NOT NULL,
        company_size INTEGER,
        industry VARCHAR(100),
        contact JSONB NOT NULL,
        estimated_value_minor BIGINT NOT NULL CHECK (estimated_value_minor >= 0),
        currency VARCHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
        expected_close DATE,
        notes VARCHAR(4000),
        territory VARCHAR(64) NOT NULL,
        products JSONB NOT NULL,
        lawful_basis VARCHAR(32) NOT NULL,
        consent_reference VARCHAR(200),
        last_activity_at TIMESTAMP WITH TIME ZONE,
        status VARCHAR(16) NOT NULL CHECK (status IN ('registered', 'offered', 'accepted',
            'contacted', 'qualified', 'won', 'lost', 'unrouted', 'expired')),
        exclusive_until TIMESTAMP WITH TIME ZONE NOT NULL,
        score INTEGER NOT NULL CHECK (score BETWEEN 0 AND 1000),
        scoring_version INTEGER,
        score_details JSONB NOT NULL,
        assignee_id UUID,
        won_amount_minor BIGINT,
        lost_reason VARCHAR(500),
        status_changed_at TIMESTAMP WITH TIME ZONE NOT NULL,
        reward JSONB,{_AUDIT}
        CONSTRAINT pk_leads PRIMARY KEY (id),
        CONSTRAINT uq_leads_partner_id UNIQUE (partner_id, reference),
        CONSTRAINT fk_leads_program_id_programs FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_leads_partner_id_partners FOREIGN KEY (partner_id) REFERENCES partners (id),
        CONSTRAINT fk_leads_assignee_id_partners FOREIGN KEY (assignee_id) REFERENCES partners (id),
        CONSTRAINT ck_leads_won CHECK ((status = 'won') = (won_amount_minor IS NOT NULL))
    )""")
    op.execute("CREATE INDEX ix_leads_program_id_domain_key ON leads (program_id, domain_key)")
    op.execute("CREATE INDEX ix_leads_program_id_name_key ON leads (program_id, name_key)")
    op.execute("CREATE INDEX ix_leads_assignee_id ON leads (assignee_id)")
    op.execute(f"""CREATE TABLE lead_routing_decisions (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        lead_id UUID NOT NULL,
        routing_version INTEGER NOT NULL,
        weights JSONB NOT NULL,
        candidates JSONB NOT NULL,
        excluded JSONB NOT NULL,
        tie_rule VARCHAR(300) NOT NULL,
        decided_at TIMESTAMP WITH TIME ZONE NOT NULL,{_AUDIT}
        CONSTRAINT pk_lead_routing_decisions PRIMARY KEY (id),
        CONSTRAINT uq_lead_routing_decisions_lead_id UNIQUE (lead_id),
        CONSTRAINT fk_lead_routing_decisions_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_lead_routing_decisions_lead_id_leads
            FOREIGN KEY (lead_id) REFERENCES leads (id)
    )""")
    op.execute(f"""CREATE TABLE lead_offers (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        lead_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        rank INTEGER NOT NULL CHECK (rank > 0),
        status VARCHAR(10) NOT NULL
            CHECK (status IN ('offered', 'accepted', 'declined', 'withdrawn')),
        offered_at TIMESTAMP WITH TIME ZONE NOT NULL,
        due_at TIMESTAMP WITH TIME ZONE NOT NULL,
        answered_at TIMESTAMP WITH TIME ZONE,
        decline_reason VARCHAR(500),{_AUDIT}
        CONSTRAINT pk_lead_offers PRIMARY KEY (id),
        CONSTRAINT uq_lead_offers_lead_id UNIQUE (lead_id, partner_id),
        CONSTRAINT fk_lead_offers_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_lead_offers_lead_id_leads FOREIGN KEY (lead_id) REFERENCES leads (id),
        CONSTRAINT fk_lead_offers_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id)
    )""")
    op.execute(
        "CREATE UNIQUE INDEX uq_lead_offers_open ON lead_offers (lead_id) WHERE status = 'offered'"
    )
    op.execute("CREATE INDEX ix_lead_offers_partner_id ON lead_offers (partner_id, status)")
    op.execute("CREATE INDEX ix_lead_offers_due ON lead_offers (due_at) WHERE status = 'offered'")
    op.execute(f"""CREATE TABLE lead_extension_requests (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        lead_id UUID NOT NULL,
        days INTEGER NOT NULL CHECK (days BETWEEN 1 AND 365),
        reason VARCHAR(500) NOT NULL,
        status VARCHAR(10) NOT NULL CHECK (status IN ('pending', 'approved', 'refused')),
        decided_at TIMESTAMP WITH TIME ZONE,
        decision_note VARCHAR(500),{_AUDIT}
        CONSTRAINT pk_lead_extension_requests PRIMARY KEY (id),
        CONSTRAINT fk_lead_extension_requests_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_lead_extension_requests_lead_id_leads
            FOREIGN KEY (lead_id) REFERENCES leads (id)
    )""")
    op.execute(
        "CREATE INDEX ix_lead_extension_requests_lead_id ON lead_extension_requests (lead_id)"
    )


def downgrade() -> None:
    for table in (
        "lead_extension_requests",
        "lead_offers",
        "lead_routing_decisions",
        "leads",
        "partner_lead_profiles",
        "lead_referral_terms",
        "lead_routing_versions",
        "lead_scoring_versions",
    ):
        op.execute(f"DROP TABLE {table}")
