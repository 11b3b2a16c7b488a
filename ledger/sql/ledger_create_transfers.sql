-- The heart of the ledger. One call validates, applies and records a batch
-- with the semantics of posting its transfers one at a time, in order:
--   0. a lone plain transfer takes scalar statements with the same rules
--      (migration 0014: the set-based stages cost a batch of one too much);
--   1. take the advisory lock of each ledger touched (in ledger order: one
--      writer per ledger, no row lock per account, no deadlock), then
--      set-based: existing ids, in-batch duplicates, the pending transfers
--      referenced, the touched accounts, and the stateless checks;
--   2. a loop over plain arrays applies the balance rules in order (limits,
--      two-phase, linked chains with rollback): no SQL inside the loop;
--   3. set-based: insert the transfers, update each touched account once,
--      record rejections and open/closed pending timeouts.
-- A rejected id is reserved in the transfers' primary key by a row of ledger 0
-- (migration 0013): every read of transfers skips ledger 0.
-- A ledger closed through an instant (ledgers.closed_through, migration 0038)
-- refuses every transfer whose business time, coalesce(effective_at, now), is
-- at or before it: posts and voids by their own business time, not their
-- pending transfer's. The boundary moves only under the ledger's lock
-- (ledger/periods.py), so it stands still while a batch of the ledger runs.
-- What a batch posts is summed into the daily aggregates in the same call
-- (migration 0045; before it, a statement-level trigger of transfers re-read
-- the new rows' accounts and ledgers): posted movements only (plain and
-- post_pending, not pending, not void), ledger_daily_totals by accounting
-- day (the business time in the ledger's zone), code and the two accounts'
-- codes, and the lots (ledger_record_lots) of the movements of accounts whose
-- code is in ledger_lot_codes: since migration 0050 only the movements that
-- are no queue's, the plain ones left to ledger_settle_lots, with each
-- account's lots_newest (the newest business time of a credit) kept here
-- for what sorts where. Since migration 0052 the daily totals carry each
-- account's class as the batch found it (accounts.account_class, which its
-- owner assigns with ledger_set_account_classes); a movement dated before
-- its account's last change of class is put back in the class in force then
-- by ledger_correct_account_classes (ledger_class_moves). As the trigger did,
-- nothing is recorded when
-- session_replication_role is replica (a replication apply or a restore
-- brings the aggregates' own rows), nor left to the settlement.
CREATE OR REPLACE FUNCTION ledger_create_transfers(
    p_id uuid[], p_debit uuid[], p_credit uuid[], p_amount bigint[],
    p_ledger integer[], p_code integer[], p_flags integer[], p_pending_id uuid[],
    p_timeout integer[], p_metadata jsonb[], p_effective_at timestamptz[],
    OUT results smallint[], OUT timestamps bigint[]
)
-- Every table access here is by key. Without this, a plan made while the
-- statistics are stale (a young table) can scan the whole transfers table.
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    c_max constant bigint := 9223372036854775807;
    c_nil constant uuid := '00000000-0000-0000-0000-000000000000';
    -- Results: positions in ledger.schemas.CreateTransferResult, named as its
    -- members (tests/ledger/test_result_numbers.py holds the two together).
    -- The ones after result_exists_with_different_fields are failures.
    result_ok constant smallint := 0;
    result_exists constant smallint := 1;
    result_exists_with_different_fields constant smallint := 2;
    result_linked_event_failed constant smallint := 3;
    result_linked_event_chain_open constant smallint := 4;
    result_id_must_not_be_zero constant smallint := 5;
    result_flags_are_mutually_exclusive constant smallint := 6;
    result_accounts_must_be_different constant smallint := 7;
    result_account_id_required constant smallint := 8;
    result_amount_must_be_positive constant smallint := 9;
    result_code_required constant smallint := 10;
    result_ledger_required constant smallint := 11;
    result_pending_id_must_be_zero constant smallint := 12;
    result_pending_id_required constant smallint := 13;
    result_pending_id_must_be_different constant smallint := 14;
    result_timeout_reserved_for_pending_transfer constant smallint := 15;
    result_effective_at_must_not_be_in_future constant smallint := 16;
    result_debit_account_not_found constant smallint := 17;
    result_credit_account_not_found constant smallint := 18;
    result_ledger_mismatch constant smallint := 19;
    result_pending_not_found constant smallint := 20;
    result_pending_not_pending constant smallint := 21;
    result_pending_mismatch constant smallint := 22;
    result_pending_already_posted constant smallint := 23;
    result_pending_already_voided constant smallint := 24;
    result_pending_expired constant smallint := 25;
    result_exceeds_pending_amount constant smallint := 26;
    result_overflows_debits constant smallint := 27;
    result_overflows_credits constant smallint := 28;
    result_exceeds_credits constant smallint := 29;
    result_exceeds_debits constant smallint := 30;
    result_business_time_in_closed_period constant smallint := 31;
    n integer := coalesce(cardinality(p_id), 0);
    v_now timestamptz := now();
    -- A replication apply or a restore brings the lots' own rows: what it
    -- posts is not recorded, nor left for the settlement (step 4: the marks
    -- move with the balances of an account that was settled; one with
    -- movements waiting keeps its marks, and the settlement takes the
    -- replica's too).
    v_replica boolean := current_setting('session_replication_role') = 'replica';
    ts_base bigint;
    -- Per row. Sentinels (-1, 0) instead of NULL keep these arrays free of
    -- nulls, so reading element i in the loop is O(1), not a scan from 1.
    r smallint[];            -- result
    ts bigint[];             -- ledger timestamp of the recorded transfer
    pre smallint[];          -- result decided by existing records, or -1
    stat smallint[];         -- result of the stateless checks, or -1
    first_i integer[];       -- first row of the batch with the same id
    dk integer[];            -- debit account, as index into a_*, or 0
    ck integer[];            -- credit account, as index into a_*, or 0
    slot integer[];          -- post/void: referenced pending, index into s_*, or 0
    cslot integer[];         -- id referenced by a post/void of this batch, or 0
    f_debit uuid[]; f_credit uuid[]; f_amount bigint[]; f_ledger integer[]; f_code integer[];
    -- per account, sorted by id
    a_id uuid[]; a_ctid tid[]; a_ledger integer[]; a_flags integer[];
    a_dp bigint[]; a_dpo bigint[]; a_cp bigint[]; a_cpo bigint[];
    a_touched boolean[];
    i_dp bigint[]; i_dpo bigint[]; i_cp bigint[]; i_cpo bigint[];
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
    amt bigint; pa bigint; t_ts bigint; linked boolean; has_two_phase boolean;
    n_s integer := 0;
    n_updated integer;
    -- the closed ledgers of the batch and how far each is closed (usually none)
    c_ledger integer[]; c_closed timestamptz[]; n_closed integer := 0;
    -- the lone plain transfer: its two accounts
    lone_from_pre boolean;
    db_ctid tid; db_ledger integer; db_flags integer; db_closed timestamptz;
    db_dp bigint; db_dpo bigint; db_cp bigint; db_cpo bigint;
    cr_ctid tid; cr_ledger integer; cr_flags integer;
    cr_dp bigint; cr_dpo bigint; cr_cp bigint; cr_cpo bigint;
    -- the aggregates: account codes (per account, and the lone transfer's two),
    -- each row's accounts as indexes into a_* (0: not posted), the ledgers'
    -- zones, the lot codes
    a_code integer[]; a_waiting boolean[]; a_newest timestamptz[]; a_credited timestamptz[];
    rd integer[]; rc integer[];
    z_ledger integer[]; z_zone text[]; v_lot_codes integer[];
    db_code integer; cr_code integer; db_zone text;
    db_waiting boolean; cr_waiting boolean; db_newest timestamptz; cr_newest timestamptz;
    db_settled boolean; cr_settled boolean;
    -- classes (migration 0052): each account's, since when ('-infinity':
    -- never changed), and whether a movement of the batch is dated before
    -- its account's change
    a_class integer[]; a_class_since timestamptz[]; v_reclassed boolean := false;
    -- lots: each account's is a lot account, has a debit of the batch; and
    -- whether a movement of the batch may be no queue's (else
    -- ledger_record_lots would write nothing: it is not called)
    a_lot boolean[]; a_deb boolean[]; v_lots_maybe boolean := false;
    db_class integer; cr_class integer; db_class_since timestamptz; cr_class_since timestamptz;
    l_id uuid[]; l_debit uuid[]; l_credit uuid[]; l_amount bigint[]; l_ledger integer[];
    l_code integer[]; l_metadata jsonb[]; l_business_at timestamptz[]; l_day date[];
    l_zone text[]; l_ts bigint[]; l_debit_lot boolean[]; l_credit_lot boolean[];
    recorded record;
BEGIN
    results := '{}'; timestamps := '{}';
    IF n = 0 THEN RETURN; END IF;
    IF n > 8192 THEN
        RAISE EXCEPTION 'ledger_create_transfers: at most 8192 transfers per call, got %', n
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    IF cardinality(p_debit) <> n OR cardinality(p_credit) <> n OR cardinality(p_amount) <> n
       OR cardinality(p_ledger) <> n OR cardinality(p_code) <> n OR cardinality(p_flags) <> n
       OR cardinality(p_pending_id) <> n OR cardinality(p_timeout) <> n
       OR cardinality(p_metadata) <> n OR cardinality(p_effective_at) <> n THEN
        RAISE EXCEPTION 'ledger_create_transfers: arrays of unequal length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

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
                    THEN result_exists ELSE result_exists_with_different_fields END,
               t."timestamp"
        INTO code, t_ts
        FROM transfers t WHERE t.id = p_id[1] AND t.ledger <> 0;
        IF FOUND THEN
            IF code <> result_exists THEN t_ts := 0; END IF;
        ELSE
            t_ts := 0;
            SELECT CASE WHEN (x.debit_account_id, x.credit_account_id, x.amount, x.ledger,
                              x.code, x.flags, x.pending_id, x.timeout, x.metadata,
                              x.effective_at)
                             IS NOT DISTINCT FROM
                             (p_debit[1], p_credit[1], amt, p_ledger[1], p_code[1], 0,
                              p_pending_id[1], p_timeout[1], p_metadata[1],
                              p_effective_at[1])
                        THEN x.result ELSE result_exists_with_different_fields END
            INTO code
            FROM transfer_rejections x WHERE x.id = p_id[1];
            IF NOT FOUND THEN code := -1; END IF;
        END IF;
        lone_from_pre := code >= 0;

        -- 1e. (flags 0: no two-phase, no pending timeout)
        IF code < 0 THEN
            code := CASE
                WHEN p_id[1] = c_nil THEN result_id_must_not_be_zero
                WHEN p_pending_id[1] IS NOT NULL THEN result_pending_id_must_be_zero
                WHEN p_debit[1] IS NULL OR p_credit[1] IS NULL THEN result_account_id_required
                WHEN p_debit[1] = p_credit[1] THEN result_accounts_must_be_different
                WHEN amt <= 0 THEN result_amount_must_be_positive
                WHEN p_ledger[1] IS NULL THEN result_ledger_required
                WHEN p_code[1] IS NULL THEN result_code_required
                WHEN p_timeout[1] <> 0 THEN result_timeout_reserved_for_pending_transfer
                WHEN p_effective_at[1] > v_now THEN result_effective_at_must_not_be_in_future
                ELSE -1
            END;
        END IF;

        -- 1d., the rest of 1e. and 2.
        IF code < 0 THEN
            -- The ledger's boundary comes with the debit account: no statement more.
            SELECT a.ctid, a.ledger, a.flags, a.debits_pending, a.debits_posted,
                   a.credits_pending, a.credits_posted, l.closed_through, a.code, l.time_zone,
                   a.debits_posted > a.lots_debited, a.lots_newest,
                   a.debits_posted = a.lots_debited AND a.credits_posted = a.lots_credited,
                   a.account_class, coalesce(a.class_since, '-infinity')
            INTO db_ctid, db_ledger, db_flags, db_dp, db_dpo, db_cp, db_cpo, db_closed,
                 db_code, db_zone, db_waiting, db_newest, db_settled, db_class, db_class_since
            FROM accounts a LEFT JOIN ledgers l ON l.id = p_ledger[1]
            WHERE a.id = p_debit[1];
            IF NOT FOUND THEN
                code := result_debit_account_not_found;
            ELSE
                SELECT a.ctid, a.ledger, a.flags, a.debits_pending, a.debits_posted,
                       a.credits_pending, a.credits_posted, a.code,
                       a.debits_posted > a.lots_debited, a.lots_newest,
                       a.debits_posted = a.lots_debited AND a.credits_posted = a.lots_credited,
                       a.account_class, coalesce(a.class_since, '-infinity')
                INTO cr_ctid, cr_ledger, cr_flags, cr_dp, cr_dpo, cr_cp, cr_cpo, cr_code,
                     cr_waiting, cr_newest, cr_settled, cr_class, cr_class_since
                FROM accounts a WHERE a.id = p_credit[1];
                IF NOT FOUND THEN
                    code := result_credit_account_not_found;
                ELSIF db_ledger <> p_ledger[1] OR cr_ledger <> p_ledger[1] THEN
                    code := result_ledger_mismatch;
                ELSIF coalesce(p_effective_at[1], v_now) <= db_closed THEN
                    code := result_business_time_in_closed_period;
                ELSIF db_dp + db_dpo > c_max - amt THEN
                    code := result_overflows_debits;
                ELSIF cr_cp + cr_cpo > c_max - amt THEN
                    code := result_overflows_credits;
                ELSIF db_flags & 1 <> 0 AND db_dp + db_dpo + amt > db_cpo THEN
                    code := result_exceeds_credits;
                ELSIF cr_flags & 2 <> 0 AND cr_cp + cr_cpo + amt > cr_dpo THEN
                    code := result_exceeds_debits;
                ELSE
                    code := result_ok;
                END IF;
            END IF;
        END IF;

        -- 3.
        ts_base := nextval('transfer_timestamp_seq');
        IF code = result_ok THEN
            t_ts := ts_base;
            INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger,
                                   code, flags, pending_id, timeout, metadata, effective_at,
                                   "timestamp", created_at, expires_at)
            VALUES (p_id[1], p_debit[1], p_credit[1], amt, p_ledger[1], p_code[1], 0, NULL,
                    0, p_metadata[1], p_effective_at[1], ts_base, v_now, NULL);
            UPDATE accounts a
            SET debits_posted = a.debits_posted + amt
            WHERE a.ctid = db_ctid AND a.id = p_debit[1];
            GET DIAGNOSTICS n_updated = ROW_COUNT;
            UPDATE accounts a
            SET credits_posted = a.credits_posted + amt,
                lots_newest = greatest(a.lots_newest, coalesce(p_effective_at[1], v_now))
            WHERE a.ctid = cr_ctid AND a.id = p_credit[1];
            GET DIAGNOSTICS d = ROW_COUNT;
            IF n_updated + d <> 2 THEN
                RAISE EXCEPTION 'ledger_create_transfers: an account moved during the batch'
                    USING ERRCODE = 'serialization_failure';
            END IF;
            -- 4.
            IF NOT v_replica THEN
                PERFORM set_config('ledger.recording', 'on', true);
                INSERT INTO ledger_daily_totals (ledger, day, code, debit_account_code,
                                                 credit_account_code, debit_class,
                                                 credit_class, amount, transfers)
                VALUES (p_ledger[1],
                        (coalesce(p_effective_at[1], v_now) AT TIME ZONE db_zone)::date,
                        p_code[1], db_code, cr_code, db_class, cr_class, amt, 1)
                -- By name: "code" is a variable of the function too.
                ON CONFLICT ON CONSTRAINT ledger_daily_totals_pkey
                DO UPDATE SET amount = ledger_daily_totals.amount + excluded.amount,
                              transfers = ledger_daily_totals.transfers + 1;
                IF coalesce(p_effective_at[1], v_now) < greatest(db_class_since, cr_class_since)
                THEN
                    PERFORM ledger_correct_account_classes(
                        ARRAY[p_debit[1], p_credit[1]], ARRAY[-amt, amt],
                        ARRAY[coalesce(p_effective_at[1], v_now),
                              coalesce(p_effective_at[1], v_now)],
                        ARRAY[db_class, cr_class]);
                END IF;
                SELECT coalesce(array_agg(x.code), '{}') INTO v_lot_codes
                FROM ledger_lot_codes x WHERE x.code IN (db_code, cr_code);
                -- What ledger_record_lots finds no queue's: a gift, a named lot
                -- or a restoration, a credit sorting before a lot made earlier
                -- while a debit waits. A plain movement writes nothing there.
                IF cardinality(v_lot_codes) > 0
                   AND ((db_code = ANY (v_lot_codes) AND cr_code = ANY (v_lot_codes))
                        OR coalesce(p_metadata[1] ? 'lots' OR p_metadata[1] ? 'restores', false)
                        OR (cr_code = ANY (v_lot_codes) AND cr_waiting
                            AND coalesce(p_effective_at[1], v_now) < cr_newest)) THEN
                    SELECT * INTO recorded
                    FROM ledger_record_lots(
                        ARRAY[p_id[1]], ARRAY[p_debit[1]], ARRAY[p_credit[1]], ARRAY[amt],
                        ARRAY[p_ledger[1]], ARRAY[p_code[1]], ARRAY[p_metadata[1]],
                        ARRAY[coalesce(p_effective_at[1], v_now)],
                        ARRAY[(coalesce(p_effective_at[1], v_now) AT TIME ZONE db_zone)::date],
                        ARRAY[db_zone], ARRAY[ts_base], ARRAY[db_code = ANY (v_lot_codes)],
                        ARRAY[cr_code = ANY (v_lot_codes)], ARRAY[db_code = ANY (v_lot_codes)],
                        ARRAY[p_debit[1], p_credit[1]], ARRAY[db_waiting, cr_waiting],
                        ARRAY[db_newest, cr_newest]);
                END IF;
                PERFORM set_config('ledger.recording', 'off', true);
            ELSE
                -- Neither recorded nor left to the settlement: a settled
                -- account's marks move with its balances.
                UPDATE accounts a
                SET lots_debited = a.debits_posted, lots_credited = a.credits_posted,
                    lots_through = greatest(a.lots_through, ts_base)
                WHERE (a.id = p_debit[1] AND db_settled) OR (a.id = p_credit[1] AND cr_settled);
            END IF;
        ELSIF code > result_exists_with_different_fields AND code <> result_id_must_not_be_zero
              AND NOT lone_from_pre AND p_id[1] <> c_nil THEN
            INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger,
                                   code, flags, timeout, "timestamp", created_at)
            VALUES (p_id[1], c_nil, c_nil, 0, 0, 0, 0, 0, 0, v_now)
            ON CONFLICT (id) DO NOTHING;
            GET DIAGNOSTICS n_updated = ROW_COUNT;
            IF n_updated = 0 THEN
                -- Taken meanwhile by a batch of another ledger.
                code := result_exists_with_different_fields;
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

    r := array_fill(-1::smallint, ARRAY[n]);
    rd := array_fill(0, ARRAY[n]); rc := rd;
    pre := r;
    ts := array_fill(0::bigint, ARRAY[n]);
    first_i := array(SELECT generate_series(1, n));
    f_debit := p_debit; f_credit := p_credit; f_amount := p_amount;
    f_ledger := p_ledger; f_code := p_code;

    -- 1. One writer per ledger at a time: a transaction-level advisory lock
    -- per ledger touched, taken in ledger order (no cycles), serializes the
    -- batches of a ledger without a row lock per account. Every balance a
    -- batch changes belongs to one of these ledgers: a plain transfer applies
    -- only between accounts of its own ledger, and a post or void only to its
    -- pending transfer's accounts, whose ledger is immutable.
    has_two_phase := EXISTS (SELECT 1 FROM unnest(p_flags) f WHERE f & 12 <> 0);
    IF has_two_phase THEN
        SELECT array_agg(x ORDER BY x) INTO s_id
        FROM (SELECT DISTINCT x FROM unnest(p_pending_id) x WHERE x IS NOT NULL) q;
        n_s := coalesce(cardinality(s_id), 0);
        SELECT array_agg(o.ledger) INTO s_ledger
        FROM (SELECT t.ledger FROM unnest(s_id) WITH ORDINALITY AS q(id, k)
              LEFT JOIN transfers t ON t.id = q.id ORDER BY q.k) o;
    END IF;
    PERFORM pg_advisory_xact_lock(1279607879, l.ledger)
    FROM (SELECT DISTINCT x AS ledger
          FROM unnest(p_ledger || coalesce(s_ledger, '{}')) x
          WHERE x IS NOT NULL ORDER BY 1) l;
    -- Read under the locks: no boundary moves before the batch commits.
    SELECT array_agg(l.id), array_agg(l.closed_through) INTO c_ledger, c_closed
    FROM ledgers l
    WHERE l.id = ANY (p_ledger || coalesce(s_ledger, '{}')) AND l.closed_through IS NOT NULL;
    n_closed := coalesce(cardinality(c_ledger), 0);

    -- 1a. Ids already recorded: a replay returns the original outcome.
    FOR i, code, t_ts IN
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
                 THEN result_exists ELSE result_exists_with_different_fields END,
            t."timestamp"
        FROM unnest(p_id, p_debit, p_credit, p_amount, p_ledger, p_code, p_flags,
                    p_pending_id, p_timeout, p_metadata, p_effective_at)
             WITH ORDINALITY AS u(id, debit, credit, amount, ledger, code, flags,
                                  pending_id, timeout, metadata, effective_at, i)
        JOIN transfers t ON t.id = u.id AND t.ledger <> 0
    LOOP
        pre[i] := code;
        IF code = result_exists THEN ts[i] := t_ts; END IF;
    END LOOP;
    FOR i, code IN
        SELECT u.i,
            CASE WHEN (x.debit_account_id, x.credit_account_id, x.amount, x.ledger, x.code,
                       x.flags, x.pending_id, x.timeout, x.metadata, x.effective_at)
                      IS NOT DISTINCT FROM
                      (u.debit, u.credit, u.amount, u.ledger, u.code, u.flags & 15,
                       u.pending_id, u.timeout, u.metadata, u.effective_at)
                 THEN x.result ELSE result_exists_with_different_fields END
        FROM unnest(p_id, p_debit, p_credit, p_amount, p_ledger, p_code, p_flags,
                    p_pending_id, p_timeout, p_metadata, p_effective_at)
             WITH ORDINALITY AS u(id, debit, credit, amount, ledger, code, flags,
                                  pending_id, timeout, metadata, effective_at, i)
        JOIN transfer_rejections x ON x.id = u.id
    LOOP
        IF pre[i] < 0 THEN pre[i] := code; END IF;
    END LOOP;

    -- 1b. Repeated ids (rare): a hash aggregate finds them without sorting all.
    FOR i, j IN
        SELECT q.i, min(q.i) OVER (PARTITION BY q.id)
        FROM unnest(p_id) WITH ORDINALITY AS q(id, i)
        WHERE q.id <> c_nil AND q.id IN (
            SELECT x FROM unnest(p_id) x GROUP BY x HAVING count(*) > 1)
    LOOP
        first_i[i] := j;
    END LOOP;

    -- 1c. The pending transfers referenced by posts and voids, and their state.
    IF has_two_phase THEN
        SELECT array_agg(o.found), array_agg(o.flags), array_agg(o.status),
               array_agg(o.debit), array_agg(o.credit), array_agg(o.amount),
               array_agg(o.ledger), array_agg(o.code), array_agg(o.expires_at)
        INTO s_found, s_flags, s_status, s_debit, s_credit, s_amount, s_ledger, s_code,
             s_expires
        FROM (
            SELECT t.id IS NOT NULL AS found, coalesce(t.flags, 0) AS flags,
                   CASE WHEN res.flags & 4 <> 0 THEN 1
                        WHEN res.flags & 8 <> 0 THEN 2 ELSE 0 END::smallint AS status,
                   t.debit_account_id AS debit, t.credit_account_id AS credit,
                   coalesce(t.amount, 0) AS amount, t.ledger, t.code, t.expires_at
            FROM unnest(s_id) WITH ORDINALITY AS q(id, k)
            LEFT JOIN transfers t ON t.id = q.id AND t.ledger <> 0
            LEFT JOIN transfers res ON res.pending_id = t.id
            ORDER BY q.k
        ) o;
    END IF;

    -- 1d. The touched accounts, read once (the ledger lock guards them).
    SELECT array_agg(a.id), array_agg(a.ctid), array_agg(a.ledger), array_agg(a.flags),
           array_agg(a.debits_pending), array_agg(a.debits_posted),
           array_agg(a.credits_pending), array_agg(a.credits_posted), array_agg(a.code),
           array_agg(a.debits_posted > a.lots_debited), array_agg(a.lots_newest),
           array_agg(a.account_class), array_agg(coalesce(a.class_since, '-infinity'))
    INTO a_id, a_ctid, a_ledger, a_flags, a_dp, a_dpo, a_cp, a_cpo, a_code, a_waiting,
         a_newest, a_class, a_class_since
    FROM accounts a
    WHERE a.id = ANY (p_debit || p_credit
                      || coalesce(s_debit, '{}') || coalesce(s_credit, '{}'));
    a_id := coalesce(a_id, '{}');
    a_touched := array_fill(false, ARRAY[cardinality(a_id) + 1]);
    SELECT coalesce(array_agg(x.code), '{}') INTO v_lot_codes FROM ledger_lot_codes x;
    a_lot := ARRAY(SELECT coalesce(u.code = ANY (v_lot_codes), false)
                   FROM unnest(a_code) WITH ORDINALITY AS u(code, k) ORDER BY u.k) || false;
    a_deb := array_fill(false, ARRAY[cardinality(a_id) + 1]);
    a_credited := array_fill(NULL::timestamptz, ARRAY[cardinality(a_id) + 1]);
    -- Balances as read: the update at the end applies the difference.
    i_dp := a_dp; i_dpo := a_dpo; i_cp := a_cp; i_cpo := a_cpo;

    IF n_s > 0 THEN
        -- Joins may reorder rows: the order is restored after them.
        SELECT array_agg(o.dk), array_agg(o.ck)
        INTO s_dk, s_ck
        FROM (SELECT coalesce(da.k, 0)::integer AS dk, coalesce(ca.k, 0)::integer AS ck
              FROM unnest(s_debit, s_credit) WITH ORDINALITY AS q(debit, credit, k)
              LEFT JOIN unnest(a_id) WITH ORDINALITY AS da(id, k) ON da.id = q.debit
              LEFT JOIN unnest(a_id) WITH ORDINALITY AS ca(id, k) ON ca.id = q.credit
              ORDER BY q.k) o;
    END IF;

    -- 1e. Stateless checks and account resolution, per row.
    SELECT array_agg(q.da), array_agg(q.ca), array_agg(q.sl), array_agg(q.csl),
           array_agg(q.stat)
    INTO dk, ck, slot, cslot, stat
    FROM (
        SELECT coalesce(da.k, 0)::integer AS da, coalesce(ca.k, 0)::integer AS ca,
               coalesce(ps.k, 0)::integer AS sl, coalesce(cs.k, 0)::integer AS csl,
               (CASE
                   WHEN u.id = c_nil THEN result_id_must_not_be_zero
                   WHEN u.flags & 14 NOT IN (0, 2, 4, 8) THEN result_flags_are_mutually_exclusive
                   WHEN u.flags & 12 <> 0 THEN CASE
                       WHEN u.pending_id IS NULL THEN result_pending_id_required
                       WHEN u.pending_id = u.id THEN result_pending_id_must_be_different
                       WHEN u.timeout <> 0 THEN result_timeout_reserved_for_pending_transfer
                       WHEN u.effective_at > v_now THEN result_effective_at_must_not_be_in_future
                       ELSE -1
                   END
                   WHEN u.pending_id IS NOT NULL THEN result_pending_id_must_be_zero
                   WHEN u.debit IS NULL OR u.credit IS NULL THEN result_account_id_required
                   WHEN u.debit = u.credit THEN result_accounts_must_be_different
                   WHEN u.amount <= 0 THEN result_amount_must_be_positive
                   WHEN u.ledger IS NULL THEN result_ledger_required
                   WHEN u.code IS NULL THEN result_code_required
                   WHEN u.timeout <> 0 AND u.flags & 2 = 0
                       THEN result_timeout_reserved_for_pending_transfer
                   WHEN u.effective_at > v_now THEN result_effective_at_must_not_be_in_future
                   WHEN da.k IS NULL THEN result_debit_account_not_found
                   WHEN ca.k IS NULL THEN result_credit_account_not_found
                   WHEN a_ledger[da.k] <> u.ledger OR a_ledger[ca.k] <> u.ledger
                       THEN result_ledger_mismatch
                   WHEN n_closed > 0 AND coalesce(u.effective_at, v_now)
                                         <= c_closed[array_position(c_ledger, u.ledger)]
                       THEN result_business_time_in_closed_period
                   ELSE -1
               END)::smallint AS stat
        FROM unnest(p_id, p_debit, p_credit, p_amount, p_ledger, p_code, p_flags,
                    p_pending_id, p_timeout, p_effective_at)
             WITH ORDINALITY AS u(id, debit, credit, amount, ledger, code, flags,
                                  pending_id, timeout, effective_at, i)
        LEFT JOIN unnest(a_id) WITH ORDINALITY AS da(id, k) ON da.id = u.debit
        LEFT JOIN unnest(a_id) WITH ORDINALITY AS ca(id, k) ON ca.id = u.credit
        LEFT JOIN unnest(s_id) WITH ORDINALITY AS ps(id, k)
            ON ps.id = u.pending_id AND u.flags & 12 <> 0
        LEFT JOIN unnest(s_id) WITH ORDINALITY AS cs(id, k) ON cs.id = u.id
        ORDER BY u.i
    ) q;

    -- 2. Apply in order, on arrays only: no SQL inside the loop.
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
            code := result_linked_event_chain_open;
        ELSIF chain_failed THEN
            code := result_linked_event_failed;
        ELSIF pre[i] >= 0 THEN
            code := pre[i];
        ELSIF first_i[i] < i THEN
            -- A repeat of an id earlier in the batch: compared as a replay of
            -- a recorded transfer would be, so batching changes no outcome.
            j := first_i[i];
            IF r[j] = result_ok THEN
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
                    THEN result_exists ELSE result_exists_with_different_fields END;
            ELSIF (p_debit[i], p_credit[i], p_amount[i], p_ledger[i], p_code[i], fl & 15,
                   p_pending_id[i], p_timeout[i], p_metadata[i], p_effective_at[i])
                  IS NOT DISTINCT FROM
                  (p_debit[j], p_credit[j], p_amount[j], p_ledger[j], p_code[j],
                   p_flags[j] & 15, p_pending_id[j], p_timeout[j], p_metadata[j],
                   p_effective_at[j]) THEN
                code := r[j];
            ELSE
                code := result_exists_with_different_fields;
            END IF;
        ELSIF stat[i] >= 0 THEN
            code := stat[i];
        ELSIF fl & 12 = 0 THEN
            d := dk[i]; c := ck[i]; amt := p_amount[i];
            IF a_dp[d] + a_dpo[d] > c_max - amt THEN
                code := result_overflows_debits;
            ELSIF a_cp[c] + a_cpo[c] > c_max - amt THEN
                code := result_overflows_credits;
            ELSIF a_flags[d] & 1 <> 0 AND a_dp[d] + a_dpo[d] + amt > a_cpo[d] THEN
                code := result_exceeds_credits;
            ELSIF a_flags[c] & 2 <> 0 AND a_cp[c] + a_cpo[c] + amt > a_dpo[c] THEN
                code := result_exceeds_debits;
            ELSE
                code := result_ok;
                IF fl & 2 <> 0 THEN
                    a_dp[d] := a_dp[d] + amt; a_cp[c] := a_cp[c] + amt;
                ELSE
                    a_dpo[d] := a_dpo[d] + amt; a_cpo[c] := a_cpo[c] + amt;
                END IF;
            END IF;
        ELSE
            s := slot[i];
            IF NOT s_found[s] THEN
                code := result_pending_not_found;
            ELSIF s_flags[s] & 2 = 0 THEN
                code := result_pending_not_pending;
            ELSIF p_debit[i] <> s_debit[s] OR p_credit[i] <> s_credit[s]
                  OR p_ledger[i] <> s_ledger[s] OR p_code[i] <> s_code[s] THEN
                code := result_pending_mismatch;
            ELSIF s_status[s] = 1 THEN
                code := result_pending_already_posted;
            ELSIF s_status[s] = 2 THEN
                code := result_pending_already_voided;
            ELSIF fl & 4 <> 0 AND s_expires[s] <= v_now THEN
                code := result_pending_expired;
            ELSIF fl & 4 <> 0 AND p_amount[i] > s_amount[s] THEN
                code := result_exceeds_pending_amount;
            ELSIF fl & 8 <> 0 AND p_amount[i] NOT IN (0, s_amount[s]) THEN
                code := result_pending_mismatch;
            ELSIF n_closed > 0 AND coalesce(p_effective_at[i], v_now)
                                   <= c_closed[array_position(c_ledger, s_ledger[s])] THEN
                code := result_business_time_in_closed_period;
            ELSE
                code := result_ok;
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
            END IF;
        END IF;
        r[i] := code;

        IF code = result_ok THEN
            a_touched[d] := true; a_touched[c] := true;
            rd[i] := d; rc[i] := c;
            IF fl & 10 = 0 THEN
                -- Whether ledger_record_lots may find a movement no queue's
                -- (a superset of its own test, which it makes set-based):
                -- a gift, a named lot or a restoration, a credit sorting
                -- before a lot made earlier while a debit waits.
                IF NOT v_lots_maybe AND (a_lot[d] OR a_lot[c]) THEN
                    IF (a_lot[d] AND a_lot[c])
                       OR coalesce(p_metadata[i] ? 'lots' OR p_metadata[i] ? 'restores', false)
                       OR (a_lot[c] AND (a_waiting[c] OR a_deb[c])
                           AND coalesce(p_effective_at[i], v_now)
                               < greatest(a_newest[c], a_credited[c])) THEN
                        v_lots_maybe := true;
                    END IF;
                    a_deb[d] := a_deb[d] OR a_lot[d];
                END IF;
                -- Kept in the loop: a join in the balances' update would
                -- cost the planner its look-ups by address.
                a_credited[c] := greatest(a_credited[c], coalesce(p_effective_at[i], v_now));
                IF greatest(a_class_since[d], a_class_since[c])
                   > coalesce(p_effective_at[i], v_now) THEN
                    v_reclassed := true;
                END IF;
            END IF;
            s := cslot[i];
            IF s > 0 THEN
                -- A later post or void of this batch refers to this transfer.
                s_found[s] := true; s_flags[s] := fl & 15; s_status[s] := 0;
                s_debit[s] := f_debit[i]; s_credit[s] := f_credit[i];
                s_dk[s] := d; s_ck[s] := c; s_amount[s] := f_amount[i];
                s_ledger[s] := f_ledger[i]; s_code[s] := f_code[i];
                s_expires[s] := CASE WHEN fl & 2 <> 0 AND p_timeout[i] > 0
                    THEN v_now + make_interval(secs => p_timeout[i]) END;
            END IF;
        END IF;

        IF chain_start IS NOT NULL THEN
            IF code NOT IN (result_ok, result_exists) AND NOT chain_failed THEN
                -- Undo the chain: restore the snapshot, fail its earlier members.
                chain_failed := true;
                a_dp := k_dp; a_dpo := k_dpo; a_cp := k_cp; a_cpo := k_cpo;
                s_found := k_found; s_flags := k_flags; s_status := k_status; s_dk := k_dk;
                s_ck := k_ck; s_amount := k_amount; s_ledger := k_ledger; s_code := k_code;
                s_debit := k_debit; s_credit := k_credit; s_expires := k_expires;
                FOR j IN chain_start..i - 1 LOOP
                    r[j] := result_linked_event_failed;
                END LOOP;
            END IF;
            IF NOT linked OR fl & 65536 <> 0 THEN
                chain_start := NULL; chain_failed := false;
            END IF;
        END IF;
    END LOOP;

    -- 3. Record. Timestamps are taken under the ledger locks: they follow
    -- commit order within every ledger.
    ts_base := nextval('transfer_timestamp_seq');
    FOR i IN 1..n LOOP
        IF r[i] = result_ok THEN
            ts[i] := ts_base + i - 1;
        ELSIF r[i] = result_exists AND pre[i] < 0 THEN
            ts[i] := ts[first_i[i]];
        END IF;
    END LOOP;

    INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger, code,
                           flags, pending_id, timeout, metadata, effective_at,
                           "timestamp", created_at, expires_at)
    SELECT u.id, u.debit, u.credit, u.amount, u.ledger, u.code, u.flags & 15, u.pending_id,
           u.timeout, u.metadata, u.effective_at, u.ts, v_now,
           CASE WHEN u.flags & 2 <> 0 AND u.timeout > 0
                THEN v_now + make_interval(secs => u.timeout) END
    FROM unnest(p_id, f_debit, f_credit, f_amount, f_ledger, f_code, p_flags,
                p_pending_id, p_timeout, p_metadata, p_effective_at, r, ts)
         AS u(id, debit, credit, amount, ledger, code, flags,
              pending_id, timeout, metadata, effective_at, res, ts)
    WHERE u.res = result_ok;

    -- By physical address: no second index probe per account. Under the
    -- ledger lock nothing else moves these rows; the id check and the count
    -- make sure of it. lots_newest: the newest business time of a posted
    -- credit, what tells a later credit that sorts before it (its lot would
    -- come before one made earlier).
    UPDATE accounts a
    SET debits_pending = a.debits_pending + u.dp, debits_posted = a.debits_posted + u.dpo,
        credits_pending = a.credits_pending + u.cp, credits_posted = a.credits_posted + u.cpo,
        lots_newest = greatest(a.lots_newest, u.credited)
    FROM (SELECT u.id, u.ctid, u.dp - u.idp AS dp, u.dpo - u.idpo AS dpo,
                 u.cp - u.icp AS cp, u.cpo - u.icpo AS cpo, u.credited
          FROM unnest(a_id, a_ctid, a_dp, a_dpo, a_cp, a_cpo, i_dp, i_dpo, i_cp, i_cpo,
                      a_touched, a_credited)
               AS u(id, ctid, dp, dpo, cp, cpo, idp, idpo, icp, icpo, touched, credited)
          WHERE u.touched) u
    WHERE a.ctid = u.ctid AND a.id = u.id;
    GET DIAGNOSTICS n_updated = ROW_COUNT;
    IF n_updated <> (SELECT count(*) FROM unnest(a_touched) t WHERE t) THEN
        RAISE EXCEPTION 'ledger_create_transfers: an account moved during the batch'
            USING ERRCODE = 'serialization_failure';
    END IF;

    -- 4. The daily totals and the lots of what the batch posted: the
    -- accounts' codes are at hand (a_code), the ledgers' zones one read. The
    -- totals are summed by business time before its day is computed (most
    -- rows share the batch's now: one conversion, not one a row); the lots'
    -- rows, in batch order (timestamp order), only when one of them may be
    -- no queue's (the loop's test: a plain one writes nothing at posting);
    -- after the balances' update, which finds the accounts by the address
    -- read in 1d (the lots' settlement moves some of them).
    IF NOT v_replica THEN
        PERFORM set_config('ledger.recording', 'on', true);
        SELECT array_agg(l.id), array_agg(l.time_zone) INTO z_ledger, z_zone
        FROM ledgers l WHERE l.id = ANY (f_ledger);
        INSERT INTO ledger_daily_totals (ledger, day, code, debit_account_code,
                                         credit_account_code, debit_class, credit_class,
                                         amount, transfers)
        SELECT g.ledger,
               (g.business_at AT TIME ZONE z_zone[array_position(z_ledger, g.ledger)])::date,
               g.code, g.debit_code, g.credit_code, g.debit_class, g.credit_class,
               sum(g.amount), sum(g.transfers)
        FROM (
            SELECT u.ledger, coalesce(u.effective_at, v_now) AS business_at, u.code,
                   a_code[u.d] AS debit_code, a_code[u.c] AS credit_code,
                   a_class[u.d] AS debit_class, a_class[u.c] AS credit_class,
                   sum(u.amount) AS amount, count(*) AS transfers
            FROM unnest(f_amount, f_ledger, f_code, p_effective_at, p_flags, r, rd, rc)
                 AS u(amount, ledger, code, effective_at, flags, res, d, c)
            WHERE u.res = result_ok AND u.flags & 10 = 0
            GROUP BY 1, 2, 3, 4, 5, 6, 7
        ) g
        GROUP BY 1, 2, 3, 4, 5, 6, 7
        -- By name: "code" is a variable of the function too.
        ON CONFLICT ON CONSTRAINT ledger_daily_totals_pkey
        DO UPDATE SET amount = ledger_daily_totals.amount + excluded.amount,
                      transfers = ledger_daily_totals.transfers + excluded.transfers;
        IF v_reclassed THEN
            -- Rare: a movement dated before its account's last change of class.
            PERFORM ledger_correct_account_classes(array_agg(x.account), array_agg(x.points),
                                                   array_agg(x.business_at), array_agg(x.cls))
            FROM (
                SELECT CASE WHEN s.side THEN f_credit[s.i] ELSE f_debit[s.i] END AS account,
                       CASE WHEN s.side THEN f_amount[s.i] ELSE -f_amount[s.i] END AS points,
                       coalesce(p_effective_at[s.i], v_now) AS business_at,
                       a_class[CASE WHEN s.side THEN rc[s.i] ELSE rd[s.i] END] AS cls
                FROM generate_series(1, n) AS q(i)
                CROSS JOIN LATERAL (VALUES (q.i, false), (q.i, true)) AS s(i, side)
                WHERE r[s.i] = result_ok AND p_flags[s.i] & 10 = 0
                  AND a_class_since[CASE WHEN s.side THEN rc[s.i] ELSE rd[s.i] END]
                      > coalesce(p_effective_at[s.i], v_now)
                ORDER BY s.i, s.side
            ) x;
        END IF;
        IF v_lots_maybe THEN
            SELECT array_agg(s.id), array_agg(s.debit), array_agg(s.credit),
                   array_agg(s.amount), array_agg(s.ledger), array_agg(s.code),
                   array_agg(s.metadata), array_agg(s.business_at),
                   array_agg((s.business_at AT TIME ZONE s.zone)::date), array_agg(s.zone),
                   array_agg(s.ts), array_agg(s.debit_lot), array_agg(s.credit_lot)
            INTO l_id, l_debit, l_credit, l_amount, l_ledger, l_code, l_metadata,
                 l_business_at, l_day, l_zone, l_ts, l_debit_lot, l_credit_lot
            FROM (
                SELECT u.id, u.debit, u.credit, u.amount, u.ledger, u.code, u.metadata,
                       coalesce(u.effective_at, v_now) AS business_at,
                       z_zone[array_position(z_ledger, u.ledger)] AS zone, u.ts,
                       a_code[u.d] = ANY (v_lot_codes) AS debit_lot,
                       a_code[u.c] = ANY (v_lot_codes) AS credit_lot
                FROM unnest(p_id, f_debit, f_credit, f_amount, f_ledger, f_code, p_metadata,
                            p_effective_at, p_flags, r, ts, rd, rc)
                     WITH ORDINALITY AS u(id, debit, credit, amount, ledger, code, metadata,
                                          effective_at, flags, res, ts, d, c, i)
                WHERE u.res = result_ok AND u.flags & 10 = 0
                  AND (a_code[u.d] = ANY (v_lot_codes) OR a_code[u.c] = ANY (v_lot_codes))
                ORDER BY u.i
            ) s;
            IF l_id IS NOT NULL THEN
                -- A gift: the debit side keeps lots too.
                SELECT * INTO recorded
                FROM ledger_record_lots(l_id, l_debit, l_credit, l_amount, l_ledger, l_code,
                                        l_metadata, l_business_at, l_day, l_zone, l_ts,
                                        l_debit_lot, l_credit_lot, l_debit_lot, a_id,
                                        a_waiting, a_newest);
            END IF;
        END IF;
        PERFORM set_config('ledger.recording', 'off', true);
    ELSE
        -- Neither recorded nor left to the settlement: a settled account's
        -- marks move with its balances.
        UPDATE accounts a
        SET lots_debited = a.debits_posted, lots_credited = a.credits_posted,
            lots_through = greatest(a.lots_through, ts_base + n)
        FROM unnest(a_id, i_dpo, i_cpo, a_touched) AS u(id, dpo, cpo, touched)
        WHERE u.touched AND a.id = u.id AND a.lots_debited = u.dpo AND a.lots_credited = u.cpo;
    END IF;

    IF has_two_phase OR EXISTS (SELECT 1 FROM unnest(p_flags, p_timeout) u(f, t)
                                WHERE f & 2 <> 0 AND t > 0) THEN
        INSERT INTO pending_expiries (transfer_id, expires_at)
        SELECT u.id, v_now + make_interval(secs => u.t)
        FROM unnest(p_id, p_flags, p_timeout, r) AS u(id, f, t, res)
        WHERE u.res = result_ok AND u.f & 2 <> 0 AND u.t > 0;
        DELETE FROM pending_expiries e
        USING unnest(p_pending_id, p_flags, r) AS u(pid, f, res)
        WHERE u.res = result_ok AND u.f & 12 <> 0 AND e.transfer_id = u.pid;
    END IF;

    FOR i IN
        SELECT u.i FROM unnest(r, pre, first_i, p_id) WITH ORDINALITY AS u(res, pre, fi, id, i)
        WHERE u.res > result_exists_with_different_fields AND u.res <> result_id_must_not_be_zero
          AND u.pre < 0 AND u.fi = u.i AND u.id <> c_nil
    LOOP
        INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger,
                               code, flags, timeout, "timestamp", created_at)
        VALUES (p_id[i], c_nil, c_nil, 0, 0, 0, 0, 0, 0, v_now)
        ON CONFLICT (id) DO NOTHING;
        GET DIAGNOSTICS n_updated = ROW_COUNT;
        IF n_updated = 0 THEN
            -- Taken meanwhile by a batch of another ledger.
            r[i] := result_exists_with_different_fields;
        END IF;
    END LOOP;

    -- Failed ids are reserved with their failure (not the nil id, which
    -- fails the same way every time anyway).
    IF EXISTS (SELECT 1 FROM unnest(r, pre) u(res, pre)
               WHERE u.res > result_exists_with_different_fields AND u.pre < 0) THEN
        INSERT INTO transfer_rejections (id, result, debit_account_id, credit_account_id,
                                         amount, ledger, code, flags, pending_id, timeout,
                                         metadata, effective_at)
        SELECT u.id, u.res, u.debit, u.credit, u.amount, u.ledger, u.code, u.flags & 15,
               u.pending_id, u.timeout, u.metadata, u.effective_at
        FROM unnest(p_id, p_debit, p_credit, p_amount, p_ledger, p_code, p_flags,
                    p_pending_id, p_timeout, p_metadata, p_effective_at, r, pre, first_i)
             WITH ORDINALITY AS u(id, debit, credit, amount, ledger, code, flags, pending_id,
                                  timeout, metadata, effective_at, res, pre, first_i, i)
        WHERE u.res > result_exists_with_different_fields AND u.res <> result_id_must_not_be_zero
          AND u.pre < 0 AND u.first_i = u.i AND u.id <> c_nil
        ON CONFLICT (id) DO NOTHING;
    END IF;

    results := r;
    timestamps := ts;
END $$;
