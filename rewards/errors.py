"""The rewards domain's errors, each with its kind (``core.errors``) and a
stable ``type`` slug for API problems. Not found, conflicts of business keys
and reused idempotency keys are the core's (``core.errors``)."""

from core.errors import Conflict, DomainError, ErrorKind


class ProgramExistsWithDifferentFields(Conflict):
    """A program of this slug exists, opened with other fields."""

    type_slug = "program-exists-with-different-fields"


class CaptureExceedsHold(DomainError):
    """A capture asks for more points than the hold holds."""

    type_slug = "capture-exceeds-hold"
    kind = ErrorKind.INVALID


class GiftToSelf(DomainError):
    type_slug = "gift-to-self"
    kind = ErrorKind.INVALID


class VersionAlreadyPublished(DomainError):
    """The version is published from another time: its start never moves."""

    type_slug = "version-already-published"
    kind = ErrorKind.CONFLICT


class InvalidRules(DomainError):
    type_slug = "invalid-rules"
    kind = ErrorKind.INVALID


class PublishInPast(DomainError):
    """Rules take effect now or later: past earnings are never recomputed."""

    type_slug = "publish-in-past"
    kind = ErrorKind.INVALID


class ReturnExceedsPurchase(DomainError):
    type_slug = "return-exceeds-purchase"
    kind = ErrorKind.INVALID


class InvalidPurchase(DomainError):
    type_slug = "invalid-purchase"
    kind = ErrorKind.INVALID


class LedgerRefused(DomainError):
    """The ledger refused a movement this use case needs (its result code)."""

    type_slug = "ledger-refused"
    kind = ErrorKind.CONFLICT


class InsufficientPoints(DomainError):
    type_slug = "insufficient-points"
    kind = ErrorKind.INVALID


class RewardUnavailable(DomainError):
    """Not in the catalog, outside its validity, or out of stock."""

    type_slug = "reward-unavailable"
    kind = ErrorKind.CONFLICT


class GiftLimitExceeded(DomainError):
    type_slug = "gift-limit-exceeded"
    kind = ErrorKind.INVALID


class HoldClosed(DomainError):
    """The hold was captured, released, or has timed out."""

    type_slug = "hold-closed"
    kind = ErrorKind.CONFLICT


class ProgramSunsetting(DomainError):
    """The program's sunset is announced and its end of earning has come:
    nothing new is earned, points already earned are still redeemed until
    the sunset (``rewards.end_of_earning``)."""

    type_slug = "program-sunsetting"
    kind = ErrorKind.CONFLICT
