"""The raw ASGI app every end-to-end test serves. It never configures logging itself.

`/` hello · `/pid` the worker's PID · `/slow?seconds=N` the worker's PID after N seconds (default 1)
· `/grow?mb=N` holds N MiB more (resident), answers the worker's PID · `/boom` a 500 · `/log` logs a line at INFO · `/raise` logs an exception, then raises one · anything else: hello
"""

import asyncio
import logging
import os
from urllib.parse import parse_qs

logger = logging.getLogger(__name__)
held: list[bytes] = []  # what /grow holds on to


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    status, body = 200, b"hello from the test app"
    if path == "/pid":
        body = str(os.getpid()).encode()
    elif path == "/slow":
        await asyncio.sleep(float(parse_qs(scope["query_string"].decode()).get("seconds", ["1"])[0]))
        body = str(os.getpid()).encode()
    elif path == "/grow":
        held.append(b"x" * (int(parse_qs(scope["query_string"].decode()).get("mb", ["1"])[0]) << 20))
        body = str(os.getpid()).encode()
    elif path == "/boom":
        status, body = 500, b"boom"
    elif path == "/log":
        logger.info("app says hello to %s", "the log")
    elif path == "/raise":
        try:
            raise LookupError("nothing here")
        except LookupError:
            logger.exception("app caught an error")
        raise RuntimeError("unhandled app error")
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
