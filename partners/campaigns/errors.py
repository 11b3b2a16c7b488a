"""Why a campaign use case refuses, each with its kind and problem type."""

from __future__ import annotations

from core.errors import DomainError, ErrorKind


class InvalidCampaign(DomainError):
    """A proposal that does not hold together (shares not adding to 100%,
    a store of no participant, an end before its start...)."""

    type_slug = "invalid-campaign"
    kind = ErrorKind.INVALID


class CampaignNotOpen(DomainError):
    """The campaign can no longer be approved or stopped (it ended, was
    stopped, or its start failed)."""

    type_slug = "campaign-not-open"
    kind = ErrorKind.CONFLICT


class NotParticipant(DomainError):
    """Only a participant approves its own share."""

    type_slug = "not-a-campaign-participant"
    kind = ErrorKind.FORBIDDEN
