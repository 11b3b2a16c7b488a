"""Private set intersection, counts only, with OpenMined's ``openmined-psi``
(ECDH over P-256 with a Golomb-compressed set): the engine of PSI overlap
matching (docs/overlap-matching.md, "PSI").

The protocol, between the partner holding the *server* list and the one
holding the *client* list:

1. The server encrypts its items under its secret key and sends a setup
   message (a compressed set of the encrypted items). It does not depend on
   the client's items, so it is made once per list and key epoch and cached
   (about a third of the cost of a run).
2. The client encrypts its items under its own secret key: the request.
3. The server encrypts the request's points again under its key, shuffled:
   the response.
4. The client removes its key from the response and counts how many of the
   doubly encrypted points are in the setup message's set: the size of the
   intersection, and nothing else (``reveal_intersection=False``: not which
   items).

Whoever relays the messages sees only encrypted points and the set, and
learns nothing about the items without one of the two keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import private_set_intersection.python as psi

#: The client list size the setup message is sized for: a setup serves every
#: client list up to it, so that it is cached per list and epoch, not per
#: client size (the set costs a few more bits per item).
MAX_CLIENT_ITEMS = 10_000_000
#: The probability that a run over MAX_CLIENT_ITEMS counts one false match.
FALSE_POSITIVE_RATE = 1e-9
#: The smallest server list set as a Golomb-compressed set.
GCS_MIN_ITEMS = 1000


def new_key() -> bytes:
    """A fresh secret key of one side (32 bytes)."""
    return bytes(psi.server.CreateWithNewKey(False).GetPrivateKeyBytes())


def server_setup(server_key: bytes, items: list[str]) -> bytes:
    """Step 1: the server's setup message, serialised."""
    server = psi.server.CreateFromKey(server_key, False)
    # The Golomb-compressed set is the smaller; the package fails to build
    # one for a few hundred items or fewer (seen with 2.0.6), where a Bloom
    # filter's size does not matter.
    structure = (
        psi.DataStructure.GCS if len(items) >= GCS_MIN_ITEMS else psi.DataStructure.BLOOM_FILTER
    )
    setup = server.CreateSetupMessage(FALSE_POSITIVE_RATE, MAX_CLIENT_ITEMS, items, structure)
    return bytes(setup.SerializeToString())


def client_request(client_key: bytes, items: list[str]) -> bytes:
    """Step 2: the client's request, serialised."""
    client = psi.client.CreateFromKey(client_key, False)
    return bytes(client.CreateRequest(items).SerializeToString())


def server_response(server_key: bytes, request: bytes) -> bytes:
    """Step 3: the server's response to a request, serialised."""
    parsed = psi.Request()
    parsed.ParseFromString(request)
    server = psi.server.CreateFromKey(server_key, False)
    return bytes(server.ProcessRequest(parsed).SerializeToString())


def intersection_size(client_key: bytes, setup: bytes, response: bytes) -> int:
    """Step 4: the client's count of the intersection."""
    parsed_setup = psi.ServerSetup()
    parsed_setup.ParseFromString(setup)
    parsed_response = psi.Response()
    parsed_response.ParseFromString(response)
    client = psi.client.CreateFromKey(client_key, False)
    return int(client.GetIntersectionSize(parsed_setup, parsed_response))


@dataclass(frozen=True, slots=True)
class PsiRun:
    count: int
    #: Whether the setup message came from the cache (step 1 skipped).
    setup_cached: bool
    setup: bytes


def count_intersection(
    server_key: bytes,
    server_items: list[str],
    client_items: list[str],
    *,
    cached_setup: bytes | None = None,
    client_key: bytes | None = None,
) -> PsiRun:
    """All four steps in one process, for the platform acting for both sides
    (tests, the on-behalf mode) and the bench."""
    setup = cached_setup if cached_setup is not None else server_setup(server_key, server_items)
    key = client_key if client_key is not None else new_key()
    request = client_request(key, client_items)
    response = server_response(server_key, request)
    return PsiRun(
        count=intersection_size(key, setup, response),
        setup_cached=cached_setup is not None,
        setup=setup,
    )
