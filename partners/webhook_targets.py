"""Where the platform may send webhooks: a partner names a URL, and the
worker calls it from inside the platform's network, so a URL is a way to
reach what only the platform can reach (server-side request forgery).

By default an endpoint's URL is ``https`` to a public address: no address
of loopback, private, link-local (cloud metadata at 169.254.169.254),
shared, multicast or reserved ranges, no ``localhost``, no user or password
in the URL. The host is checked when the endpoint is saved (a literal
address, a name that is local by its form) and again when sending, after
resolving it (a name that resolved to a public address on saving may
resolve elsewhere later); redirects are never followed.

``TargetPolicy(private=True)`` (the setting ``WEBHOOK_PRIVATE_TARGETS``)
lifts the rules, plain ``http`` included: for development, tests and
receivers on the operator's own network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

import msgspec

from core.errors import DomainError


class TargetPolicy(msgspec.Struct, frozen=True, kw_only=True):
    #: Whether plain http and non-public addresses are allowed.
    private: bool = False


class WebhookUrlRefused(DomainError):
    """The endpoint's URL is not one the platform sends to."""

    type_slug = "webhook-url-refused"


#: The policy of this process's sending job, set at its start from the
#: settings (``configure``): the job's context carries no settings.
_policy = TargetPolicy()


def configure(policy: TargetPolicy) -> None:
    global _policy
    _policy = policy


def current_policy() -> TargetPolicy:
    return _policy


_LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal", ".localdomain")


def check_url(url: str, policy: TargetPolicy) -> str:
    """The URL as stored, or ``WebhookUrlRefused`` saying why."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise WebhookUrlRefused(f"url: not a URL ({error})") from None
    schemes = ("https", "http") if policy.private else ("https",)
    if parts.scheme not in schemes:
        raise WebhookUrlRefused(f"url: the scheme must be {' or '.join(schemes)}")
    if not parts.hostname:
        raise WebhookUrlRefused("url: a host is needed")
    if parts.username is not None or parts.password is not None:
        raise WebhookUrlRefused("url: no user or password in the URL")
    if parts.fragment:
        raise WebhookUrlRefused("url: no fragment (#...)")
    if port == 0:
        raise WebhookUrlRefused("url: port 0")
    if not policy.private:
        refused = _refused_host(parts)
        if refused:
            raise WebhookUrlRefused(f"url: {refused}")
    return url


def _refused_host(parts: SplitResult) -> str | None:
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(_LOCAL_NAMES):
        return f"{host} is a local name; the platform sends to public addresses only"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        # A name: checked again at each send, once resolved.
        return None
    if not is_public(address):
        return f"{host} is not a public address; the platform sends to public addresses only"
    return None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def refused_target(url: str, policy: TargetPolicy) -> str | None:
    """Why the worker must not call ``url`` now (None: it may): its host
    resolves to an address that is not public."""
    if policy.private:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if refused := _refused_host(parts):
        return refused
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            host, parts.port or 443, type=socket.SOCK_STREAM
        )
    except OSError as error:
        return f"{host} does not resolve ({error})"
    for *_, address in found:
        # An IPv6 link-local answer names its interface: fe80::1%eth0.
        if not is_public(ipaddress.ip_address(str(address[0]).split("%")[0])):
            return f"{host} resolves to {address[0]}, not a public address"
    return None
