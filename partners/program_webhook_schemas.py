"""What a program's operator sends and reads of the program's own webhook
endpoints: bounded as the columns that store them (those of the partners'
endpoints, ``partners.webhook_schemas``), with the program's event types."""

from __future__ import annotations

from typing import Annotated

import msgspec

from partners.program_webhook_events import OPERATOR_TOPICS
from partners.webhook_schemas import Description, EndpointFields, Status, Url

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


class ProgramEndpointView(EndpointFields, kw_only=True, frozen=True):
    """A program's own endpoint (no partner)."""


class CreatedProgramEndpoint(ProgramEndpointView, kw_only=True, frozen=True):
    secret: Annotated[
        str,
        msgspec.Meta(
            description="The signing secret (`whsec_...`, Standard Webhooks): shown on"
            " creation and on rotation only."
        ),
    ]
