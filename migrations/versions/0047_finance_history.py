"""Tier history and return reversals for finance.

- ``member_tier_changes``: every change of a member's tier, from the instant
  it took effect (``valid_from``), with the tier before it. Written by a
  trigger on ``members`` in the transaction of the change, whatever path
  makes it (a purchase's qualification in the batched write, the downgrade
  job, a direct update): no path can move a tier without its row. The
  backfill gives every member one row at migration time, their tier then
  as both the tier and the tier before: history starts there, and a day
  before it counts each member in the tier held at migration.
- ``revenue_return_reversals``: per period and sale, the points' share of
  the part of the price returned after the sale was allocated (IFRS 15: a
  return reverses its allocation), cumulative to date; immutable like the
  allocations.
- ``revenue_periods.reversed_minor``: the period's reversals.

Revision ID: 0047_finance_history
Revises: 0046_operator_webhooks
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0047_finance_history"
down_revision: str | None = "0046_operator_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AUDIT = """
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),"""

STATEMENTS = [
    f"""CREATE TABLE member_tier_changes (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        member_id UUID NOT NULL,
        tier_code VARCHAR(50),
        previous_tier_code VARCHAR(50),
        valid_from TIMESTAMP WITH TIME ZONE NOT NULL,{_AUDIT}
        CONSTRAINT pk_member_tier_changes PRIMARY KEY (id),
        CONSTRAINT fk_member_tier_changes_program_id_programs FOREIGN KEY (program_id)
            REFERENCES programs (id),
        CONSTRAINT fk_member_tier_changes_member_id_members FOREIGN KEY (member_id)
            REFERENCES members (id) ON DELETE CASCADE
    )""",
    """CREATE INDEX ix_member_tier_changes_member
        ON member_tier_changes (member_id, valid_from, created_at)""",
    """CREATE INDEX ix_member_tier_changes_program
        ON member_tier_changes (program_id, valid_from)""",
    # The change's instant: the member's new tier_since (a purchase's
    # business time, the downgrade job's now) when the change set one, else
    # now; never before the member's last recorded change, so the latest
    # row is always the member's tier (a backdated purchase after a
    # downgrade takes effect at the downgrade, not before it).
    """CREATE FUNCTION record_member_tier_change() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        since timestamptz := CASE WHEN NEW.tier_since IS DISTINCT FROM OLD.tier_since
            THEN coalesce(NEW.tier_since, now()) ELSE now() END;
        latest timestamptz;
    BEGIN
        SELECT max(valid_from) INTO latest FROM member_tier_changes WHERE member_id = NEW.id;
        INSERT INTO member_tier_changes
            (id, program_id, member_id, tier_code, previous_tier_code, valid_from, created_at,
            updated_at)
        -- clock_timestamp: two changes in one transaction keep their order.
        VALUES (gen_random_uuid(), NEW.program_id, NEW.id, NEW.tier_code, OLD.tier_code,
            greatest(since, coalesce(latest, since)), clock_timestamp(), clock_timestamp());
        RETURN NULL;
    END
    $$""",
    """CREATE TRIGGER members_record_tier_change
        AFTER UPDATE OF tier_code ON members
        FOR EACH ROW WHEN (OLD.tier_code IS DISTINCT FROM NEW.tier_code)
        EXECUTE FUNCTION record_member_tier_change()""",
    """INSERT INTO member_tier_changes
        (id, program_id, member_id, tier_code, previous_tier_code, valid_from)
        SELECT gen_random_uuid(), program_id, id, tier_code, tier_code, now() FROM members""",
    f"""CREATE TABLE revenue_return_reversals (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        period DATE NOT NULL,
        purchase_id UUID NOT NULL,
        allocation_id UUID NOT NULL,
        cohort DATE NOT NULL,
        allocated_price_minor BIGINT NOT NULL,
        allocated_points_minor BIGINT NOT NULL,
        returned_minor BIGINT NOT NULL
            CHECK (returned_minor BETWEEN 0 AND allocated_price_minor),
        reversed_to_date_minor BIGINT NOT NULL,
        reversed_before_minor BIGINT NOT NULL,
        points_minor BIGINT NOT NULL,
        return_ids JSONB NOT NULL,{_AUDIT}
        CONSTRAINT pk_revenue_return_reversals PRIMARY KEY (id),
        CONSTRAINT uq_revenue_return_reversals_purchase UNIQUE (program_id, period, purchase_id),
        CONSTRAINT fk_revenue_return_reversals_program_id_programs FOREIGN KEY (program_id)
            REFERENCES programs (id),
        CONSTRAINT fk_revenue_return_reversals_purchase_id_purchases FOREIGN KEY (purchase_id)
            REFERENCES purchases (id),
        CONSTRAINT fk_revenue_return_reversals_allocation_id_revenue_allocations
            FOREIGN KEY (allocation_id) REFERENCES revenue_allocations (id),
        CONSTRAINT ck_revenue_return_reversals_catch_up CHECK (
            points_minor = reversed_to_date_minor - reversed_before_minor)
    )""",
    """CREATE INDEX ix_revenue_return_reversals_latest
        ON revenue_return_reversals (program_id, purchase_id, period)""",
    """CREATE TRIGGER revenue_return_reversals_immutable
        BEFORE UPDATE OR DELETE ON revenue_return_reversals
        FOR EACH ROW EXECUTE FUNCTION revenue_allocations_immutable()""",
    "ALTER TABLE revenue_periods ADD COLUMN reversed_minor BIGINT NOT NULL DEFAULT 0",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("ALTER TABLE revenue_periods DROP COLUMN reversed_minor")
    op.execute("DROP TABLE revenue_return_reversals")
    op.execute("DROP TRIGGER members_record_tier_change ON members")
    op.execute("DROP FUNCTION record_member_tier_change()")
    op.execute("DROP TABLE member_tier_changes")
