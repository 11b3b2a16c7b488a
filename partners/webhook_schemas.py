"""What a partner (or an operator) sends and reads of webhook endpoints and
their deliveries: bounded as the columns that store them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

import msgspec

from ledger.bounds import NO_NUL, Moment, Text500, check_moment
from partners.events import TOPICS
from partners.webhook_models import WebhookEndpoint

#: Endpoints a partner firm may have: each event is sent to each of them.
ENDPOINTS_MAX = 20
#: Longest overlap of a secret rotation: a week.
OVERLAP_MAX_SECONDS = 7 * 24 * 3600
#: Overlap of a rotation that names none: a day.
OVERLAP_DEFAULT_SECONDS = 24 * 3600

#: The ``webhook-id`` of a delivery's attempts: ``msg_`` and its id in hex.
MESSAGE_ID_PATTERN = r"^msg_[0-9a-f]{32}$"

Url = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=2000,
        pattern=r"^https?://[^\x00-\x20\x7f]+$",
        description="Where to send: an https URL to a public address (plain http and"
        " private addresses only where the platform's operator allows them), no user or"
        " password, no fragment, at most 2,000 characters.",
        examples=["https://hooks.fuelandgo.example/coalition"],
    ),
]
EventType = Annotated[
    str,
    msgspec.Meta(
        max_length=100,
        pattern=r"^[a-z][a-z0-9_.]*$",
        description=f"An event type: {', '.join(sorted(TOPICS))}.",
        examples=["partner.points_issued"],
    ),
]
EventTypes = Annotated[
    list[EventType],
    msgspec.Meta(
        min_length=1,
        max_length=len(TOPICS),
        description="The event types sent to the endpoint; null: every type, those added"
        " later included.",
    ),
]
Description = Annotated[
    Text500, msgspec.Meta(description="What the endpoint is for, for people to read.")
]
Status = Literal["enabled", "disabled"]
Reason = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=500, pattern=NO_NUL, description="Why, for the log."),
]


class EndpointSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    url: Url
    event_types: EventTypes | None = None
    description: Description = ""


class EndpointChange(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The fields to change; those left out stay. Disabling stops its
    deliveries (those due are dead-lettered, to replay); enabling starts
    afresh, its failures forgotten."""

    url: Url | msgspec.UnsetType = msgspec.UNSET
    event_types: EventTypes | msgspec.UnsetType | None = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    status: (
        Annotated[
            Status, msgspec.Meta(description="Enabled: events are sent to it; disabled: none.")
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class EndpointSecretRotation(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    overlap_seconds: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            le=OVERLAP_MAX_SECONDS,
            description="How long the secret before it keeps signing beside the new one"
            " (every delivery then carries both signatures): 0 to 604,800 seconds, a day"
            " if left out.",
        ),
    ] = OVERLAP_DEFAULT_SECONDS


class StatusChange(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    reason: Reason | None = None


class ReplaySince(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    since: Annotated[
        Moment,
        msgspec.Meta(description="Replay the endpoint's dead-lettered deliveries made since."),
    ]

    def __post_init__(self) -> None:
        check_moment("since", self.since)


class EndpointFields(msgspec.Struct, kw_only=True, frozen=True):
    """What a webhook endpoint shows, a partner's (``EndpointView``) or a
    program's own (``partners.program_webhook_schemas``): every field is
    the model's attribute of the same name."""

    id: Annotated[uuid.UUID, msgspec.Meta(description="The endpoint's id.")]
    url: Annotated[str, msgspec.Meta(description="Where events are sent.")]
    event_types: Annotated[list[str] | None, msgspec.Meta(description="Null: every event type.")]
    description: Annotated[str, msgspec.Meta(description="What the endpoint is for.")]
    status: Annotated[
        Status, msgspec.Meta(description="Enabled: events are sent to it; disabled: none.")
    ]
    failing_since: Annotated[
        datetime | None,
        msgspec.Meta(
            description="The first failure since the last success; after five days of"
            " failures the endpoint is disabled."
        ),
    ]
    disabled_at: Annotated[
        datetime | None, msgspec.Meta(description="When it was disabled; null while enabled.")
    ]
    disabled_reason: Annotated[
        str | None,
        msgspec.Meta(description="Why it was disabled (by whom, or after five days of failures)."),
    ]
    previous_secret_expires_at: Annotated[
        datetime | None,
        msgspec.Meta(description="Until when the secret before the last rotation also signs."),
    ]
    created_at: Annotated[datetime, msgspec.Meta(description="When it was added.")]
    updated_at: Annotated[datetime, msgspec.Meta(description="When it last changed.")]

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> Self:
        return cls(**{name: getattr(endpoint, name) for name in cls.__struct_fields__})


class EndpointView(EndpointFields, kw_only=True, frozen=True):
    partner_id: Annotated[uuid.UUID, msgspec.Meta(description="The partner firm it is of.")]


class CreatedEndpoint(EndpointView, kw_only=True, frozen=True):
    secret: Annotated[
        str,
        msgspec.Meta(
            description="The signing secret (`whsec_...`, Standard Webhooks): shown on"
            " creation and on rotation only."
        ),
    ]


class RotatedSecret(msgspec.Struct, kw_only=True, frozen=True):
    secret: Annotated[str, msgspec.Meta(description="The new signing secret, shown this once.")]
    previous_secret_expires_at: Annotated[
        datetime | None,
        msgspec.Meta(description="Until when the secret before also signs; null: no overlap."),
    ]


class AttemptView(msgspec.Struct, kw_only=True, frozen=True):
    number: Annotated[
        int,
        msgspec.Meta(
            description="1 for the first attempt of its delivery; replays go on counting."
        ),
    ]
    attempted_at: Annotated[datetime, msgspec.Meta(description="When the attempt started.")]
    status_code: Annotated[
        int | None, msgspec.Meta(description="The answer's status; null when none came.")
    ]
    latency_ms: Annotated[
        int, msgspec.Meta(description="Milliseconds from the call to its answer or failure.")
    ]
    succeeded: Annotated[bool, msgspec.Meta(description="A 2xx answer within the timeout.")]
    error: Annotated[str | None, msgspec.Meta(description="Why it failed; null when it succeeded.")]
    response_head: Annotated[
        str | None, msgspec.Meta(description="The start of the answer's body.")
    ]


class DeliveryView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[
        str,
        msgspec.Meta(description="The `webhook-id` of every attempt (`msg_...`)."),
    ]
    endpoint_id: Annotated[uuid.UUID, msgspec.Meta(description="The endpoint it is sent to.")]
    event_type: Annotated[str, msgspec.Meta(description="The event's type, the payload's `type`.")]
    event_id: Annotated[uuid.UUID, msgspec.Meta(description="The event it carries.")]
    status: Annotated[
        Literal["pending", "succeeded", "dead"],
        msgspec.Meta(
            description="pending: to be sent (again); succeeded: a 2xx came; dead: every"
            " attempt failed, or its endpoint was disabled (replay it)."
        ),
    ]
    attempts: Annotated[int, msgspec.Meta(description="Attempts made so far.")]
    next_attempt_at: Annotated[
        datetime | None, msgspec.Meta(description="When it is sent next, while pending.")
    ]
    created_at: Annotated[datetime, msgspec.Meta(description="When it was made from its event.")]
    delivered_at: Annotated[datetime | None, msgspec.Meta(description="When an attempt succeeded.")]
    dead_at: Annotated[datetime | None, msgspec.Meta(description="When it was dead-lettered.")]


class DeliveryDetail(DeliveryView, kw_only=True, frozen=True):
    payload: Annotated[
        Any, msgspec.Meta(description="The body sent: `type`, `timestamp` and `data`.")
    ]
    attempt_log: Annotated[list[AttemptView], msgspec.Meta(description="Oldest first.")]


class Replayed(msgspec.Struct, kw_only=True, frozen=True):
    replayed: Annotated[
        int, msgspec.Meta(description="Deliveries that will be sent again, at once.")
    ]


def message_id(delivery_id: uuid.UUID) -> str:
    return f"msg_{delivery_id.hex}"


def delivery_id(message: str) -> uuid.UUID:
    """The delivery of a ``webhook-id`` (checked by the path's pattern)."""
    return uuid.UUID(hex=message.removeprefix("msg_"))
