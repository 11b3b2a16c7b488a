"""The double-entry points ledger: ledgers, accounts, transfers.

Revision ID: 0001_ledger
Revises:
Create Date: 2026-11-23

The posting logic lives in PL/pgSQL so that a whole batch of transfers is
validated, applied and committed in one database call: the caller never holds
row locks across a network round trip. The result codes are positions in
``ledger.schemas.CreateTransferResult``; keep the two in step.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001_ledger"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


TABLES = """
CREATE SEQUENCE ledger_timestamp_seq AS bigint;

CREATE TABLE ledgers (
    id integer PRIMARY KEY CHECK (id > 0),
    name text NOT NULL UNIQUE,
    asset_scale smallint NOT NULL DEFAULT 0 CHECK (asset_scale BETWEEN 0 AND 18),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE accounts (
    id uuid PRIMARY KEY,
    ledger integer NOT NULL REFERENCES ledgers (id),
    code integer NOT NULL CHECK (code > 0),
    flags integer NOT NULL DEFAULT 0 CHECK (flags & ~3 = 0 AND flags & 3 <> 3),
    debits_pending bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    debits_posted bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_pending bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    credits_posted bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    metadata jsonb,
    "timestamp" bigint NOT NULL UNIQUE DEFAULT nextval('ledger_timestamp_seq'),
    created_at timestamptz NOT NULL DEFAULT now(),
    -- The last line of defence: the batch function never lets these fail.
    CONSTRAINT debits_must_not_exceed_credits
        CHECK (flags & 1 = 0 OR debits_pending + debits_posted <= credits_posted),
    CONSTRAINT credits_must_not_exceed_debits
        CHECK (flags & 2 = 0 OR credits_pending + credits_posted <= debits_posted)
);
CREATE INDEX accounts_ledger_idx ON accounts (ledger, code);

-- Each row is one balanced movement: the debit entry and the credit entry.
-- No foreign keys: the batch function resolves every account under lock, and
-- a foreign key check per row would cost the hot path an index probe.
CREATE TABLE transfers (
    id uuid PRIMARY KEY,
    debit_account_id uuid NOT NULL,
    credit_account_id uuid NOT NULL,
    amount bigint NOT NULL CHECK (amount >= 0),
    ledger integer NOT NULL,
    code integer NOT NULL,
    flags integer NOT NULL,
    pending_id uuid,
    timeout integer NOT NULL DEFAULT 0,
    metadata jsonb,
    effective_at timestamptz,
    "timestamp" bigint NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz
);
CREATE INDEX transfers_debit_idx ON transfers (debit_account_id, "timestamp");
CREATE INDEX transfers_credit_idx ON transfers (credit_account_id, "timestamp");
-- A pending transfer is resolved (posted, voided or expired) at most once.
CREATE UNIQUE INDEX transfers_pending_resolution_idx ON transfers (pending_id)
    WHERE pending_id IS NOT NULL;

-- Ids that failed stay failed: a retry returns the original failure.
CREATE TABLE transfer_rejections (
    id uuid PRIMARY KEY,
    result smallint NOT NULL,
    debit_account_id uuid,
    credit_account_id uuid,
    amount bigint NOT NULL,
    ledger integer,
    code integer,
    flags integer NOT NULL,
    pending_id uuid,
    timeout integer NOT NULL,
    metadata jsonb,
    effective_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Open pending transfers with a timeout; the sweeper voids them once due.
CREATE TABLE pending_expiries (
    transfer_id uuid PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX pending_expiries_due_idx ON pending_expiries (expires_at);
"""

IMMUTABILITY = """
CREATE FUNCTION ledger_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is forbidden: ledger records are immutable',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER transfers_immutable BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER transfer_rejections_immutable BEFORE UPDATE OR DELETE ON transfer_rejections
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER transfer_rejections_no_truncate BEFORE TRUNCATE ON transfer_rejections
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
-- Only the balance columns of an account ever change (and only by a transfer).
CREATE TRIGGER accounts_identity_immutable
    BEFORE UPDATE OF id, ledger, code, flags, metadata, "timestamp", created_at ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_forbid_change();
CREATE TRIGGER ledgers_no_delete BEFORE UPDATE OF id OR DELETE ON ledgers
    FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change();
"""

CREATE_ACCOUNTS = """
-- Result codes: 0 ok, 1 exists, 2 exists_with_different_fields,
-- 3 id_must_not_be_zero, 4 flags_are_mutually_exclusive, 5 ledger_not_found.
CREATE FUNCTION ledger_create_accounts(
    p_id uuid[], p_ledger integer[], p_code integer[], p_flags integer[], p_metadata jsonb[]
) RETURNS smallint[] LANGUAGE plpgsql AS $$
DECLARE
    v_inserted uuid[];
    v_results smallint[];
BEGIN
    WITH ins AS (
        INSERT INTO accounts (id, ledger, code, flags, metadata, "timestamp")
        SELECT q.id, q.ledger, q.code, q.flags, q.metadata, nextval('ledger_timestamp_seq')
        FROM (
            SELECT u.*, min(u.i) OVER (PARTITION BY u.id) AS first_i
            FROM unnest(p_id, p_ledger, p_code, p_flags, p_metadata)
                 WITH ORDINALITY AS u(id, ledger, code, flags, metadata, i)
        ) q
        WHERE q.first_i = q.i
          AND q.id <> '00000000-0000-0000-0000-000000000000'
          AND q.flags & 3 <> 3
          AND EXISTS (SELECT 1 FROM ledgers l WHERE l.id = q.ledger)
        ORDER BY q.i
        ON CONFLICT (id) DO NOTHING
        RETURNING id
    )
    SELECT array_agg(id) INTO v_inserted FROM ins;

    -- A new statement, so a row another transaction committed meanwhile is seen.
    SELECT array_agg(
        CASE
            WHEN q.id = '00000000-0000-0000-0000-000000000000' THEN 3
            WHEN q.flags & 3 = 3 THEN 4
            WHEN q.first_i = q.i AND q.id = ANY (coalesce(v_inserted, '{}')) THEN 0
            WHEN a.id IS NULL THEN 5
            WHEN a.ledger = q.ledger AND a.code = q.code AND a.flags = q.flags
                 AND coalesce(a.metadata, '{}') = coalesce(q.metadata, '{}') THEN 1
            ELSE 2
        END ORDER BY q.i)
    INTO v_results
    FROM (
        SELECT u.*, min(u.i) OVER (PARTITION BY u.id) AS first_i
        FROM unnest(p_id, p_ledger, p_code, p_flags, p_metadata)
             WITH ORDINALITY AS u(id, ledger, code, flags, metadata, i)
    ) q
    LEFT JOIN accounts a ON a.id = q.id;

    RETURN coalesce(v_results, '{}');
END $$;
"""

# The heart of the ledger. One call validates, applies and records a batch
# with the semantics of posting its transfers one at a time, in order:
#   1. set-based: look up existing ids, in-batch duplicates, static checks,
#      the pending transfers referenced, and lock every touched account in
#      one statement ordered by id (no deadlocks between batches);
#   2. a loop over plain arrays applies the balance rules in order (limits,
#      two-phase, linked chains with rollback): no SQL inside the loop;
#   3. set-based: insert the transfers, update each touched account once,
#      record rejections and open/closed pending timeouts.
CREATE_TRANSFERS = """
CREATE FUNCTION ledger_create_transfers(
    p_id uuid[], p_debit uuid[], p_credit uuid[], p_amount bigint[],
    p_ledger integer[], p_code integer[], p_flags integer[], p_pending_id uuid[],
    p_timeout integer[], p_metadata jsonb[], p_effective_at timestamptz[],
    OUT results smallint[], OUT timestamps bigint[]
) LANGUAGE plpgsql AS $$
DECLARE
    c_max constant bigint := 9223372036854775807;
    n integer := coalesce(cardinality(p_id), 0);
    v_now timestamptz := now();
    -- per row
    r smallint[];            -- result
    pre smallint[];          -- result decided by existing records
    pre_ts bigint[];
    stat smallint[];         -- result of the stateless checks
    first_i integer[];       -- first row of the batch with the same id
    dup_same boolean[];      -- same fields as that first row
    dk integer[];            -- debit account, as index into a_*
    ck integer[];            -- credit account, as index into a_*
    slot integer[];          -- post/void: referenced pending, index into s_*
    cslot integer[];         -- pending created here and referenced later
    f_debit uuid[]; f_credit uuid[]; f_amount bigint[]; f_ledger integer[]; f_code integer[];
    -- per account, sorted by id
    a_id uuid[]; a_ledger integer[]; a_flags integer[];
    a_dp bigint[]; a_dpo bigint[]; a_cp bigint[]; a_cpo bigint[];
    a_touched boolean[];
    -- per referenced pending transfer
    s_id uuid[]; s_found boolean[]; s_flags integer[]; s_status smallint[];
    s_debit uuid[]; s_credit uuid[]; s_dk integer[]; s_ck integer[];
    s_amount bigint[]; s_ledger integer[]; s_code integer[]; s_expires timestamptz[];
    -- chain rollback snapshot
    chain_start integer; chain_failed boolean := false;
    k_dp bigint[]; k_dpo bigint[]; k_cp bigint[]; k_cpo bigint[];
    k_found boolean[]; k_flags integer[]; k_status smallint[]; k_dk integer[]; k_ck integer[];
    k_amount bigint[]; k_ledger integer[]; k_code integer[]; k_debit uuid[]; k_credit uuid[];
    k_expires timestamptz[];
    -- loop
    i integer; j integer; s integer; d integer; c integer; fl integer; code smallint;
    amt bigint; pa bigint; ts bigint; linked boolean; has_two_phase boolean;
    n_s integer := 0;
BEGIN
    results := '{}'; timestamps := '{}';
    IF n = 0 THEN RETURN; END IF;
    IF cardinality(p_debit) <> n OR cardinality(p_credit) <> n OR cardinality(p_amount) <> n
       OR cardinality(p_ledger) <> n OR cardinality(p_code) <> n OR cardinality(p_flags) <> n
       OR cardinality(p_pending_id) <> n OR cardinality(p_timeout) <> n
       OR cardinality(p_metadata) <> n OR cardinality(p_effective_at) <> n THEN
        RAISE EXCEPTION 'ledger_create_transfers: arrays of unequal length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    r := array_fill(NULL::smallint, ARRAY[n]);
    pre := r; stat := r;
    pre_ts := array_fill(NULL::bigint, ARRAY[n]);
    f_debit := p_debit; f_credit := p_credit; f_amount := p_amount;
    f_ledger := p_ledger; f_code := p_code;

    -- 1a. Ids already recorded: a replay returns the original outcome.
    FOR i, code, ts IN
        SELECT u.i,
            CASE WHEN t.debit_account_id = coalesce(u.debit, t.debit_account_id)
                  AND t.credit_account_id = coalesce(u.credit, t.credit_account_id)
                  AND (t.amount = u.amount OR (u.amount = 0 AND t.flags & 12 <> 0))
                  AND t.ledger = coalesce(u.ledger, t.ledger)
                  AND t.code = coalesce(u.code, t.code)
                  AND t.flags = u.flags & 15
                  AND t.pending_id IS NOT DISTINCT FROM u.pending_id
                  AND t.timeout = u.timeout
                  AND coalesce(t.metadata, '{}') = coalesce(u.metadata, '{}')
                  AND t.effective_at IS NOT DISTINCT FROM u.effective_at
                 THEN 1 ELSE 2 END,
            t."timestamp"
        FROM unnest(p_id, p_debit, p_credit, p_amount, p_ledger, p_code, p_flags,
                    p_pending_id, p_timeout, p_metadata, p_effective_at)
             WITH ORDINALITY AS u(id, debit, credit, amount, ledger, code, flags,
                                  pending_id, timeout, metadata, effective_at, i)
        JOIN transfers t ON t.id = u.id
    LOOP
        pre[i] := code;
        pre_ts[i] := CASE WHEN code = 1 THEN ts END;
    END LOOP;
    FOR i, code IN
        SELECT u.i,
            CASE WHEN (x.debit_account_id, x.credit_account_id, x.amount, x.ledger, x.code,
                       x.flags, x.pending_id, x.timeout, x.metadata, x.effective_at)
                      IS NOT DISTINCT FROM
                      (u.debit, u.credit, u.amount, u.ledger, u.code, u.flags & 15,
                       u.pending_id, u.timeout, u.metadata, u.effective_at)
                 THEN x.result ELSE 2 END
        FROM unnest(p_id, p_debit, p_credit, p_amount, p_ledger, p_code, p_flags,
                    p_pending_id, p_timeout, p_metadata, p_effective_at)
             WITH ORDINALITY AS u(id, debit, credit, amount, ledger, code, flags,
                                  pending_id, timeout, metadata, effective_at, i)
        JOIN transfer_rejections x ON x.id = u.id
    LOOP
        pre[i] := code;
    END LOOP;

    -- 1b. Pending transfers referenced by posts and voids, with their state.
    has_two_phase := EXISTS (SELECT 1 FROM unnest(p_flags) f WHERE f & 12 <> 0);
    IF has_two_phase THEN
        SELECT array_agg(x ORDER BY x) INTO s_id
        FROM (SELECT DISTINCT x FROM unnest(p_pending_id) x WHERE x IS NOT NULL) q;
        n_s := coalesce(cardinality(s_id), 0);
        SELECT array_agg(t.id IS NOT NULL ORDER BY q.k), array_agg(t.flags ORDER BY q.k),
               array_agg(CASE WHEN t.id IS NULL THEN NULL
                              WHEN res.flags & 4 <> 0 THEN 1
                              WHEN res.flags & 8 <> 0 THEN 2 ELSE 0 END ORDER BY q.k),
               array_agg(t.debit_account_id ORDER BY q.k), array_agg(t.credit_account_id ORDER BY q.k),
               array_agg(t.amount ORDER BY q.k), array_agg(t.ledger ORDER BY q.k),
               array_agg(t.code ORDER BY q.k), array_agg(t.expires_at ORDER BY q.k)
        INTO s_found, s_flags, s_status, s_debit, s_credit, s_amount, s_ledger, s_code, s_expires
        FROM unnest(s_id) WITH ORDINALITY AS q(id, k)
        LEFT JOIN transfers t ON t.id = q.id
        LEFT JOIN transfers res ON res.pending_id = t.id;
    END IF;

    -- 1c. Lock every touched account in one statement, in id order.
    SELECT array_agg(a.id ORDER BY a.id), array_agg(a.ledger ORDER BY a.id),
           array_agg(a.flags ORDER BY a.id),
           array_agg(a.debits_pending ORDER BY a.id), array_agg(a.debits_posted ORDER BY a.id),
           array_agg(a.credits_pending ORDER BY a.id), array_agg(a.credits_posted ORDER BY a.id)
    INTO a_id, a_ledger, a_flags, a_dp, a_dpo, a_cp, a_cpo
    FROM (SELECT * FROM accounts
          WHERE id = ANY (p_debit || p_credit || coalesce(s_debit, '{}') || coalesce(s_credit, '{}'))
          ORDER BY id FOR UPDATE) a;
    a_id := coalesce(a_id, '{}');
    a_touched := array_fill(false, ARRAY[coalesce(cardinality(a_id), 0) + 1]);

    IF n_s > 0 THEN
        SELECT array_agg(da.k ORDER BY q.k), array_agg(ca.k ORDER BY q.k)
        INTO s_dk, s_ck
        FROM unnest(s_debit, s_credit) WITH ORDINALITY AS q(debit, credit, k)
        LEFT JOIN unnest(a_id) WITH ORDINALITY AS da(id, k) ON da.id = q.debit
        LEFT JOIN unnest(a_id) WITH ORDINALITY AS ca(id, k) ON ca.id = q.credit;
    END IF;

    -- 1d. Stateless checks, duplicates and account resolution, per row.
    SELECT array_agg(q.first_i ORDER BY q.i),
           array_agg(q.first_i < q.i AND
               (q.debit, q.credit, q.amount, q.ledger, q.code, q.flags & 15, q.pending_id,
                q.timeout, q.metadata, q.effective_at) IS NOT DISTINCT FROM
               (p_debit[q.first_i], p_credit[q.first_i], p_amount[q.first_i],
                p_ledger[q.first_i], p_code[q.first_i], p_flags[q.first_i] & 15,
                p_pending_id[q.first_i], p_timeout[q.first_i], p_metadata[q.first_i],
                p_effective_at[q.first_i]) ORDER BY q.i),
           array_agg(q.da ORDER BY q.i), array_agg(q.ca ORDER BY q.i),
           array_agg(q.sl ORDER BY q.i), array_agg(q.csl ORDER BY q.i),
           array_agg(CASE
               WHEN q.id = '00000000-0000-0000-0000-000000000000' THEN 5
               WHEN q.flags & 14 NOT IN (0, 2, 4, 8) THEN 6
               WHEN q.flags & 12 <> 0 THEN CASE
                   WHEN q.pending_id IS NULL THEN 13
                   WHEN q.pending_id = q.id THEN 14
                   WHEN q.timeout <> 0 THEN 15
                   WHEN q.effective_at > v_now THEN 16
               END
               WHEN q.pending_id IS NOT NULL THEN 12
               WHEN q.debit IS NULL OR q.credit IS NULL THEN 8
               WHEN q.debit = q.credit THEN 7
               WHEN q.amount <= 0 THEN 9
               WHEN q.ledger IS NULL THEN 11
               WHEN q.code IS NULL THEN 10
               WHEN q.timeout <> 0 AND q.flags & 2 = 0 THEN 15
               WHEN q.effective_at > v_now THEN 16
               WHEN q.da IS NULL THEN 17
               WHEN q.ca IS NULL THEN 18
               WHEN a_ledger[q.da] <> q.ledger OR a_ledger[q.ca] <> q.ledger THEN 19
           END ORDER BY q.i)
    INTO first_i, dup_same, dk, ck, slot, cslot, stat
    FROM (
        SELECT u.*,
               CASE WHEN u.id = '00000000-0000-0000-0000-000000000000' THEN u.i
                    ELSE min(u.i) OVER (PARTITION BY u.id) END AS first_i,
               da.k AS da, ca.k AS ca, ps.k AS sl, cs.k AS csl
        FROM unnest(p_id, p_debit, p_credit, p_amount, p_ledger, p_code, p_flags,
                    p_pending_id, p_timeout, p_metadata, p_effective_at)
             WITH ORDINALITY AS u(id, debit, credit, amount, ledger, code, flags,
                                  pending_id, timeout, metadata, effective_at, i)
        LEFT JOIN unnest(a_id) WITH ORDINALITY AS da(id, k) ON da.id = u.debit
        LEFT JOIN unnest(a_id) WITH ORDINALITY AS ca(id, k) ON ca.id = u.credit
        LEFT JOIN unnest(s_id) WITH ORDINALITY AS ps(id, k)
            ON ps.id = u.pending_id AND u.flags & 12 <> 0
        LEFT JOIN unnest(s_id) WITH ORDINALITY AS cs(id, k)
            ON cs.id = u.id AND u.flags & 2 <> 0
    ) q;

    -- 2. Apply in order.
    FOR i IN 1..n LOOP
        fl := p_flags[i];
        linked := fl & 1 <> 0;
        IF linked AND chain_start IS NULL THEN
            chain_start := i; chain_failed := false;
            k_dp := a_dp; k_dpo := a_dpo; k_cp := a_cp; k_cpo := a_cpo;
            k_found := s_found; k_flags := s_flags; k_status := s_status; k_dk := s_dk;
            k_ck := s_ck; k_amount := s_amount; k_ledger := s_ledger; k_code := s_code;
            k_debit := s_debit; k_credit := s_credit; k_expires := s_expires;
        END IF;

        IF linked AND (i = n OR fl & 65536 <> 0) THEN
            code := 4;
        ELSIF chain_failed THEN
            code := 3;
        ELSIF pre[i] IS NOT NULL THEN
            code := pre[i];
        ELSIF first_i[i] < i THEN
            -- A repeat of an id earlier in the batch: compared as a replay of
            -- a recorded transfer would be, so batching changes no outcome.
            j := first_i[i];
            IF r[j] = 0 THEN
                code := CASE WHEN f_debit[j] = coalesce(p_debit[i], f_debit[j])
                    AND f_credit[j] = coalesce(p_credit[i], f_credit[j])
                    AND (f_amount[j] = p_amount[i] OR (p_amount[i] = 0 AND fl & 12 <> 0))
                    AND f_ledger[j] = coalesce(p_ledger[i], f_ledger[j])
                    AND f_code[j] = coalesce(p_code[i], f_code[j])
                    AND p_flags[j] & 15 = fl & 15
                    AND p_pending_id[j] IS NOT DISTINCT FROM p_pending_id[i]
                    AND p_timeout[j] = p_timeout[i]
                    AND coalesce(p_metadata[j], '{}') = coalesce(p_metadata[i], '{}')
                    AND p_effective_at[j] IS NOT DISTINCT FROM p_effective_at[i]
                    THEN 1 ELSE 2 END;
            ELSE
                code := CASE WHEN dup_same[i] THEN r[j] ELSE 2 END;
            END IF;
        ELSIF stat[i] IS NOT NULL THEN
            code := stat[i];
        ELSIF fl & 12 = 0 THEN
            d := dk[i]; c := ck[i]; amt := p_amount[i];
            IF a_dp[d] + a_dpo[d] > c_max - amt THEN
                code := 27;
            ELSIF a_cp[c] + a_cpo[c] > c_max - amt THEN
                code := 28;
            ELSIF a_flags[d] & 1 <> 0 AND a_dp[d] + a_dpo[d] + amt > a_cpo[d] THEN
                code := 29;
            ELSIF a_flags[c] & 2 <> 0 AND a_cp[c] + a_cpo[c] + amt > a_dpo[c] THEN
                code := 30;
            ELSE
                code := 0;
                IF fl & 2 <> 0 THEN
                    a_dp[d] := a_dp[d] + amt; a_cp[c] := a_cp[c] + amt;
                    s := cslot[i];
                    IF s IS NOT NULL THEN
                        s_found[s] := true; s_flags[s] := fl & 15; s_status[s] := 0;
                        s_debit[s] := p_debit[i]; s_credit[s] := p_credit[i];
                        s_dk[s] := d; s_ck[s] := c; s_amount[s] := amt;
                        s_ledger[s] := p_ledger[i]; s_code[s] := p_code[i];
                        s_expires[s] := CASE WHEN p_timeout[i] > 0
                            THEN v_now + make_interval(secs => p_timeout[i]) END;
                    END IF;
                ELSE
                    a_dpo[d] := a_dpo[d] + amt; a_cpo[c] := a_cpo[c] + amt;
                END IF;
                a_touched[d] := true; a_touched[c] := true;
            END IF;
        ELSE
            s := slot[i];
            IF NOT s_found[s] THEN
                code := 20;
            ELSIF s_flags[s] & 2 = 0 THEN
                code := 21;
            ELSIF p_debit[i] <> s_debit[s] OR p_credit[i] <> s_credit[s]
                  OR p_ledger[i] <> s_ledger[s] OR p_code[i] <> s_code[s] THEN
                code := 22;
            ELSIF s_status[s] = 1 THEN
                code := 23;
            ELSIF s_status[s] = 2 THEN
                code := 24;
            ELSIF fl & 4 <> 0 AND s_expires[s] <= v_now THEN
                code := 25;
            ELSIF fl & 4 <> 0 AND p_amount[i] > s_amount[s] THEN
                code := 26;
            ELSIF fl & 8 <> 0 AND p_amount[i] NOT IN (0, s_amount[s]) THEN
                code := 22;
            ELSE
                code := 0;
                d := s_dk[s]; c := s_ck[s]; pa := s_amount[s];
                a_dp[d] := a_dp[d] - pa; a_cp[c] := a_cp[c] - pa;
                IF fl & 4 <> 0 THEN
                    amt := CASE WHEN p_amount[i] = 0 THEN pa ELSE p_amount[i] END;
                    a_dpo[d] := a_dpo[d] + amt; a_cpo[c] := a_cpo[c] + amt;
                    s_status[s] := 1;
                ELSE
                    amt := pa;
                    s_status[s] := 2;
                END IF;
                f_debit[i] := s_debit[s]; f_credit[i] := s_credit[s]; f_amount[i] := amt;
                f_ledger[i] := s_ledger[s]; f_code[i] := s_code[s];
                a_touched[d] := true; a_touched[c] := true;
            END IF;
        END IF;
        r[i] := code;

        IF chain_start IS NOT NULL THEN
            IF code NOT IN (0, 1) AND NOT chain_failed THEN
                -- Undo the chain: restore the snapshot, fail its earlier members.
                chain_failed := true;
                a_dp := k_dp; a_dpo := k_dpo; a_cp := k_cp; a_cpo := k_cpo;
                s_found := k_found; s_flags := k_flags; s_status := k_status; s_dk := k_dk;
                s_ck := k_ck; s_amount := k_amount; s_ledger := k_ledger; s_code := k_code;
                s_debit := k_debit; s_credit := k_credit; s_expires := k_expires;
                FOR j IN chain_start..i - 1 LOOP
                    r[j] := 3;
                END LOOP;
            END IF;
            IF NOT linked OR fl & 65536 <> 0 THEN
                chain_start := NULL; chain_failed := false;
            END IF;
        END IF;
    END LOOP;

    -- 3. Record.
    WITH ins AS (
        INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger, code,
                               flags, pending_id, timeout, metadata, effective_at,
                               "timestamp", created_at, expires_at)
        SELECT q.id, q.debit, q.credit, q.amount, q.ledger, q.code, q.flags & 15, q.pending_id,
               q.timeout, q.metadata, q.effective_at, nextval('ledger_timestamp_seq'), v_now,
               CASE WHEN q.flags & 2 <> 0 AND q.timeout > 0
                    THEN v_now + make_interval(secs => q.timeout) END
        FROM (SELECT * FROM unnest(p_id, f_debit, f_credit, f_amount, f_ledger, f_code, p_flags,
                                   p_pending_id, p_timeout, p_metadata, p_effective_at, r)
                  WITH ORDINALITY AS u(id, debit, credit, amount, ledger, code, flags,
                                       pending_id, timeout, metadata, effective_at, res, i)
              WHERE u.res = 0 ORDER BY u.i) q
        RETURNING id, "timestamp"
    )
    SELECT array_agg(coalesce(ins."timestamp", pre_ts[u.i]) ORDER BY u.i)
    INTO timestamps
    FROM unnest(p_id) WITH ORDINALITY AS u(id, i)
    LEFT JOIN ins ON ins.id = u.id AND r[u.i] = 0;

    FOR i IN 1..n LOOP
        IF r[i] = 1 AND pre[i] IS NULL THEN
            timestamps[i] := timestamps[first_i[i]];
        END IF;
    END LOOP;

    UPDATE accounts a
    SET debits_pending = u.dp, debits_posted = u.dpo,
        credits_pending = u.cp, credits_posted = u.cpo
    FROM unnest(a_id, a_dp, a_dpo, a_cp, a_cpo, a_touched)
         AS u(id, dp, dpo, cp, cpo, touched)
    WHERE a.id = u.id AND u.touched;

    IF has_two_phase OR EXISTS (SELECT 1 FROM unnest(p_flags, p_timeout) u(f, t)
                                WHERE f & 2 <> 0 AND t > 0) THEN
        INSERT INTO pending_expiries (transfer_id, expires_at)
        SELECT u.id, v_now + make_interval(secs => u.t)
        FROM unnest(p_id, p_flags, p_timeout, r) AS u(id, f, t, res)
        WHERE u.res = 0 AND u.f & 2 <> 0 AND u.t > 0;
        DELETE FROM pending_expiries e
        USING unnest(p_pending_id, p_flags, r) AS u(pid, f, res)
        WHERE u.res = 0 AND u.f & 12 <> 0 AND e.transfer_id = u.pid;
    END IF;

    INSERT INTO transfer_rejections (id, result, debit_account_id, credit_account_id, amount,
                                     ledger, code, flags, pending_id, timeout, metadata,
                                     effective_at)
    SELECT u.id, u.res, u.debit, u.credit, u.amount, u.ledger, u.code, u.flags & 15,
           u.pending_id, u.timeout, u.metadata, u.effective_at
    FROM unnest(p_id, p_debit, p_credit, p_amount, p_ledger, p_code, p_flags, p_pending_id,
                p_timeout, p_metadata, p_effective_at, r, pre, first_i)
         WITH ORDINALITY AS u(id, debit, credit, amount, ledger, code, flags, pending_id,
                              timeout, metadata, effective_at, res, pre, first_i, i)
    WHERE u.res NOT IN (0, 1, 2, 5) AND u.pre IS NULL AND u.first_i = u.i
      AND u.id <> '00000000-0000-0000-0000-000000000000'
    ON CONFLICT (id) DO NOTHING;

    results := r;
END $$;
"""


def _statements(script: str) -> list[str]:
    """Split a script on the semicolons that end a line outside $$ bodies
    (asyncpg prepares each statement on its own)."""
    statements, current, in_body = [], [], False
    for line in script.splitlines():
        current.append(line)
        in_body ^= line.count("$$") % 2 == 1
        if not in_body and line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip())
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current).strip())
    return statements


def upgrade() -> None:
    for script in (TABLES, IMMUTABILITY, CREATE_ACCOUNTS, CREATE_TRANSFERS):
        for statement in _statements(script):
            op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS ledger_create_transfers")
    op.execute("DROP FUNCTION IF EXISTS ledger_create_accounts")
    op.execute(
        "DROP TABLE IF EXISTS pending_expiries, transfer_rejections, transfers, accounts, ledgers"
    )
    op.execute("DROP FUNCTION IF EXISTS ledger_forbid_change")
    op.execute("DROP SEQUENCE IF EXISTS ledger_timestamp_seq")
