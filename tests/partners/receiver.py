"""A partner's webhook receiver for the tests: a real HTTP/1.1 server on
127.0.0.1 (keep-alive, as the sender's client uses it) answering each
request by the script of its path, and keeping what it received.

An answer is a status (``Answer(200)``), a wait first (``Answer(200,
hold=event)``: until the test sets the event), or a connection closed
without an answer (``Answer(close=True)``). A path's script is played in
order, its last answer repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b"ok"
    hold: asyncio.Event | None = None
    close: bool = False


@dataclass(frozen=True)
class Received:
    #: Order of arrival over the whole server.
    order: int
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    scripts: dict[str, list[Answer]] = field(default_factory=dict)
    #: Set each time a request arrives (cleared by ``arrival``).
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def path(self, script: list[Answer] | None = None) -> str:
        """A path of this test's own (no other test's delivery reaches it)."""
        path = f"/hooks/{uuid.uuid4().hex}"
        self.scripts[path] = script or [Answer()]
        return path

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def until(self, path: str, count: int) -> list[Received]:
        """Wait for ``count`` requests at ``path`` (an ordering, not a timing)."""
        async with asyncio.timeout(30):
            while len(self.at(path)) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.at(path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head.decode("latin-1").split("\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                path = request_line.split(" ")[1]
                self.received.append(Received(next(self._order), path, headers, body))
                self._arrived.set()
                script = self.scripts.get(path, [Answer(404)])
                answer = script.pop(0) if len(script) > 1 else script[0]
                if answer.hold is not None:
                    await answer.hold.wait()
                if answer.close:
                    break
                writer.write(
                    f"HTTP/1.1 {answer.status} X\r\ncontent-length: {len(answer.body)}\r\n"
                    "content-type: text/plain\r\n\r\n".encode()
                    + answer.body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    server = await asyncio.start_server(found._serve, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    async with server:
        yield found
        server.close()
