"""A webhook receiver process for the subscription tests (`python -m tests.webhook_receiver PORT FILE`): answers
every POST 200 and appends one JSON line per delivery to FILE: arrival time, headers and the exact body."""

from __future__ import annotations

import sys
import time

import orjson
from aiohttp import web


def main() -> None:
    port, path = int(sys.argv[1]), sys.argv[2]
    out = open(path, "ab", buffering=0)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        line = {
            "t": time.time(),
            "path": request.path,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body.decode(),
        }
        out.write(orjson.dumps(line) + b"\n")
        return web.Response(status=200)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/{tail:.*}", hook)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
