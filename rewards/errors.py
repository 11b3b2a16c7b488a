"""Typed rewards errors, each with a stable ``type`` slug for API problems."""


class RewardsError(Exception):
    type_slug = "rewards-error"


class NotFound(RewardsError):
    type_slug = "not-found"


class Conflict(RewardsError):
    """A business key (order, return, event, adjustment id) was recorded
    with other fields."""

    type_slug = "idempotency-conflict"


class IdempotencyKeyReused(Conflict):
    """The member's Idempotency-Key was used for another request."""

    type_slug = "idempotency-key-reused"


class ProgramExistsWithDifferentFields(Conflict):
    """A program of this slug exists, opened with other fields."""

    type_slug = "program-exists-with-different-fields"


class CaptureExceedsHold(RewardsError):
    """A capture asks for more points than the hold holds."""

    type_slug = "capture-exceeds-hold"


class GiftToSelf(RewardsError):
    type_slug = "gift-to-self"


class VersionAlreadyPublished(RewardsError):
    """The version is published from another time: its start never moves."""

    type_slug = "version-already-published"


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
