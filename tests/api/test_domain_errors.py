"""A domain error's status comes from its kind: a new module's errors need
no entry in a central map."""

from __future__ import annotations

import pytest

from api.problems import KIND_STATUS, PROBLEM_BASE, from_domain_error
from core.errors import DomainError, ErrorKind


@pytest.mark.parametrize("kind", list(ErrorKind))
def test_an_error_unknown_to_the_api_answers_its_kinds_status(kind: ErrorKind) -> None:
    class PartnerRefused(DomainError):  # as a new module would declare it
        type_slug = "partner-refused"

    PartnerRefused.kind = kind
    answer = from_domain_error(PartnerRefused("the partner refused"))
    assert answer.status_code == KIND_STATUS[kind]
    assert answer.type_ == PROBLEM_BASE + "partner-refused"
    assert answer.detail == "the partner refused"
    # Every 503 says when to come back.
    assert ("Retry-After" in (answer.headers or {})) == (kind is ErrorKind.UNAVAILABLE)


def test_every_kind_has_a_status() -> None:
    assert set(KIND_STATUS) == set(ErrorKind)
