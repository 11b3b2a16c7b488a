"""Verifying a Standard Webhooks request, as a partner receiving the
platform's webhooks does (and as the platform may for hooks sent to it):
the code the project ships for receivers.

``standardwebhooks.Webhook.verify`` raises its ``WebhookVerificationError``
for a bad signature, but ``ValueError`` for a signature entry without a
comma, ``binascii.Error`` for bad base64, ``UnicodeDecodeError`` for a body
that is not UTF-8, and ``json.JSONDecodeError`` for one that is not JSON.
``WebhookVerifier.verify`` answers every one of them, and anything else a
malformed request can cause, with ``WebhookRejected``: a receiver answers it
401, never 500.

    verifier = WebhookVerifier(secret)           # "whsec_..."
    try:
        event = verifier.verify(body, request.headers)
    except WebhookRejected as rejected:
        return 401, str(rejected)
    # event["type"], event["data"]; drop a webhook-id already handled.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

#: The longest header value looked at: a signature per secret, a few at most.
HEADER_MAX = 4096
REQUIRED = ("webhook-id", "webhook-timestamp", "webhook-signature")


class WebhookRejected(Exception):
    """The request is not a webhook signed with the secret, or its
    timestamp is more than five minutes off: answer 401."""


class WebhookVerifier:
    def __init__(self, *secrets: str) -> None:
        """One secret, or several while the sender rotates (any may match).
        A secret that is not ``whsec_`` + base64 raises ``ValueError``: it
        is the receiver's configuration at fault, not a request."""
        if not secrets:
            raise ValueError("a verifier needs a secret")
        try:
            self._webhooks = [Webhook(secret) for secret in secrets]
        except Exception as error:
            raise ValueError(f"not a webhook secret (whsec_ and base64): {error}") from None

    def verify(self, body: bytes | str, headers: Mapping[str, str]) -> Any:
        """The body's JSON, if a signature of the request is the secret's
        and its timestamp is within five minutes; else ``WebhookRejected``."""
        found = _headers(headers)
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError:
                raise WebhookRejected("the body is not UTF-8") from None
        last: Exception | None = None
        for webhook in self._webhooks:
            try:
                return webhook.verify(body, found)
            except WebhookVerificationError as error:
                last = error
            except ValueError as error:
                # Among them json.JSONDecodeError: verified, but not JSON.
                if isinstance(error, json.JSONDecodeError):
                    raise WebhookRejected("the body is not JSON") from None
                last = error
            except Exception as error:  # what garbage headers make the package raise
                last = error
        raise WebhookRejected(_reason(last))


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    try:
        lowered = {str(k).lower(): v for k, v in headers.items()}
    except Exception:
        raise WebhookRejected("unreadable headers") from None
    found: dict[str, str] = {}
    for name in REQUIRED:
        value = lowered.get(name)
        if not isinstance(value, str) or not value.strip():
            raise WebhookRejected(f"the {name} header is missing")
        if len(value) > HEADER_MAX:
            raise WebhookRejected(f"the {name} header is too long")
        found[name] = value
    return found


def _reason(error: Exception | None) -> str:
    if isinstance(error, WebhookVerificationError):
        message = str(error)
        if "timestamp" in message.lower():
            return f"the webhook-timestamp is not within five minutes of now ({message})"
        if message == "Invalid Signature Headers":
            return "the webhook-timestamp is not a number of seconds"
        return "no signature of the request matches the secret"
    return "the webhook-signature is malformed"
