"""The shared core every domain package stands on: programs and members,
the acting principal and its tenant, the audit trail, the outbox, the
registry of ledger codes and the base of the domain errors."""
