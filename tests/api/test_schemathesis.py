"""Schemathesis over every operation of the OpenAPI document, against a live
server: no 5xx, and every answer's status, content type and body as the
document says.

Schemathesis' engine runs once for the module (its examples, coverage and
fuzzing phases, as its CLI would); each operation is then a test of its own
that lists what failed there, with a curl command to reproduce it. (Its
pytest integration cannot load the schema from a fixture under pytest 9.2.)

Deterministic (a fixed seed, no example database), so that a failure here is
a finding that repeats, not a flake. Path parameters naming the seeded
program and a member (not the one whose token is used: an erasure would end it),
and a job (``drain-outbox``, harmless to run), are used half of the time, so
that generated requests reach the handlers' logic and not only their 404.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.engine import Status, events, from_schema

from api.app import create_app
from api.settings import Settings
from tests.api.live_server import MEMBERS, PARTNER, PROGRAM, LiveApi, live_api

#: Generated examples per operation in the fuzzing phase: enough to reach
#: every documented answer, few enough that the run takes minutes.
MAX_EXAMPLES = 30
#: The engine runs once, in the module's first test (its fixture): minutes
#: for some two hundred operations, longer than the suite's per-test limit.
pytestmark = pytest.mark.timeout(1200)
SEED = 20250808
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


@cache
def _document() -> dict[str, Any]:
    """The app's OpenAPI document (built once: it takes a while); read only."""
    app = create_app(Settings(admin_token="x" * 16), database_url="postgresql://unused")
    document: dict[str, Any] = app.openapi_schema.to_schema()
    return document


def _operations() -> list[str]:
    """Every operation of the document, as schemathesis labels them."""
    paths = _document()["paths"]
    return sorted(f"{method.upper()} {path}" for path, item in paths.items() for method in item)


#: Errors that are not problems, and why: the token endpoint answers as RFC
#: 6749 section 5.2 says, for OAuth clients (api.routes.oauth).
NOT_PROBLEMS = {("POST", "/oauth/token", "400"), ("POST", "/oauth/token", "401")}


def test_every_error_is_documented_as_a_problem() -> None:
    wrong = [
        (method.upper(), path, status, sorted(response.get("content", {})))
        for path, item in _document()["paths"].items()
        for method, operation in item.items()
        for status, response in operation["responses"].items()
        if int(status) >= 400
        and (method.upper(), path, status) not in NOT_PROBLEMS
        and response.get("content")
        != {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    ]
    assert wrong == []


def test_replays_are_documented() -> None:
    """A 201 whose body says whether it was ``replayed`` also answers 200."""
    document = _document()
    schemas = document["components"]["schemas"]
    missing = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            created = operation["responses"].get("201", {}).get("content", {})
            for media in created.values():
                name = media["schema"].get("$ref", "").rpartition("/")[2]
                if "replayed" in schemas.get(name, {}).get("properties", {}):
                    replay = operation["responses"].get("200", {}).get("content", {})
                    if replay != created:
                        missing.append(f"{method.upper()} {path}")
    assert missing == []


def test_flags_are_integers_with_their_bits_described() -> None:
    schemas = _document()["components"]["schemas"]
    wrong = {
        name: schema["properties"]["flags"]
        for name, schema in schemas.items()
        if "flags" in schema.get("properties", {})
        and not (
            schema["properties"]["flags"].get("type") == "integer"
            and "enum" not in schema["properties"]["flags"]
            and "1" in schema["properties"]["flags"].get("description", "")
        )
    }
    assert wrong == {}


@pytest.fixture(scope="module")
def live(server_url: str) -> Iterator[LiveApi]:
    with live_api(server_url) as api:
        yield api


def _schema(live: LiveApi) -> schemathesis.BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": live.base_url,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "auth": {
                "openapi": {
                    "AdminToken": {"bearer": live.admin_token},
                    "MemberToken": {"bearer": live.member_token},
                    "PartnerToken": {"bearer": live.partner_token},
                }
            },
            "request-timeout": 30,
            "continue-on-failure": True,
        }
    )
    schema = schemathesis.openapi.from_url(f"{live.base_url}/schema/openapi.json", config=config)

    @schema.hook
    def flatmap_path_parameters(
        context: schemathesis.HookContext, path_parameters: dict[str, Any]
    ) -> st.SearchStrategy[dict[str, Any]]:
        if not path_parameters:
            return st.just(path_parameters)
        # A job that is harmless at any time (a run hands on the outbox's events).
        known = {
            "slug": PROGRAM,
            "external_id": MEMBERS[1],
            "name": "drain-outbox",
            "partner": PARTNER,
            "user_id": live.partner_user,
            "client_id": live.partner_client,
        }
        real = {k: known.get(k, v) for k, v in path_parameters.items()}
        return st.sampled_from([path_parameters, real])

    return schema


@pytest.fixture(scope="module")
def findings(live: LiveApi) -> dict[str, list[str]]:
    """What failed, by operation; ``"*"`` holds errors of the run itself."""
    found: dict[str, list[str]] = defaultdict(list)
    tested: set[str] = set()
    answers: dict[str, set[int]] = defaultdict(set)
    for event in from_schema(_schema(live)).execute():
        if isinstance(event, events.ScenarioFinished):
            tested.add(event.recorder.label)
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    answers[event.recorder.label].add(interaction.response.status_code)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        case = event.recorder.cases[case_id].value
                        failure = check.failure_info.failure
                        interaction = event.recorder.interactions.get(case_id)
                        response = interaction.response if interaction else None
                        status = response.status_code if response else "no answer"
                        found[event.recorder.label].append(
                            f"{check.name} ({status}): {failure.title}: {failure.message}\n"
                            f"    {case.as_curl_command()}"
                        )
        elif isinstance(event, events.NonFatalError):
            found[event.label].append(f"error: {event.value!r}")
        elif isinstance(event, events.FatalError):
            found["*"].append(f"fatal: {event.exception!r}")
    for label in _operations():
        if label not in tested:
            found[label].append("not tested")
        elif not answers[label] - {401, 403}:
            # Every request refused at the door: the tokens are wrong, and
            # nothing behind them was tested.
            found[label].append(f"only answered {sorted(answers[label])}")
    print({label: sorted(statuses) for label, statuses in sorted(answers.items())})
    return found


def test_the_run_itself_had_no_error(findings: dict[str, list[str]]) -> None:
    assert findings.get("*", []) == []


@pytest.mark.parametrize("operation", _operations())
def test_operation_conforms(findings: dict[str, list[str]], operation: str) -> None:
    failures = sorted(set(findings.get(operation, [])))
    assert not failures, f"{len(failures)} findings:\n" + "\n".join(failures)
