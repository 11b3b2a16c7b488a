"""A partner's webhook receiver for ``bench/partners.py``, in a process of its
own: aiohttp on 127.0.0.1, answering 200 at once, remembering when each
delivery arrived, and checking the Standard Webhooks signature of one in
``--verify-every`` with the endpoint's secret, as a partner would.

    python bench/webhook_receiver.py PORT LOG SECRETS_JSON [--verify-every 20]

Prints ``ready`` once listening. On SIGTERM writes ``LOG``: a line
``<n> <unix time received> <webhook-id>`` per delivery (``n`` is the bench
event's number, from the body), then ``# verified <k> failed <f>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from pathlib import Path

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

Received = list[tuple[bytes, float, str]]


async def serve(
    port: int, verifiers: dict[str, Webhook], every: int
) -> tuple[Received, dict[str, int]]:
    received: Received = []
    checks = {"verified": 0, "failed": 0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        at = time.time()
        received.append((body, at, request.headers.get("webhook-id", "")))
        if len(received) % every == 0:
            try:
                verifiers[request.path].verify(body, dict(request.headers))
                checks["verified"] += 1
            except (WebhookVerificationError, KeyError, ValueError):
                checks["failed"] += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook/{n}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()
    return received, checks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("log")
    parser.add_argument("secrets", help="a JSON file: endpoint path -> its secret")
    parser.add_argument("--verify-every", type=int, default=20)
    args = parser.parse_args()
    secrets = json.loads(Path(args.secrets).read_text())
    verifiers = {path: Webhook(secret) for path, secret in secrets.items()}
    received, checks = asyncio.run(serve(args.port, verifiers, args.verify_every))
    with open(args.log, "w") as out:
        for body, at, msg_id in received:
            n = json.loads(body)["data"].get("n")
            out.write(f"{n} {at} {msg_id}\n")
        out.write(f"# verified {checks['verified']} failed {checks['failed']}\n")


if __name__ == "__main__":
    main()
