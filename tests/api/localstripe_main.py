"""localstripe, in memory only, for the tests (``live_server.localstripe``).

localstripe keeps its whole store in one fixed file, ``/tmp/localstripe.pickle``,
loaded at start and pickled again on every write: every localstripe on the
machine shares it, and one killed mid-write leaves a truncated file that
makes every later start fail. Run this way, each process starts empty
(``--from-scratch``) and writes nothing to disk.

    python tests/api/localstripe_main.py --port 8420
"""

from __future__ import annotations

import sys

from localstripe import resources
from localstripe.server import start


def _kept_in_memory(self: resources.Store) -> None:
    return None


if __name__ == "__main__":
    resources.Store.dump_to_disk = _kept_in_memory  # type: ignore[method-assign]
    if "--from-scratch" not in sys.argv:
        sys.argv.append("--from-scratch")
    start()
