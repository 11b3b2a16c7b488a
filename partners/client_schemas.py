"""What the operator sends and reads of partner OAuth clients
(``partners.clients``): bounded as the columns that store it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from core.principal import Reach
from partners.access_models import PartnerClient

#: A client's name: its key in the firm, so that a repeat is refused.
CLIENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$"
#: ``pc_`` and 24 hex digits: public, it names the client in paths and tokens.
CLIENT_ID_PATTERN = r"^pc_[0-9a-f]{24}$"
#: Seconds the previous secret keeps working after a rotation, by default
#: and at most.
OVERLAP_DEFAULT = 24 * 3600
OVERLAP_MAX = 7 * 24 * 3600
#: The scopes a client may list at most (each once).
SCOPES_MAX = 32


class ClientSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: Annotated[
        str,
        msgspec.Meta(
            pattern=CLIENT_NAME_PATTERN,
            description="What the client is (e.g. `pos-cape-town`), unique in the firm: 1 to"
            " 100 letters, digits, spaces, '.', '_' or '-'.",
        ),
    ]
    scopes: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=64)]],
        msgspec.Meta(
            min_length=1,
            max_length=SCOPES_MAX,
            description="What its tokens may do: points:issue, points:redeem,"
            " statements:read, webhooks:manage.",
        ),
    ]
    reach: Annotated[
        Reach,
        msgspec.Meta(
            description="Whose data its tokens reach: the firm alone (company), the firm and"
            " its member companies (subsidiaries), or its whole group (group)."
        ),
    ] = Reach.COMPANY


class SecretRotation(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    overlap_seconds: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            le=OVERLAP_MAX,
            description="How long the current secret keeps working beside the new one"
            f" (default {OVERLAP_DEFAULT // 3600} h, at most {OVERLAP_MAX // 86400} days; 0:"
            " it stops now). A secret older than the current one stops now.",
        ),
    ] = OVERLAP_DEFAULT


class IssuedClient(msgspec.Struct, kw_only=True, frozen=True):
    client_id: Annotated[str, msgspec.Meta(description="Public: the `client_id` of the client.")]
    client_secret: Annotated[
        str,
        msgspec.Meta(description="Shown this once; stored only as an Argon2id hash."),
    ]
    name: Annotated[str, msgspec.Meta(description="The client's name in the firm.")]
    scopes: Annotated[list[str], msgspec.Meta(description="What its tokens may do.")]
    reach: Annotated[Reach, msgspec.Meta(description="Whose data its tokens reach.")]
    created_at: Annotated[datetime, msgspec.Meta(description="When it was made.")]


class IssuedSecret(msgspec.Struct, kw_only=True, frozen=True):
    client_id: Annotated[str, msgspec.Meta(description="The client whose secret changed.")]
    client_secret: Annotated[
        str, msgspec.Meta(description="The new secret: shown this once, stored only hashed.")
    ]
    rotated_at: Annotated[datetime, msgspec.Meta(description="When the new secret began.")]
    previous_valid_until: Annotated[
        datetime | None,
        msgspec.Meta(description="Until when the secret before works too; null: no longer."),
    ] = None


class ClientView(msgspec.Struct, kw_only=True, frozen=True):
    """A client as listed: never a secret."""

    client_id: Annotated[str, msgspec.Meta(description="Public: the client's `client_id`.")]
    name: Annotated[str, msgspec.Meta(description="The client's name in the firm.")]
    scopes: Annotated[list[str], msgspec.Meta(description="What its tokens may do.")]
    reach: Annotated[Reach, msgspec.Meta(description="Whose data its tokens reach.")]
    status: Annotated[
        Literal["active", "revoked"],
        msgspec.Meta(description="active: it gets tokens (while its firm is active)."),
    ]
    created_at: Annotated[datetime, msgspec.Meta(description="When it was made.")]
    secret_rotated_at: Annotated[
        datetime | None, msgspec.Meta(description="When its secret was last rotated.")
    ] = None
    previous_valid_until: Annotated[
        datetime | None,
        msgspec.Meta(description="Until when the previous secret works, during a rotation."),
    ] = None
    revoked_at: Annotated[
        datetime | None, msgspec.Meta(description="When it was revoked; null while active.")
    ] = None

    @classmethod
    def of(cls, client: PartnerClient) -> ClientView:
        return cls(
            client_id=client.client_id,
            name=client.name,
            scopes=list(client.scopes),
            reach=Reach(client.reach),
            status="revoked" if client.revoked_at else "active",
            created_at=client.created_at,
            secret_rotated_at=client.secret_rotated_at,
            previous_valid_until=client.previous_valid_until,
            revoked_at=client.revoked_at,
        )
