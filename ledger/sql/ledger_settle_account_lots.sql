-- Settles the given lot accounts, under their ledgers' locks (taken in
-- ledger order, as the posting function takes them).
CREATE OR REPLACE FUNCTION ledger_settle_account_lots(
    p_accounts uuid[], OUT accounts bigint, OUT lots bigint, OUT movements bigint
)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1279607879, q.ledger)
    FROM (SELECT DISTINCT a.ledger FROM accounts a
          WHERE a.id = ANY (p_accounts)
            AND (a.debits_posted > a.lots_debited OR a.credits_posted > a.lots_credited)
          ORDER BY 1) q;
    SELECT s.accounts, s.lots, s.movements INTO accounts, lots, movements
    FROM ledger_settle_lots(p_accounts) s;
END $$;
