-- The trigger of transfers (statement-level, AFTER INSERT, its new rows as
-- the transition table new_transfers): what a batch posted, recorded in the
-- same transaction. Posted movements only (plain and post_pending rows, not
-- pending, not void; ledger 0 reservations skipped):
--   ledger_daily_totals: amounts and counts by accounting day, code and the
--     two accounts' codes, one upsert per batch;
--   lots, lot_movements and lot_daily_movements (ledger_record_lots) for the
--     movements of accounts whose code is in ledger_lot_codes.
-- The accounting day is the business time (coalesce(effective_at,
-- created_at)) in the ledger's time zone.
CREATE OR REPLACE FUNCTION ledger_record_movements() RETURNS trigger
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_codes integer[];
    a_id uuid[]; a_debit uuid[]; a_credit uuid[]; a_amount bigint[]; a_ledger integer[];
    a_code integer[]; a_metadata jsonb[]; a_business_at timestamptz[]; a_day date[];
    a_zone text[]; a_ts bigint[]; a_debit_lot boolean[]; a_credit_lot boolean[];
    a_gift boolean[];
    recorded record;
BEGIN
    PERFORM set_config('ledger.recording', 'on', true);
    SELECT coalesce(array_agg(c.code), '{}') INTO v_codes FROM ledger_lot_codes c;
    -- Each account read once: a hot account (the issuance) probed per row
    -- would walk its chain of row versions every time.
    WITH posted AS MATERIALIZED (
        SELECT t.id, t.debit_account_id, t.credit_account_id, t.amount, t.ledger, t.code,
               t.metadata, t.effective_at, t.created_at, t."timestamp"
        FROM new_transfers t WHERE t.ledger <> 0 AND t.flags & 10 = 0
    ), touched AS MATERIALIZED (
        SELECT a.id, a.code FROM accounts a
        WHERE a.id IN (SELECT p.debit_account_id FROM posted p
                       UNION SELECT p.credit_account_id FROM posted p)
    ), zones AS MATERIALIZED (
        SELECT g.id, g.time_zone FROM ledgers g
        WHERE g.id IN (SELECT DISTINCT p.ledger FROM posted p)
    ), m AS MATERIALIZED (
        SELECT t.id, t.debit_account_id AS debit, t.credit_account_id AS credit, t.amount,
               t.ledger, t.code, t.metadata, coalesce(t.effective_at, t.created_at) AS business_at,
               (coalesce(t.effective_at, t.created_at) AT TIME ZONE g.time_zone)::date AS day,
               g.time_zone AS zone, t."timestamp" AS ts, da.code AS debit_code,
               ca.code AS credit_code
        FROM posted t
        JOIN zones g ON g.id = t.ledger
        JOIN touched da ON da.id = t.debit_account_id
        JOIN touched ca ON ca.id = t.credit_account_id
    ), totals AS (
        INSERT INTO ledger_daily_totals (ledger, day, code, debit_account_code,
                                         credit_account_code, amount, transfers)
        SELECT m.ledger, m.day, m.code, m.debit_code, m.credit_code, sum(m.amount), count(*)
        FROM m GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (ledger, day, code, debit_account_code, credit_account_code)
        DO UPDATE SET amount = ledger_daily_totals.amount + excluded.amount,
                      transfers = ledger_daily_totals.transfers + excluded.transfers
    )
    SELECT array_agg(s.id), array_agg(s.debit), array_agg(s.credit), array_agg(s.amount),
           array_agg(s.ledger), array_agg(s.code), array_agg(s.metadata),
           array_agg(s.business_at), array_agg(s.day), array_agg(s.zone), array_agg(s.ts),
           array_agg(s.debit_code = ANY (v_codes)), array_agg(s.credit_code = ANY (v_codes)),
           array_agg(s.debit_code = ANY (v_codes))
    INTO a_id, a_debit, a_credit, a_amount, a_ledger, a_code, a_metadata, a_business_at,
         a_day, a_zone, a_ts, a_debit_lot, a_credit_lot, a_gift
    FROM (SELECT m.* FROM m
          WHERE m.debit_code = ANY (v_codes) OR m.credit_code = ANY (v_codes)
          ORDER BY m.ts) s;

    IF a_id IS NOT NULL THEN
        SELECT * INTO recorded
        FROM ledger_record_lots(a_id, a_debit, a_credit, a_amount, a_ledger, a_code,
                                a_metadata, a_business_at, a_day, a_zone, a_ts, a_debit_lot,
                                a_credit_lot, a_gift);
    END IF;
    PERFORM set_config('ledger.recording', 'off', true);
    RETURN NULL;
END $$;
