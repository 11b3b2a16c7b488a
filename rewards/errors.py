"""Typed rewards errors, each with a stable ``type`` slug for API problems."""


class RewardsError(Exception):
    type_slug = "rewards-error"


class NotFound(RewardsError):
    type_slug = "not-found"


class Conflict(RewardsError):
    """The same idempotency key was used with other fields."""

    type_slug = "idempotency-conflict"


class MemberNotActive(RewardsError):
    type_slug = "member-not-active"


class InvalidRules(RewardsError):
    type_slug = "invalid-rules"


class PublishInPast(RewardsError):
    """Rules take effect now or later: past earnings are never recomputed."""

    type_slug = "publish-in-past"


class ReturnExceedsPurchase(RewardsError):
    type_slug = "return-exceeds-purchase"


class LedgerRefused(RewardsError):
    """The ledger refused a movement this use case needs (its result code)."""

    type_slug = "ledger-refused"


class InsufficientPoints(RewardsError):
    type_slug = "insufficient-points"


class RewardUnavailable(RewardsError):
    """Not in the catalog, outside its validity, or out of stock."""

    type_slug = "reward-unavailable"


class GiftLimitExceeded(RewardsError):
    type_slug = "gift-limit-exceeded"


class HoldClosed(RewardsError):
    """The hold was captured, released, or has timed out."""

    type_slug = "hold-closed"
