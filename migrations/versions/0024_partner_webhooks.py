"""Webhooks to partners: endpoints, deliveries and their attempts, and the
notices left for partners (``partners.webhook_models``).

Revision ID: 0024_partner_webhooks
Revises: 0023_coalition_points
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0024_partner_webhooks"
down_revision: str | None = "0023_coalition_points"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = """
    sa_orm_sentinel INTEGER,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
"""


def upgrade() -> None:
    op.execute(f"""CREATE TABLE webhook_endpoints (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        url VARCHAR(2000) NOT NULL CHECK (url ~ '^https?://'),
        description VARCHAR(500) NOT NULL,
        event_types VARCHAR(100)[] CHECK (cardinality(event_types) > 0),
        status VARCHAR(16) NOT NULL CHECK (status IN ('enabled', 'disabled')),
        secret VARCHAR(100) NOT NULL CHECK (secret LIKE 'whsec\\_%'),
        previous_secret VARCHAR(100) CHECK (previous_secret LIKE 'whsec\\_%'),
        previous_secret_expires_at TIMESTAMP WITH TIME ZONE,
        failing_since TIMESTAMP WITH TIME ZONE,
        disabled_at TIMESTAMP WITH TIME ZONE,
        disabled_reason VARCHAR(500),
        {AUDIT},
        CONSTRAINT pk_webhook_endpoints PRIMARY KEY (id),
        CONSTRAINT fk_webhook_endpoints_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_webhook_endpoints_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id),
        CHECK ((previous_secret IS NULL) = (previous_secret_expires_at IS NULL)),
        CHECK ((status = 'disabled') = (disabled_at IS NOT NULL))
    )""")
    op.execute("CREATE INDEX ix_webhook_endpoints_partner_id ON webhook_endpoints (partner_id, id)")
    op.execute("""CREATE TABLE webhook_deliveries (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        endpoint_id UUID NOT NULL,
        event_id UUID NOT NULL,
        event_type VARCHAR(100) NOT NULL,
        body TEXT NOT NULL,
        status VARCHAR(16) NOT NULL CHECK (status IN ('pending', 'succeeded', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        retries_left SMALLINT NOT NULL CHECK (retries_left >= 0),
        next_attempt_at TIMESTAMP WITH TIME ZONE,
        lease UUID,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        delivered_at TIMESTAMP WITH TIME ZONE,
        dead_at TIMESTAMP WITH TIME ZONE,
        CONSTRAINT pk_webhook_deliveries PRIMARY KEY (id),
        CONSTRAINT uq_webhook_deliveries_endpoint_id UNIQUE (endpoint_id, event_id),
        CONSTRAINT fk_webhook_deliveries_endpoint_id_webhook_endpoints
            FOREIGN KEY (endpoint_id) REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
        CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL))
    )""")
    # The sender's claim: a skip scan of the endpoints with pending
    # deliveries, then the due ones of each; the bulk of the table
    # (delivered ones) is in no index of it.
    op.execute(
        "CREATE INDEX ix_webhook_deliveries_pending"
        " ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending'"
    )
    op.execute(
        "CREATE INDEX ix_webhook_deliveries_endpoint_log ON webhook_deliveries (endpoint_id, id)"
    )
    op.execute("""CREATE TABLE webhook_attempts (
        id UUID NOT NULL,
        delivery_id UUID NOT NULL,
        number INTEGER NOT NULL CHECK (number >= 1),
        attempted_at TIMESTAMP WITH TIME ZONE NOT NULL,
        status_code SMALLINT,
        latency_ms INTEGER NOT NULL CHECK (latency_ms >= 0),
        succeeded BOOLEAN NOT NULL,
        error VARCHAR(500),
        response_head VARCHAR(1000),
        CONSTRAINT pk_webhook_attempts PRIMARY KEY (id),
        CONSTRAINT fk_webhook_attempts_delivery_id_webhook_deliveries
            FOREIGN KEY (delivery_id) REFERENCES webhook_deliveries (id) ON DELETE CASCADE
    )""")
    op.execute(
        "CREATE INDEX ix_webhook_attempts_delivery_id ON webhook_attempts (delivery_id, number)"
    )
    op.execute("""CREATE TABLE partner_notices (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        kind VARCHAR(64) NOT NULL,
        subject VARCHAR(300) NOT NULL,
        body TEXT NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        sent_at TIMESTAMP WITH TIME ZONE,
        CONSTRAINT pk_partner_notices PRIMARY KEY (id),
        CONSTRAINT fk_partner_notices_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_partner_notices_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id)
    )""")
    op.execute(
        "CREATE INDEX ix_partner_notices_partner_id ON partner_notices (partner_id, created_at)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE partner_notices")
    op.execute("DROP TABLE webhook_attempts")
    op.execute("DROP TABLE webhook_deliveries")
    op.execute("DROP TABLE webhook_endpoints")
