"""Typed ledger errors, each with a stable ``type`` slug for API problems."""


class LedgerError(Exception):
    type_slug = "ledger-error"


class LedgerUnavailable(LedgerError):
    """The database could not confirm the batch: it was not applied, or its
    outcome is unknown. Retrying with the same transfer ids is always safe."""

    type_slug = "ledger-unavailable"


class BatchTooLarge(LedgerError):
    type_slug = "batch-too-large"


class InvalidCursor(LedgerError):
    type_slug = "invalid-cursor"
