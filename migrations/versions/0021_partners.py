"""Partner firms of a program: their profile, status history and users
(``partners.models``).

Revision ID: 0021_partners
Revises: 0020_stripe_inbox_retries
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021_partners"
down_revision: str | None = "0020_stripe_inbox_retries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = """
    sa_orm_sentinel INTEGER,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
"""

STATUSES = "('invited', 'active', 'suspended', 'offboarded')"


def upgrade() -> None:
    op.execute(f"""CREATE TABLE partners (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        slug VARCHAR(64) NOT NULL CHECK (slug ~ '^[a-z0-9][a-z0-9-]*$'),
        name VARCHAR(200) NOT NULL,
        legal_name VARCHAR(300) NOT NULL,
        country VARCHAR(2) NOT NULL CHECK (country ~ '^[A-Z]{{2}}$'),
        currency VARCHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
        contacts JSONB NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(contacts) = 'array'),
        tier VARCHAR(50),
        status VARCHAR(16) NOT NULL CHECK (status IN {STATUSES}),
        status_changed_at TIMESTAMP WITH TIME ZONE NOT NULL,
        parent_id UUID,
        {AUDIT},
        CONSTRAINT pk_partners PRIMARY KEY (id),
        CONSTRAINT uq_partners_program_id UNIQUE (program_id, slug),
        CONSTRAINT fk_partners_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_partners_parent_id_partners
            FOREIGN KEY (parent_id) REFERENCES partners (id),
        CHECK (parent_id IS DISTINCT FROM id)
    )""")
    op.execute("CREATE INDEX ix_partners_parent_id ON partners (parent_id)")
    op.execute(f"""CREATE TABLE partner_status_changes (
        id UUID NOT NULL,
        partner_id UUID NOT NULL,
        from_status VARCHAR(16) CHECK (from_status IN {STATUSES}),
        to_status VARCHAR(16) NOT NULL CHECK (to_status IN {STATUSES}),
        reason VARCHAR(500),
        actor VARCHAR(200) NOT NULL,
        at TIMESTAMP WITH TIME ZONE NOT NULL,
        {AUDIT},
        CONSTRAINT pk_partner_status_changes PRIMARY KEY (id),
        CONSTRAINT fk_partner_status_changes_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id)
    )""")
    op.execute(
        "CREATE INDEX ix_partner_status_changes_partner_id"
        " ON partner_status_changes (partner_id, at)"
    )
    op.execute(f"""CREATE TABLE partner_users (
        id UUID NOT NULL,
        partner_id UUID NOT NULL,
        email VARCHAR(320) NOT NULL,
        name VARCHAR(200) NOT NULL,
        role VARCHAR(16) NOT NULL CHECK (role IN ('admin', 'sales', 'marketing', 'finance')),
        removed_at TIMESTAMP WITH TIME ZONE,
        {AUDIT},
        CONSTRAINT pk_partner_users PRIMARY KEY (id),
        CONSTRAINT uq_partner_users_partner_id UNIQUE (partner_id, email),
        CONSTRAINT fk_partner_users_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id)
    )""")


def downgrade() -> None:
    op.execute("DROP TABLE partner_users")
    op.execute("DROP TABLE partner_status_changes")
    op.execute("DROP TABLE partners")
