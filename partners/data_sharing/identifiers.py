"""Identifiers normalised before they are hashed, so that two partners'
spellings of the same e-mail address, phone number or company domain give
the same keyed hash (docs/overlap-matching.md, "Normalisation").

Each normaliser answers the canonical text, or ``None`` for a value that is
not an identifier of its kind (it then matches nothing, rather than a wrong
record). The rules are conservative: a transformation that could merge two
different people is not applied.

- E-mail: trimmed, lower-cased (the local part too: no provider in practice
  treats case as significant), the domain in IDNA (punycode) form. Gmail's
  dots and ``+tags`` are kept: removing them is right for gmail.com only,
  the partners may record the address as typed, and an address with a tag
  is often the member's deliberate choice; a missed match is cheaper than a
  wrong one.
- Phone: E.164 (``+27821234567``) through ``phonenumbers`` (Google's
  libphonenumber), a number without a country code read in the list's
  default region; a number that is not valid for its region is refused.
- Company domain: scheme, ``user@``, port, path, query, a trailing dot and
  a leading ``www.`` stripped, lower-cased, IDNA (UTS 46) form.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable

import idna
import phonenumbers


class IdentifierKind(enum.StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    DOMAIN = "domain"


#: The longest identifier accepted (an e-mail address is at most 254).
MAX_IDENTIFIER_LENGTH = 320


@functools.lru_cache(maxsize=65_536)
def _ascii_domain(domain: str) -> str | None:
    # Cached: a list's addresses share few domains, and IDNA is the slow part.
    domain = domain.strip().rstrip(".").lower()
    if not domain or len(domain) > 253:
        return None
    try:
        encoded = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None
    return encoded if "." in encoded else None


def normalise_email(raw: str) -> str | None:
    # Written for speed (millions of calls a list): C string methods only,
    # the domain's IDNA form from a cache.
    text = raw.strip().lower()
    if len(text) > MAX_IDENTIFIER_LENGTH or text.count("@") != 1:
        return None
    local, _, domain = text.partition("@")
    if not local or " " in text or not text.isprintable():
        return None
    ascii_domain = _ascii_domain(domain)
    return f"{local}@{ascii_domain}" if ascii_domain else None


def normalise_phone(raw: str, default_region: str | None = None) -> str | None:
    text = raw.strip()
    if not text or len(text) > 64:
        return None
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_domain(raw: str) -> str | None:
    text = raw.strip()
    if not text or len(text) > MAX_IDENTIFIER_LENGTH:
        return None
    lowered = text.lower()
    for scheme in ("https://", "http://", "//"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    for separator in ("/", "?", "#"):
        text = text.split(separator, 1)[0]
    text = text.rsplit("@", 1)[-1]  # user@host
    if text.count(":") == 1:
        text = text.split(":", 1)[0]  # a port
    ascii_domain = _ascii_domain(text)
    if ascii_domain and ascii_domain.startswith("www.") and ascii_domain.count(".") >= 2:
        ascii_domain = ascii_domain[4:]
    return ascii_domain


def normaliser(
    kind: IdentifierKind, default_region: str | None = None
) -> Callable[[str], str | None]:
    """The normaliser of one kind of identifier (phones read in ``default_region``)."""
    if kind is IdentifierKind.EMAIL:
        return normalise_email
    if kind is IdentifierKind.PHONE:
        return lambda raw: normalise_phone(raw, default_region)
    return normalise_domain
