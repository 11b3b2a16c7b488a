-- The trigger function of every ledger table that must not change: transfers
-- and rejections are append-only, accounts change only in their balances.
CREATE OR REPLACE FUNCTION ledger_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on % is forbidden: ledger records are immutable',
        TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$;
