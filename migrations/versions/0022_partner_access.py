"""Partner machine access: the platform's token signing keys, partner OAuth
clients, and the partner API's idempotency keys (``partners.signing_keys``,
``partners.clients``, ``partners.idempotency_keys``).

A trigger on each table that decides what a partner token may do (its
client, the partner firms and their hierarchy, the signing keys) notifies
the channel ``partner_access`` at commit, so that every server process drops
what it remembered of them at once (``api.partner_access``).

Revision ID: 0022_partner_access
Revises: 0021_partners
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022_partner_access"
down_revision: str | None = "0021_partners"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = """
    sa_orm_sentinel INTEGER,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
"""


def upgrade() -> None:
    op.execute("""CREATE TABLE signing_keys (
        id UUID NOT NULL,
        kid VARCHAR(64) NOT NULL,
        algorithm VARCHAR(16) NOT NULL CHECK (algorithm = 'ES256'),
        public_jwk JSONB NOT NULL CHECK (jsonb_typeof(public_jwk) = 'object'),
        private_key_sealed BYTEA,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        superseded_at TIMESTAMP WITH TIME ZONE,
        retire_at TIMESTAMP WITH TIME ZONE,
        CONSTRAINT pk_signing_keys PRIMARY KEY (id),
        CONSTRAINT uq_signing_keys_kid UNIQUE (kid),
        CHECK ((superseded_at IS NULL) = (retire_at IS NULL)),
        CHECK (superseded_at IS NULL OR private_key_sealed IS NULL),
        CHECK (superseded_at IS NOT NULL OR private_key_sealed IS NOT NULL)
    )""")
    # One current key: the one that signs.
    op.execute(
        "CREATE UNIQUE INDEX uq_signing_keys_current ON signing_keys ((true))"
        " WHERE superseded_at IS NULL"
    )
    op.execute(f"""CREATE TABLE partner_clients (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        client_id VARCHAR(40) NOT NULL CHECK (client_id ~ '^pc_[0-9a-f]{{24}}$'),
        name VARCHAR(100) NOT NULL,
        scopes TEXT[] NOT NULL CHECK (cardinality(scopes) > 0),
        reach VARCHAR(16) NOT NULL CHECK (reach IN ('company', 'subsidiaries', 'group')),
        secret_hash VARCHAR(200) NOT NULL,
        previous_secret_hash VARCHAR(200),
        previous_valid_until TIMESTAMP WITH TIME ZONE,
        secret_rotated_at TIMESTAMP WITH TIME ZONE,
        revoked_at TIMESTAMP WITH TIME ZONE,
        created_by VARCHAR(200) NOT NULL,
        {AUDIT},
        CONSTRAINT pk_partner_clients PRIMARY KEY (id),
        CONSTRAINT uq_partner_clients_client_id UNIQUE (client_id),
        CONSTRAINT uq_partner_clients_partner_id UNIQUE (partner_id, name),
        CONSTRAINT fk_partner_clients_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_partner_clients_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id),
        CHECK ((previous_secret_hash IS NULL) = (previous_valid_until IS NULL))
    )""")
    op.execute("""CREATE TABLE idempotency_keys (
        partner_id UUID NOT NULL,
        key VARCHAR(200) NOT NULL,
        program_id UUID NOT NULL,
        request_sha256 BYTEA NOT NULL CHECK (octet_length(request_sha256) = 32),
        status_code SMALLINT NOT NULL CHECK (status_code BETWEEN 200 AND 499),
        response_headers JSONB NOT NULL CHECK (jsonb_typeof(response_headers) = 'array'),
        response_body BYTEA NOT NULL,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        CONSTRAINT pk_idempotency_keys PRIMARY KEY (partner_id, key),
        CONSTRAINT fk_idempotency_keys_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id),
        CONSTRAINT fk_idempotency_keys_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id)
    )""")
    op.execute("CREATE INDEX ix_idempotency_keys_created_at ON idempotency_keys (created_at)")
    op.execute("""CREATE FUNCTION notify_partner_access() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('partner_access', TG_TABLE_NAME);
            RETURN NULL;
        END
        $$""")
    for table, events in (
        ("signing_keys", "INSERT OR UPDATE OR DELETE"),
        ("partner_clients", "UPDATE OR DELETE"),
        # A firm's status, and its group (a company joining or moving
        # changes what a client of the group reaches).
        ("partners", "INSERT OR UPDATE OF status, parent_id OR DELETE"),
    ):
        op.execute(
            f"CREATE TRIGGER {table}_notify_partner_access AFTER {events} ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION notify_partner_access()"
        )


def downgrade() -> None:
    for table in ("partners", "partner_clients", "signing_keys"):
        op.execute(f"DROP TRIGGER {table}_notify_partner_access ON {table}")
    op.execute("DROP FUNCTION notify_partner_access()")
    op.execute("DROP TABLE idempotency_keys")
    op.execute("DROP TABLE partner_clients")
    op.execute("DROP TABLE signing_keys")
