-- Settles the given lot accounts, under their ledgers' locks (taken in
-- ledger order, as the posting function takes them).
CREATE OR REPLACE FUNCTION ledger_settle_account_lots(
    p_accounts uuid[], OUT accounts bigint, OUT lots bigint, OUT movements bigint
)
LANGUAGE plpgsql AS $$
BEGIN
    -- Every given account's ledger: what looks settled before the lock may
    -- not be once a posting waiting for it commits.
    PERFORM pg_advisory_xact_lock(1279607879, q.ledger)
    FROM (SELECT DISTINCT a.ledger FROM accounts a WHERE a.id = ANY (p_accounts) ORDER BY 1) q;
    SELECT s.accounts, s.lots, s.movements INTO accounts, lots, movements
    FROM ledger_settle_lots(p_accounts) s;
END $$;
