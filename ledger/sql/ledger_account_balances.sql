-- The ledger's public read of balances: the one place outside the posting
-- function that says what a balance means. Other packages join this view,
-- never the accounts table, when a read must pair their rows with balances
-- in one round trip (ledger/reads.py). A plain view, so the planner inlines
-- it: a join on id stays a primary key look-up.
--   spendable      what a debit may take now under debits_must_not_exceed_credits:
--                  posted credits less posted and pending debits
--   pending        amounts on their way in or out (pending credits and debits)
--   debit_balance  posted debits less posted credits (what a debt account is owed)
CREATE OR REPLACE VIEW ledger_account_balances AS
SELECT id, ledger, code, flags,
    debits_pending, debits_posted, credits_pending, credits_posted,
    credits_posted - debits_posted - debits_pending AS spendable,
    credits_pending + debits_pending AS pending,
    debits_posted - credits_posted AS debit_balance
FROM accounts;
