"""IFRS 15 revenue deferral: revenue settings per program, the allocation
of each sale and partner fee (immutable: a trigger refuses updates and
deletes), breakage estimates per period and cohort, the recognitions per
period, cohort and element, and each period's run
(``finance.revenue.models``).

Revision ID: 0041_revenue_deferral
Revises: 0040_point_values
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0041_revenue_deferral"
down_revision: str | None = "0040_point_values"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AUDIT = """
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),"""
_RATE = "NUMERIC(11, 10) NOT NULL CHECK ({0} BETWEEN 0 AND 1)"
_POLICY = """
        rounding_policy VARCHAR(5) NOT NULL CHECK (rounding_policy IN ('exact', 'ratio')),
        rounding_mode VARCHAR(9) NOT NULL
            CHECK (rounding_mode IN ('half_even', 'half_up', 'down')),
        ratio_places INTEGER NOT NULL CHECK (ratio_places BETWEEN 1 AND 12),"""

STATEMENTS = [
    f"""CREATE TABLE revenue_settings (
        id UUID NOT NULL,
        program_id UUID NOT NULL,{_POLICY}
        default_breakage_rate {_RATE.format("default_breakage_rate")},
        development_months INTEGER NOT NULL CHECK (development_months BETWEEN 1 AND 240),
        service_life_months INTEGER NOT NULL CHECK (service_life_months BETWEEN 1 AND 240),
        gl_accounts JSONB NOT NULL,{_AUDIT}
        CONSTRAINT pk_revenue_settings PRIMARY KEY (id),
        CONSTRAINT uq_revenue_settings_program_id UNIQUE (program_id),
        CONSTRAINT fk_revenue_settings_program_id_programs FOREIGN KEY (program_id)
            REFERENCES programs (id)
    )""",
    f"""CREATE TABLE revenue_periods (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        period DATE NOT NULL CHECK (extract(day FROM period) = 1),
        recognised_at TIMESTAMP WITH TIME ZONE NOT NULL,
        currency VARCHAR(3) NOT NULL,
        allocations INTEGER NOT NULL,
        estimates INTEGER NOT NULL,
        deferred_minor BIGINT NOT NULL,
        service_deferred_minor BIGINT NOT NULL,
        recognised_minor BIGINT NOT NULL,
        service_recognised_minor BIGINT NOT NULL,{_AUDIT}
        CONSTRAINT pk_revenue_periods PRIMARY KEY (id),
        CONSTRAINT uq_revenue_periods_period UNIQUE (program_id, period),
        CONSTRAINT fk_revenue_periods_program_id_programs FOREIGN KEY (program_id)
            REFERENCES programs (id)
    )""",
    f"""CREATE TABLE breakage_estimates (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        period DATE NOT NULL,
        cohort DATE NOT NULL CHECK (cohort <= period),
        age_months INTEGER NOT NULL CHECK (age_months >= 0),
        method VARCHAR(12) NOT NULL CHECK (method IN ('mature', 'chain_ladder', 'default')),
        issued_points BIGINT NOT NULL CHECK (issued_points > 0),
        redeemed_points BIGINT NOT NULL,
        expired_points BIGINT NOT NULL,
        development_factors JSONB NOT NULL,
        development_months INTEGER NOT NULL,
        default_breakage_rate {_RATE.format("default_breakage_rate")},
        expected_redemption_rate {_RATE.format("expected_redemption_rate")},
        breakage_rate {_RATE.format("breakage_rate")},{_AUDIT}
        CONSTRAINT pk_breakage_estimates PRIMARY KEY (id),
        CONSTRAINT uq_breakage_estimates_cohort UNIQUE (program_id, period, cohort),
        CONSTRAINT fk_breakage_estimates_program_id_programs FOREIGN KEY (program_id)
            REFERENCES programs (id),
        CONSTRAINT ck_breakage_estimates_rates
            CHECK (expected_redemption_rate + breakage_rate = 1)
    )""",
    f"""CREATE TABLE revenue_allocations (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        period DATE NOT NULL,
        source VARCHAR(11) NOT NULL CHECK (source IN ('sale', 'partner_fee')),
        purchase_id UUID,
        statement_line_id UUID,
        cohort DATE NOT NULL,
        sold_at TIMESTAMP WITH TIME ZONE NOT NULL,
        currency VARCHAR(3) NOT NULL,
        price_minor BIGINT NOT NULL,
        points BIGINT NOT NULL,
        point_value_minor NUMERIC(18, 6) NOT NULL,
        breakage_rate NUMERIC(11, 10) CHECK (breakage_rate BETWEEN 0 AND 1),
        breakage_estimate_id UUID,
        goods_ssp NUMERIC,
        points_ssp NUMERIC,{_POLICY}
        ratio NUMERIC,
        goods_minor BIGINT NOT NULL,
        points_minor BIGINT NOT NULL,
        service_minor BIGINT NOT NULL,{_AUDIT}
        CONSTRAINT pk_revenue_allocations PRIMARY KEY (id),
        CONSTRAINT uq_revenue_allocations_purchase_id UNIQUE (purchase_id),
        CONSTRAINT uq_revenue_allocations_statement_line_id UNIQUE (statement_line_id),
        CONSTRAINT fk_revenue_allocations_program_id_programs FOREIGN KEY (program_id)
            REFERENCES programs (id),
        CONSTRAINT fk_revenue_allocations_purchase_id_purchases FOREIGN KEY (purchase_id)
            REFERENCES purchases (id),
        CONSTRAINT fk_revenue_allocations_statement_line_id_partner_statement_lines
            FOREIGN KEY (statement_line_id) REFERENCES partner_statement_lines (id),
        CONSTRAINT fk_revenue_allocations_breakage_estimate_id_breakage_estimates
            FOREIGN KEY (breakage_estimate_id) REFERENCES breakage_estimates (id),
        CONSTRAINT ck_revenue_allocations_source CHECK (
            (source = 'sale') = (purchase_id IS NOT NULL)
            AND (source = 'partner_fee') = (statement_line_id IS NOT NULL)),
        CONSTRAINT ck_revenue_allocations_sum
            CHECK (goods_minor + points_minor + service_minor = price_minor)
    )""",
    "CREATE INDEX ix_revenue_allocations_program_id ON revenue_allocations (program_id, id)",
    "CREATE INDEX ix_revenue_allocations_cohort ON revenue_allocations (program_id, cohort)",
    """CREATE FUNCTION revenue_allocations_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'revenue allocations are immutable: % refused', TG_OP
            USING ERRCODE = 'restrict_violation';
    END
    $$""",
    """CREATE TRIGGER revenue_allocations_immutable
        BEFORE UPDATE OR DELETE ON revenue_allocations
        FOR EACH ROW EXECUTE FUNCTION revenue_allocations_immutable()""",
    f"""CREATE TABLE revenue_recognitions (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        period DATE NOT NULL,
        cohort DATE NOT NULL CHECK (cohort <= period),
        element VARCHAR(7) NOT NULL CHECK (element IN ('points', 'service')),
        deferred_minor BIGINT NOT NULL,
        issued_points BIGINT NOT NULL,
        expected_points NUMERIC NOT NULL,
        redeemed_points BIGINT NOT NULL,
        ratio {_RATE.format("ratio")},
        recognised_to_date_minor BIGINT NOT NULL,
        recognised_before_minor BIGINT NOT NULL,
        recognised_in_period_minor BIGINT NOT NULL,
        breakage_estimate_id UUID,{_AUDIT}
        CONSTRAINT pk_revenue_recognitions PRIMARY KEY (id),
        CONSTRAINT uq_revenue_recognitions_cohort UNIQUE (program_id, period, cohort, element),
        CONSTRAINT fk_revenue_recognitions_program_id_programs FOREIGN KEY (program_id)
            REFERENCES programs (id),
        CONSTRAINT fk_revenue_recognitions_breakage_estimate_id_breakage_estimates
            FOREIGN KEY (breakage_estimate_id) REFERENCES breakage_estimates (id),
        CONSTRAINT ck_revenue_recognitions_catch_up CHECK (
            recognised_in_period_minor = recognised_to_date_minor - recognised_before_minor)
    )""",
    """CREATE INDEX ix_revenue_recognitions_latest
        ON revenue_recognitions (program_id, cohort, element, period)""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE revenue_recognitions")
    op.execute("DROP TABLE revenue_allocations")
    op.execute("DROP FUNCTION revenue_allocations_immutable()")
    op.execute("DROP TABLE breakage_estimates")
    op.execute("DROP TABLE revenue_periods")
    op.execute("DROP TABLE revenue_settings")
