"""Refusals of the leads module, each with its kind (``core.errors``)."""

from __future__ import annotations

from core.errors import DomainError, ErrorKind


class RegistrationConflict(DomainError):
    """An active registration of the program holds the company. The answer
    is the same whoever holds it (the registrant included): it names no one."""

    type_slug = "lead-registration-conflict"
    kind = ErrorKind.CONFLICT

    MESSAGE = (
        "an active registration of this program already holds this company (by its domain"
        " or its name); it cannot be registered again until that one is closed or expires"
    )

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class InvalidLead(DomainError):
    type_slug = "invalid-lead"
    kind = ErrorKind.INVALID


class InvalidScoringCriteria(DomainError):
    type_slug = "invalid-lead-scoring"
    kind = ErrorKind.INVALID


class RoutingConfigurationRefused(DomainError):
    """A routing configuration that would leave a partner unreachable by
    accident: every problem is listed."""

    type_slug = "routing-configuration-refused"
    kind = ErrorKind.INVALID

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the routing configuration is refused: " + "; ".join(problems))
        self.problems = problems


class InvalidReferralTerms(DomainError):
    type_slug = "invalid-referral-terms"
    kind = ErrorKind.INVALID


class NoRoutingConfiguration(DomainError):
    type_slug = "no-routing-configuration"
    kind = ErrorKind.CONFLICT


class OfferClosed(DomainError):
    """The offer was answered or withdrawn already."""

    type_slug = "lead-offer-closed"
    kind = ErrorKind.CONFLICT


class StatusMoveRefused(DomainError):
    type_slug = "lead-status-move-refused"
    kind = ErrorKind.CONFLICT


class ExtensionClosed(DomainError):
    type_slug = "lead-extension-closed"
    kind = ErrorKind.CONFLICT
