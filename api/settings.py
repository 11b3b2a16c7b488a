"""Settings from environment variables, validated once at start-up."""

from __future__ import annotations

import fcntl
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from cryptography.fernet import Fernet

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
BROKER_SCHEMES = r"^(redis|rediss|amqp|amqps|pyamqp|filesystem)://"

#: Environment variable -> settings field.
ENVIRONMENT: dict[str, str] = {
    "DATABASE_URL": "database_url",
    "BROKER_URL": "broker_url",
    "REDIS_URL": "redis_url",
    "COALITION_DATA_DIR": "data_dir",
    "COALITION_HOST": "host",
    "COALITION_PORT": "port",
    "COALITION_WORKERS": "workers",
    "COALITION_ADMIN_TOKEN": "admin_token",
    "COALITION_LOG_LEVEL": "log_level",
    "COALITION_DB_POOL_SIZE": "db_pool_size",
    "COALITION_LEDGER_POOL_SIZE": "ledger_pool_size",
    "COALITION_DB_COMMAND_TIMEOUT": "db_command_timeout",
    "COALITION_DB_CONNECT_TIMEOUT": "db_connect_timeout",
    "COALITION_SWEEP_INTERVAL": "sweep_interval",
    "MEMBER_JWT_SECRET": "member_jwt_secret",
    "MEMBER_JWT_JWKS": "member_jwt_jwks",
    "MEMBER_JWT_AUDIENCE": "member_jwt_audience",
    "MEMBER_JWT_ISSUER": "member_jwt_issuer",
    "COALITION_MEMBER_RATE_LIMIT": "member_rate_limit",
    "STRIPE_API_KEY": "stripe_api_key",
    "STRIPE_WEBHOOK_SECRET": "stripe_webhook_secret",
    "STRIPE_API_BASE": "stripe_api_base",
    "COALITION_SIGNING_SECRET": "signing_secret",
    "COALITION_PARTNER_TOKEN_SECONDS": "partner_token_seconds",
    "COALITION_PARTNER_TOKEN_ISSUER": "partner_token_issuer",
    "COALITION_PARTNER_RATE_LIMIT": "partner_rate_limit",
    "COALITION_TOKEN_RATE_LIMIT": "token_rate_limit",
    "WEBHOOK_PRIVATE_TARGETS": "webhook_private_targets",
    "WEBHOOK_TIMEOUT_SECONDS": "webhook_timeout_seconds",
}


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: PostgreSQL URL; without it an embedded PostgreSQL runs in ``data_dir``.
    database_url: Annotated[str, msgspec.Meta(pattern=r"^postgres(ql)?://")] | None = None
    #: Celery broker (redis://, amqp://); without it a folder under ``data_dir``.
    broker_url: Annotated[str, msgspec.Meta(pattern=BROKER_SCHEMES)] | None = None
    data_dir: Annotated[str, msgspec.Meta(min_length=1)] = ".coalition"
    host: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
    port: Port = 8000
    workers: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    #: Bearer token of the operator API; without it ``serve`` uses the one it
    #: keeps in ``data_dir`` (see ``with_kept_secrets``).
    admin_token: Annotated[str, msgspec.Meta(min_length=16)] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: Connections of the app's own pools, per process: the asyncpg pool
    #: (API keys, programs, purchase intake, member balance reads) and the
    #: ORM's (as many again may overflow it).
    db_pool_size: Annotated[int, msgspec.Meta(ge=2, le=200)] = 8
    #: Connections of the ledger's pool, per process: its writer (two batches
    #: in flight) and its reads. Apart from the app's, so neither waits for
    #: the other's connections.
    ledger_pool_size: Annotated[int, msgspec.Meta(ge=2, le=200)] = 4
    #: Seconds a request's statement may run before it is cancelled and the
    #: request answered 503: a frozen database answers fast, never hangs.
    db_command_timeout: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 10.0
    #: Seconds to open a database connection before giving up (503).
    db_connect_timeout: Annotated[float, msgspec.Meta(gt=0, le=600)] = 5.0
    #: Seconds between sweeps voiding timed-out pending transfers (0: none).
    sweep_interval: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 5.0
    #: HS256 key of member tokens (development); production uses a JWKS.
    #: Without either, ``serve`` uses the one it keeps in ``data_dir``.
    member_jwt_secret: Annotated[str, msgspec.Meta(min_length=32)] | None = None
    #: JSON Web Key Set (the JSON text) of the identity provider (RS256, ES256).
    member_jwt_jwks: Annotated[str, msgspec.Meta(min_length=2)] | None = None
    member_jwt_audience: Annotated[str, msgspec.Meta(min_length=1)] = "coalition-members"
    member_jwt_issuer: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    #: Requests per minute a member may make to the member API.
    member_rate_limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 600
    #: Redis (redis://, rediss://, unix://) holding the member rate limits, so
    #: that every worker and process shares one count; without it each
    #: process counts on its own (right for a single process).
    redis_url: Annotated[str, msgspec.Meta(pattern=r"^(redis|rediss|unix)://")] | None = None
    #: Stripe secret key (sk_test_... or sk_live_...); without it, no payments.
    stripe_api_key: Annotated[str, msgspec.Meta(pattern=r"^(sk|rk)_")] | None = None
    #: Signing secret of the webhook endpoint (whsec_...).
    stripe_webhook_secret: Annotated[str, msgspec.Meta(min_length=8)] | None = None
    #: Another Stripe API address (localstripe in tests).
    stripe_api_base: Annotated[str, msgspec.Meta(pattern=r"^https?://")] | None = None
    #: Fernet keys (comma-separated, newest first) sealing the private parts
    #: of the partner tokens' signing keys in the database
    #: (``partners.signing_keys``); without it ``serve`` uses the one it keeps
    #: in ``data_dir``, and a server without one issues no partner token.
    signing_secret: Annotated[str, msgspec.Meta(min_length=44)] | None = None
    #: Seconds a partner access token is valid.
    partner_token_seconds: Annotated[int, msgspec.Meta(ge=60, le=3600)] = 600
    #: The ``iss`` of partner access tokens (the installation's public address, say).
    partner_token_issuer: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "coalition"
    #: Requests per minute each partner firm may make to the partner API.
    partner_rate_limit: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 6000
    #: Token requests per minute per client at ``/oauth/token`` (each costs
    #: an Argon2id check).
    token_rate_limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 30
    #: Whether partners' webhook endpoints may be plain http and private or
    #: loopback addresses (development, tests, an operator's own network);
    #: off, only https to public addresses (``partners.webhook_targets``).
    webhook_private_targets: bool = False
    #: Seconds a partner's endpoint has to answer a webhook attempt; a
    #: delivery being sent is leased for four times as long, after which a
    #: worker that died mid-call has it sent again (``partners.webhook_sending``).
    webhook_timeout_seconds: Annotated[float, msgspec.Meta(ge=1, le=60)] = 15.0


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


#: Where ``serve`` keeps the secrets it made up, in the data directory.
KEPT_SECRETS_FILE = "secrets.json"


class KeptSecrets(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The development secrets made once per data directory, so that tokens
    printed by one start keep working after a restart."""

    admin_token: Annotated[str, msgspec.Meta(min_length=16)]
    member_jwt_secret: Annotated[str, msgspec.Meta(min_length=32)]
    #: Kept since partner tokens: a folder made before gets one on its next start.
    signing_secret: Annotated[str, msgspec.Meta(min_length=44)] | None = None


def kept_secrets(data_dir: str | Path) -> KeptSecrets:
    """The data directory's secrets, made (readable by the owner only) on first use."""
    path = Path(data_dir) / KEPT_SECRETS_FILE
    if path.exists():
        kept = _read_secrets(path)
        return kept if kept.signing_secret else _add_signing_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    made = KeptSecrets(
        admin_token=secrets.token_urlsafe(24),
        member_jwt_secret=secrets.token_urlsafe(32),
        signing_secret=Fernet.generate_key().decode(),
    )
    # mkstemp makes the file 0600; written aside and linked into place, so
    # that two starts at once agree on one file and no reader sees half of it.
    handle, aside = tempfile.mkstemp(dir=path.parent, prefix=".secrets-")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(msgspec.json.encode(made))
        try:
            os.link(aside, path)
        except FileExistsError:
            return _read_secrets(path)
    finally:
        os.unlink(aside)
    return made


def _add_signing_secret(path: Path) -> KeptSecrets:
    """The kept secrets of a folder made before signing secrets were kept,
    with one added: under a lock, so that two starts at once keep the same
    one (a second secret would leave the first's sealed keys unreadable)."""
    with (path.parent / ".secrets.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        kept = _read_secrets(path)
        if kept.signing_secret:
            return kept
        kept = msgspec.structs.replace(kept, signing_secret=Fernet.generate_key().decode())
        handle, aside = tempfile.mkstemp(dir=path.parent, prefix=".secrets-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(msgspec.json.encode(kept))
            os.replace(aside, path)
        except BaseException:
            os.unlink(aside)
            raise
        return kept


def _read_secrets(path: Path) -> KeptSecrets:
    try:
        return msgspec.json.decode(path.read_bytes(), type=KeptSecrets)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise SettingsError(f"{path}: {error} (remove the file to make new secrets)") from None


def with_kept_secrets(settings: Settings) -> Settings:
    """``settings`` with an unset admin token, signing secret and, without
    an identity provider, member secret taken from the data directory's kept
    secrets. The environment always wins: with all set, nothing is made."""
    needs_admin = settings.admin_token is None
    needs_member = settings.member_jwt_secret is None and settings.member_jwt_jwks is None
    needs_signing = settings.signing_secret is None
    if not (needs_admin or needs_member or needs_signing):
        return settings
    kept = kept_secrets(settings.data_dir)
    return msgspec.structs.replace(
        settings,
        admin_token=kept.admin_token if needs_admin else settings.admin_token,
        member_jwt_secret=kept.member_jwt_secret if needs_member else settings.member_jwt_secret,
        signing_secret=kept.signing_secret if needs_signing else settings.signing_secret,
    )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    raw = {field: environ[name] for name, field in ENVIRONMENT.items() if environ.get(name)}
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as error:
        raise SettingsError(_explain(str(error))) from None


def _explain(message: str) -> str:
    # msgspec says "Expected `int` >= 1 - at `$.port`"; name the variable instead.
    text, _, path = message.rpartition(" - at `$.")
    field = path.rstrip("`")
    names = {v: k for k, v in ENVIRONMENT.items()}
    if field in names:
        return f"{names[field]}: {text[0].lower()}{text[1:]}"
    return message
