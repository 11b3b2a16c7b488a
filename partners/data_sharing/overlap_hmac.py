"""Keyed hashes of identifiers (HMAC-SHA256) and the join of two hashed
lists: the engine of keyed-hash overlap matching (docs/overlap-matching.md).

A bare hash of an e-mail address falls to a dictionary attack (hash every
address of a leaked list and compare); a keyed hash with a secret key per
agreement and epoch does not, for anyone without the key, and two
agreements' hashes of the same person cannot be linked. Rotation is a new
epoch with a new key: earlier uploads stop matching new ones.

A hashed list is the concatenation of its 32-byte digests in the order of
the uploaded records (a record's position is its reference); an identifier
that did not normalise is ``UNMATCHABLE`` (32 zero bytes, which no HMAC
output is in practice) so that positions stay aligned and it matches
nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

DIGEST_SIZE = 32
KEY_SIZE = 32
UNMATCHABLE = bytes(DIGEST_SIZE)


def new_key() -> bytes:
    """A fresh secret key for an agreement's epoch."""
    return secrets.token_bytes(KEY_SIZE)


def keyed_digests(key: bytes, identifiers: Iterable[str | None]) -> bytes:
    """The HMAC-SHA256 of each normalised identifier, concatenated.

    The keyed state (the key's inner and outer pads) is computed once and
    copied per identifier: measured on the 2-core VM at ~1.9 us per
    identifier against ~2.2 us for ``hmac.digest`` per call."""
    if len(key) != KEY_SIZE:
        raise ValueError("an overlap key is 32 bytes")
    keyed = hmac.new(key, digestmod=hashlib.sha256)
    out = bytearray()
    for identifier in identifiers:
        if identifier is None:
            out += UNMATCHABLE
            continue
        h = keyed.copy()
        h.update(identifier.encode())
        out += h.digest()
    return bytes(out)


def split_digests(blob: bytes) -> list[bytes]:
    if len(blob) % DIGEST_SIZE:
        raise ValueError("a hashed list is a whole number of 32-byte digests")
    return [blob[i : i + DIGEST_SIZE] for i in range(0, len(blob), DIGEST_SIZE)]


@dataclass(frozen=True, slots=True)
class ListMatch:
    """The overlap of two hashed lists.

    ``count`` is the number of distinct identifiers in both (a set
    intersection; duplicates within a list count once). ``left`` and
    ``right`` are, per distinct matched identifier, its first position in
    each list, in the left list's order."""

    count: int
    left: list[int]
    right: list[int]


def match_lists(left: bytes, right: bytes) -> ListMatch:
    """The set intersection of two hashed lists (a hash join in memory: the
    first position of each digest of the right list, probed by the left)."""
    first_right: dict[bytes, int] = {}
    for position, digest in enumerate(split_digests(right)):
        first_right.setdefault(digest, position)
    first_right.pop(UNMATCHABLE, None)
    seen: set[bytes] = set()
    left_positions: list[int] = []
    right_positions: list[int] = []
    for position, digest in enumerate(split_digests(left)):
        other = first_right.get(digest)
        if other is None or digest in seen:
            continue
        seen.add(digest)
        left_positions.append(position)
        right_positions.append(other)
    return ListMatch(count=len(left_positions), left=left_positions, right=right_positions)
