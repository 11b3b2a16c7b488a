"""What a program's operator sends and reads of the program's own webhook
endpoints: bounded as the columns that store them (those of the partners'
endpoints, ``partners.webhook_schemas``), with the program's event types."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec

from partners.program_webhook_events import OPERATOR_TOPICS
from partners.webhook_models import WebhookEndpoint
from partners.webhook_schemas import Description, Status, Url

#: Endpoints a program may have of its own: each event is sent to each of them.
PROGRAM_ENDPOINTS_MAX = 20

ProgramEventType = Annotated[
    str,
    msgspec.Meta(
        max_length=100,
        pattern=r"^[a-z][a-z0-9_.]*$",
        description=f"A program event type: {', '.join(sorted(OPERATOR_TOPICS))}.",
        examples=["finance.reconciliation_differences"],
    ),
]
ProgramEventTypes = Annotated[
    list[ProgramEventType],
    msgspec.Meta(
        min_length=1,
        max_length=len(OPERATOR_TOPICS),
        description="The program event types sent to the endpoint; null: every type, those"
        " added later included.",
    ),
]


class ProgramEndpointSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    url: Url
    event_types: ProgramEventTypes | None = None
    description: Description = ""


class ProgramEndpointChange(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The fields to change; those left out stay. Disabling stops its
    deliveries (those due are dead-lettered, to replay); enabling starts
    afresh, its failures forgotten."""

    url: Url | msgspec.UnsetType = msgspec.UNSET
    event_types: ProgramEventTypes | msgspec.UnsetType | None = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    status: (
        Annotated[
            Status, msgspec.Meta(description="Enabled: events are sent to it; disabled: none.")
        ]
        | msgspec.UnsetType
    ) = msgspec.UNSET


class ProgramEndpointView(msgspec.Struct, kw_only=True, frozen=True):
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
    def of(cls, endpoint: WebhookEndpoint) -> ProgramEndpointView:
        return cls(**_view_fields(endpoint))


class CreatedProgramEndpoint(ProgramEndpointView, kw_only=True, frozen=True):
    secret: Annotated[
        str,
        msgspec.Meta(
            description="The signing secret (`whsec_...`, Standard Webhooks): shown on"
            " creation and on rotation only."
        ),
    ]

    @classmethod
    def of_new(cls, endpoint: WebhookEndpoint) -> CreatedProgramEndpoint:
        return cls(**_view_fields(endpoint), secret=endpoint.secret)


def _view_fields(endpoint: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "event_types": endpoint.event_types,
        "description": endpoint.description,
        "status": endpoint.status,
        "failing_since": endpoint.failing_since,
        "disabled_at": endpoint.disabled_at,
        "disabled_reason": endpoint.disabled_reason,
        "previous_secret_expires_at": endpoint.previous_secret_expires_at,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }
