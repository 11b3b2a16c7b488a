"""A lone plain transfer is posted without the set-based stages.

With few callers the writer's batches hold one transfer, and the batch
function's set-based stages (unnest, joins, aggregates over arrays of one)
cost the server several times what a plain function posting one transfer
does. A batch of exactly one plain transfer (not linked, not pending, not a
post or a void) now takes scalar statements at the top of the function, with
the same rules, order of checks and result codes as the general path (replay
answers, the stateless checks, limits, overflow, the ledger-0 id reservation
of 0013); anything else falls through to the general path unchanged.

Revision ID: 0014_lone_transfer_fast_path
Revises: 0013_one_outcome_per_id
Create Date: 2026-12-01
"""

import importlib
from collections.abc import Sequence

from alembic import op

revision: str = "0014_lone_transfer_fast_path"
down_revision: str | None = "0013_one_outcome_per_id"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_0013 = importlib.import_module("migrations.versions.0013_one_outcome_per_id")
_PREVIOUS: str = _0013._edited()

_DECLARATIONS = """
    -- the lone plain transfer: its two accounts
    lone_from_pre boolean;
    db_ctid tid; db_ledger integer; db_flags integer;
    db_dp bigint; db_dpo bigint; db_cp bigint; db_cpo bigint;
    cr_ctid tid; cr_ledger integer; cr_flags integer;
    cr_dp bigint; cr_dpo bigint; cr_cp bigint; cr_cpo bigint;
"""

# Each statement mirrors a stage of the general path below, named by its number.
_FAST_PATH = """
    -- 0. A lone plain transfer (flags other than the end of a request unset):
    -- the general path's rules in scalar statements. Nulls where a column
    -- must not be null go the general way, which fails them as it does.
    IF n = 1 AND p_flags[1] & 65535 = 0 AND p_id[1] IS NOT NULL
       AND p_amount[1] IS NOT NULL AND p_timeout[1] IS NOT NULL THEN
        amt := p_amount[1];
        t_ts := 0;
        -- 1.
        IF p_ledger[1] IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(1279607879, p_ledger[1]);
        END IF;
        -- 1a.
        SELECT CASE WHEN t.debit_account_id = coalesce(p_debit[1], t.debit_account_id)
                     AND t.credit_account_id = coalesce(p_credit[1], t.credit_account_id)
                     AND t.amount = amt
                     AND t.ledger = coalesce(p_ledger[1], t.ledger)
                     AND t.code = coalesce(p_code[1], t.code)
                     AND t.flags = 0
                     AND t.pending_id IS NOT DISTINCT FROM p_pending_id[1]
                     AND t.timeout = p_timeout[1]
                     AND coalesce(t.metadata, '{}') = coalesce(p_metadata[1], '{}')
                     AND t.effective_at IS NOT DISTINCT FROM p_effective_at[1]
                    THEN 1 ELSE 2 END,
               t."timestamp"
        INTO code, t_ts
        FROM transfers t WHERE t.id = p_id[1] AND t.ledger <> 0;
        IF FOUND THEN
            IF code <> 1 THEN t_ts := 0; END IF;
        ELSE
            t_ts := 0;
            SELECT CASE WHEN (x.debit_account_id, x.credit_account_id, x.amount, x.ledger,
                              x.code, x.flags, x.pending_id, x.timeout, x.metadata,
                              x.effective_at)
                             IS NOT DISTINCT FROM
                             (p_debit[1], p_credit[1], amt, p_ledger[1], p_code[1], 0,
                              p_pending_id[1], p_timeout[1], p_metadata[1],
                              p_effective_at[1])
                        THEN x.result ELSE 2 END
            INTO code
            FROM transfer_rejections x WHERE x.id = p_id[1];
            IF NOT FOUND THEN code := -1; END IF;
        END IF;
        lone_from_pre := code >= 0;

        -- 1e. (flags 0: no two-phase, no pending timeout)
        IF code < 0 THEN
            code := CASE
                WHEN p_id[1] = c_nil THEN 5
                WHEN p_pending_id[1] IS NOT NULL THEN 12
                WHEN p_debit[1] IS NULL OR p_credit[1] IS NULL THEN 8
                WHEN p_debit[1] = p_credit[1] THEN 7
                WHEN amt <= 0 THEN 9
                WHEN p_ledger[1] IS NULL THEN 11
                WHEN p_code[1] IS NULL THEN 10
                WHEN p_timeout[1] <> 0 THEN 15
                WHEN p_effective_at[1] > v_now THEN 16
                ELSE -1
            END;
        END IF;

        -- 1d., the rest of 1e. and 2.
        IF code < 0 THEN
            SELECT a.ctid, a.ledger, a.flags, a.debits_pending, a.debits_posted,
                   a.credits_pending, a.credits_posted
            INTO db_ctid, db_ledger, db_flags, db_dp, db_dpo, db_cp, db_cpo
            FROM accounts a WHERE a.id = p_debit[1];
            IF NOT FOUND THEN
                code := 17;
            ELSE
                SELECT a.ctid, a.ledger, a.flags, a.debits_pending, a.debits_posted,
                       a.credits_pending, a.credits_posted
                INTO cr_ctid, cr_ledger, cr_flags, cr_dp, cr_dpo, cr_cp, cr_cpo
                FROM accounts a WHERE a.id = p_credit[1];
                IF NOT FOUND THEN
                    code := 18;
                ELSIF db_ledger <> p_ledger[1] OR cr_ledger <> p_ledger[1] THEN
                    code := 19;
                ELSIF db_dp + db_dpo > c_max - amt THEN
                    code := 27;
                ELSIF cr_cp + cr_cpo > c_max - amt THEN
                    code := 28;
                ELSIF db_flags & 1 <> 0 AND db_dp + db_dpo + amt > db_cpo THEN
                    code := 29;
                ELSIF cr_flags & 2 <> 0 AND cr_cp + cr_cpo + amt > cr_dpo THEN
                    code := 30;
                ELSE
                    code := 0;
                END IF;
            END IF;
        END IF;

        -- 3.
        ts_base := nextval('transfer_timestamp_seq');
        IF code = 0 THEN
            t_ts := ts_base;
            INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger,
                                   code, flags, pending_id, timeout, metadata, effective_at,
                                   "timestamp", created_at, expires_at)
            VALUES (p_id[1], p_debit[1], p_credit[1], amt, p_ledger[1], p_code[1], 0, NULL,
                    0, p_metadata[1], p_effective_at[1], ts_base, v_now, NULL);
            UPDATE accounts a SET debits_posted = a.debits_posted + amt
            WHERE a.ctid = db_ctid AND a.id = p_debit[1];
            GET DIAGNOSTICS n_updated = ROW_COUNT;
            UPDATE accounts a SET credits_posted = a.credits_posted + amt
            WHERE a.ctid = cr_ctid AND a.id = p_credit[1];
            GET DIAGNOSTICS d = ROW_COUNT;
            IF n_updated + d <> 2 THEN
                RAISE EXCEPTION 'ledger_create_transfers: an account moved during the batch'
                    USING ERRCODE = 'serialization_failure';
            END IF;
        ELSIF code > 2 AND code <> 5 AND NOT lone_from_pre AND p_id[1] <> c_nil THEN
            INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger,
                                   code, flags, timeout, "timestamp", created_at)
            VALUES (p_id[1], c_nil, c_nil, 0, 0, 0, 0, 0, 0, v_now)
            ON CONFLICT (id) DO NOTHING;
            GET DIAGNOSTICS n_updated = ROW_COUNT;
            IF n_updated = 0 THEN
                -- Taken meanwhile by a batch of another ledger.
                code := 2;
            ELSE
                INSERT INTO transfer_rejections (id, result, debit_account_id,
                                                 credit_account_id, amount, ledger, code,
                                                 flags, pending_id, timeout, metadata,
                                                 effective_at)
                VALUES (p_id[1], code, p_debit[1], p_credit[1], amt, p_ledger[1], p_code[1],
                        0, p_pending_id[1], p_timeout[1], p_metadata[1], p_effective_at[1])
                ON CONFLICT (id) DO NOTHING;
            END IF;
        END IF;
        results := ARRAY[code];
        timestamps := ARRAY[t_ts];
        RETURN;
    END IF;
"""

_EDITS = (
    (
        """    n_updated integer;
BEGIN""",
        """    n_updated integer;""" + _DECLARATIONS + """BEGIN""",
    ),
    (
        """        RAISE EXCEPTION 'ledger_create_transfers: arrays of unequal length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
""",
        """        RAISE EXCEPTION 'ledger_create_transfers: arrays of unequal length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
"""
        + _FAST_PATH,
    ),
)


def _edited() -> str:
    edited: str = _0013.apply_edits(_PREVIOUS, _EDITS, "0014")
    return edited


def upgrade() -> None:
    op.execute(_edited())


def downgrade() -> None:
    op.execute(_PREVIOUS)
