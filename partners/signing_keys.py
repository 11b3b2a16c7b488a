"""The platform's keys that sign partner access tokens: ES256 (P-256), each
named by its ``kid`` (the RFC 7638 thumbprint of its public key).

One key is current: it signs every new token. A rotation makes a new
current key and supersedes the old one, whose private part is erased at
once (nothing signs with it again); its public part stays published (JWKS,
``published_keys``) until every token it signed has expired, then it is
retired: kept for the record, trusted by nobody. The first key is made on
demand, by the first token issued.

At rest a private key is sealed with Fernet (AES-128-CBC with HMAC-SHA256,
``cryptography``) under the installation's signing secret
(``COALITION_SIGNING_SECRET``, never in the database): a copy of the
database alone signs no token. Several secrets may be configured (newest
first) so that the secret itself can be replaced: a key sealed under an
older one is still opened, and the next rotation seals under the newest.

Read and written in SQL (asyncpg), like API keys: the token endpoint and the
partner guard read them outside any ORM session.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from core import audit
from core.errors import DomainError, ErrorKind, Forbidden
from core.principal import Principal
from ledger import new_id
from rewards.connections import Connection

ALGORITHM = "ES256"
#: The longest life a partner token may be given (the setting's bound).
TOKEN_SECONDS_MAX = 3600
#: How long a superseded key stays published: the longest token it can have
#: signed, plus the minute a server may go on signing with it before it
#: hears of the rotation, with room to spare.
PUBLISHED_AFTER_SUPERSEDED = timedelta(seconds=TOKEN_SECONDS_MAX, minutes=5)
#: Key of the advisory lock under which the current key changes (first key
#: made, rotation): two at once would each supersede the other's.
_ROTATION_LOCK = 1886547817


class SigningKeyUnavailable(DomainError):
    """No signing key can be used: the signing secret is not configured, or
    it does not open the current key (the secret was replaced without
    keeping the old one)."""

    type_slug = "signing-key-unavailable"
    kind = ErrorKind.UNAVAILABLE


class KeySealer:
    """Seals private keys under the signing secrets (Fernet keys, newest
    first): seals under the first, opens under any."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one signing secret is needed")
        try:
            self._fernet = MultiFernet([Fernet(secret.strip()) for secret in secrets])
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"a signing secret is not a Fernet key (32 url-safe base64 bytes): {error}"
            ) from None

    @classmethod
    def from_setting(cls, text: str) -> KeySealer:
        """From the setting's text: Fernet keys separated by commas, newest first."""
        return cls([part for part in text.split(",") if part.strip()])

    @staticmethod
    def new_secret() -> str:
        return Fernet.generate_key().decode()

    def seal(self, private_key: ec.EllipticCurvePrivateKey) -> bytes:
        der = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return self._fernet.encrypt(der)

    def open(self, sealed: bytes) -> ec.EllipticCurvePrivateKey:
        try:
            der = self._fernet.decrypt(sealed)
        except InvalidToken:
            raise SigningKeyUnavailable(
                "the signing secret does not open the current signing key; configure the"
                " secret it was sealed with (after the new one), or rotate the key"
            ) from None
        key = serialization.load_der_private_key(der, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key


class Signer(msgspec.Struct, frozen=True):
    """The current key, ready to sign."""

    kid: str
    private_key: ec.EllipticCurvePrivateKey


class PublicKey(msgspec.Struct, frozen=True, kw_only=True):
    """A published key: what a verifier needs, and until when to trust it."""

    kid: str
    #: The JWK of its public part (``kty``, ``crv``, ``x``, ``y``), with
    #: ``kid``, ``alg`` and ``use``.
    jwk: dict[str, Any]
    #: None while it is current.
    retire_at: datetime | None = None


KeyStatus = Literal["current", "published", "retired"]


class SigningKeyView(msgspec.Struct, frozen=True, kw_only=True):
    kid: Annotated[str, msgspec.Meta(description="The key's id, the `kid` of its tokens.")]
    algorithm: Annotated[str, msgspec.Meta(description="Always ES256.")]
    status: Annotated[
        KeyStatus,
        msgspec.Meta(
            description="current: it signs new tokens; published: superseded, its tokens"
            " still verify; retired: trusted no more."
        ),
    ]
    created_at: Annotated[datetime, msgspec.Meta(description="When the key was made.")]
    superseded_at: Annotated[
        datetime | None,
        msgspec.Meta(description="When a newer key took over signing; null while current."),
    ] = None
    retire_at: Annotated[
        datetime | None,
        msgspec.Meta(description="When a superseded key leaves the key set (JWKS)."),
    ] = None


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 of the key's required members, in order, without spaces."""
    required = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).decode().rstrip("=")


def _public_jwk(private_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    jwk: dict[str, Any] = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    public = {name: jwk[name] for name in ("kty", "crv", "x", "y")}
    return {**public, "kid": thumbprint(public), "alg": ALGORITHM, "use": "sig"}


async def published_keys(connection: Connection, *, now: datetime) -> list[PublicKey]:
    """The current key and the superseded ones not yet retired, newest first."""
    rows = await connection.fetch(
        "SELECT kid, public_jwk::text AS jwk, retire_at FROM signing_keys"
        " WHERE superseded_at IS NULL OR retire_at > $1 ORDER BY created_at DESC, kid",
        now,
    )
    return [
        PublicKey(kid=row["kid"], jwk=json.loads(row["jwk"]), retire_at=row["retire_at"])
        for row in rows
    ]


async def current_signer(connection: Connection, sealer: KeySealer, *, now: datetime) -> Signer:
    """The key that signs now, made if there is none yet (the first token)."""
    row = await connection.fetchrow(
        "SELECT kid, private_key_sealed FROM signing_keys WHERE superseded_at IS NULL"
    )
    if row is None:
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _ROTATION_LOCK)
            row = await connection.fetchrow(
                "SELECT kid, private_key_sealed FROM signing_keys WHERE superseded_at IS NULL"
            )
            if row is None:
                return await _new_current(connection, sealer, now)
    return Signer(row["kid"], sealer.open(bytes(row["private_key_sealed"])))


async def _new_current(connection: Connection, sealer: KeySealer, now: datetime) -> Signer:
    private_key = ec.generate_private_key(ec.SECP256R1())
    jwk = _public_jwk(private_key)
    await connection.execute(
        "INSERT INTO signing_keys (id, kid, algorithm, public_jwk, private_key_sealed, created_at)"
        " VALUES ($1, $2, $3, $4::text::jsonb, $5, $6)",
        new_id(),
        jwk["kid"],
        ALGORITHM,
        json.dumps(jwk),
        sealer.seal(private_key),
        now,
    )
    return Signer(jwk["kid"], private_key)


def _require_platform(principal: Principal) -> None:
    if principal.program_id is not None:
        raise Forbidden(
            f"{principal.actor} acts in one program only; signing keys are the platform's"
        )


async def rotate_signing_key(
    connection: Connection, sealer: KeySealer, *, principal: Principal, now: datetime
) -> SigningKeyView:
    """Make a new current key; the one it supersedes loses its private part
    now and stays published until ``PUBLISHED_AFTER_SUPERSEDED`` has passed
    (tokens it signed keep verifying until they expire). Audited."""
    _require_platform(principal)
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _ROTATION_LOCK)
        superseded = await connection.fetchval(
            "UPDATE signing_keys SET superseded_at = $1, retire_at = $2, private_key_sealed = NULL"
            " WHERE superseded_at IS NULL RETURNING kid",
            now,
            now + PUBLISHED_AFTER_SUPERSEDED,
        )
        signer = await _new_current(connection, sealer, now)
        await audit.record_on(
            connection,
            principal,
            "signing-key.rotate",
            f"signing-key:{signer.kid}",
            {"superseded": superseded},
        )
    return SigningKeyView(kid=signer.kid, algorithm=ALGORITHM, status="current", created_at=now)


async def list_signing_keys(
    connection: Connection, *, principal: Principal, now: datetime
) -> list[SigningKeyView]:
    """Every key ever made, newest first: never a private part."""
    _require_platform(principal)
    rows = await connection.fetch(
        "SELECT kid, algorithm, created_at, superseded_at, retire_at FROM signing_keys"
        " ORDER BY created_at DESC, kid"
    )
    return [
        SigningKeyView(
            kid=row["kid"],
            algorithm=row["algorithm"],
            status=_status(row["superseded_at"], row["retire_at"], now),
            created_at=row["created_at"],
            superseded_at=row["superseded_at"],
            retire_at=row["retire_at"],
        )
        for row in rows
    ]


def _status(superseded_at: datetime | None, retire_at: datetime | None, now: datetime) -> KeyStatus:
    if superseded_at is None:
        return "current"
    return "published" if retire_at is not None and retire_at > now else "retired"
