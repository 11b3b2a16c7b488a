"""Finance: liability, breakage, settlement between partners and invoices, from the ledger."""
