-- The statement-level trigger of lots, lot_movements and the daily
-- aggregates: only the posting path (ledger_record_movements and the
-- functions it calls, which set ledger.recording for their statements) and
-- the backfill (ledger_derive_lots) write them.
CREATE OR REPLACE FUNCTION ledger_guard_recorded() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('ledger.recording', true) IS DISTINCT FROM 'on' THEN
        RAISE EXCEPTION 'ledger: % on % is forbidden: it is written by the posting path only',
            TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NULL;
END $$;
