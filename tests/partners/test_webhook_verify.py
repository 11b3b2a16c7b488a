"""The verifier the project ships for receivers: a request signed with the
secret within five minutes passes; anything else, garbage of every shape
included, is ``WebhookRejected`` (a 401), never another exception."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks import Webhook

from partners.webhook_endpoints import new_secret
from partners.webhook_sending import signature_header
from partners.webhook_verify import WebhookRejected, WebhookVerifier

SECRET = new_secret()
BODY = '{"type":"partner.points_issued","timestamp":"2026-12-02T10:00:00Z","data":{}}'


def signed(at: datetime | None = None, body: str = BODY, *secrets: str) -> dict[str, str]:
    at = at or datetime.now(UTC)
    return {
        "webhook-id": "msg_0123",
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature_header(secrets or (SECRET,), "msg_0123", at, body),
    }


def test_a_request_signed_now_passes_and_answers_its_json() -> None:
    assert (
        WebhookVerifier(SECRET).verify(BODY.encode(), signed())["type"] == "partner.points_issued"
    )
    # Header names in any case, as servers hand them over.
    upper = {k.upper(): v for k, v in signed().items()}
    assert WebhookVerifier(SECRET).verify(BODY, upper)["data"] == {}


def test_a_replayed_request_is_refused_by_its_timestamp() -> None:
    old = signed(datetime.now(UTC) - timedelta(minutes=6))
    with pytest.raises(WebhookRejected, match="not within five minutes"):
        WebhookVerifier(SECRET).verify(BODY, old)
    with pytest.raises(WebhookRejected, match="not within five minutes"):
        WebhookVerifier(SECRET).verify(BODY, signed(datetime.now(UTC) + timedelta(minutes=6)))


def test_another_secret_a_changed_body_and_a_missing_header_are_refused() -> None:
    with pytest.raises(WebhookRejected, match="no signature"):
        WebhookVerifier(new_secret()).verify(BODY, signed())
    with pytest.raises(WebhookRejected, match="no signature"):
        WebhookVerifier(SECRET).verify(BODY + " ", signed())
    headers = signed()
    del headers["webhook-id"]
    with pytest.raises(WebhookRejected, match="webhook-id header is missing"):
        WebhookVerifier(SECRET).verify(BODY, headers)


def test_a_body_not_utf8_or_not_json_is_refused() -> None:
    with pytest.raises(WebhookRejected, match="UTF-8"):
        WebhookVerifier(SECRET).verify(b"\xff\xfe", signed())
    with pytest.raises(WebhookRejected, match="not JSON"):
        WebhookVerifier(SECRET).verify("not json", signed(body="not json"))


def test_any_of_two_secrets_during_a_rotation_verifies() -> None:
    old, new = new_secret(), new_secret()
    both = signed(None, BODY, new, old)
    assert len(both["webhook-signature"].split(" ")) == 2
    assert WebhookVerifier(old).verify(BODY, both) and WebhookVerifier(new).verify(BODY, both)
    assert WebhookVerifier(new_secret(), new).verify(BODY, signed(None, BODY, new))


def test_a_timestamp_not_in_utc_is_not_signed() -> None:
    # The package would read its wall-clock digits as UTC: hours off.
    local = datetime.now(UTC).astimezone(timezone(timedelta(hours=2)))
    with pytest.raises(ValueError, match="UTC"):
        signature_header((SECRET,), "msg_1", local, BODY)


def test_a_secret_that_is_not_one_is_the_receivers_configuration_at_fault() -> None:
    with pytest.raises(ValueError, match="not a webhook secret"):
        WebhookVerifier("whsec_!!!not base64!!!")


def test_the_package_alone_raises_other_errors_on_garbage() -> None:
    # Why the wrapper exists: this is not a WebhookVerificationError (nor,
    # before standardwebhooks 1.3, was an entry without a comma: ValueError).
    with pytest.raises(json.JSONDecodeError):
        Webhook(SECRET).verify("not json", signed(body="not json"))
    garbage = {**signed(), "webhook-signature": "v1"}
    with pytest.raises(WebhookRejected):
        WebhookVerifier(SECRET).verify(BODY, garbage)


_text = st.text(max_size=80) | st.sampled_from(
    ["v1", "v1,", "v1,===", "v1,@@@", "v2,abc", "v1,a v1,b", " ", ",", "v1,YWJj\x00"]
)
_stamps = st.text(max_size=30) | st.sampled_from(
    ["nan", "inf", "-inf", "1e400", "-1", "9" * 40, "0x10", str(int(datetime.now(UTC).timestamp()))]
)


@settings(max_examples=400, deadline=None)
@given(
    id_=_text,
    stamp=_stamps,
    signature=_text,
    body=st.binary(max_size=64) | st.text(max_size=64),
    extra=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
)
def test_garbage_headers_and_bodies_are_only_ever_rejected(
    id_: str, stamp: str, signature: str, body: bytes | str, extra: dict[str, str]
) -> None:
    headers = {
        **extra,
        "webhook-id": id_,
        "webhook-timestamp": stamp,
        "webhook-signature": signature,
    }
    with pytest.raises(WebhookRejected):
        WebhookVerifier(SECRET).verify(body, headers)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(min_size=1, max_size=40))
def test_a_signature_of_random_bytes_is_rejected(raw: bytes) -> None:
    headers = {**signed(), "webhook-signature": f"v1,{base64.b64encode(raw).decode()}"}
    with pytest.raises(WebhookRejected, match="no signature"):
        WebhookVerifier(SECRET).verify(BODY, headers)
