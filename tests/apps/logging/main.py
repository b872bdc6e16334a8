"""Raw ASGI app that logs with the standard library and never configures logging itself.

`/` hello, `/pid` the worker's PID, `/health` for filtering, `/log` logs a line at INFO, `/raise` logs an exception and raises.
"""

import logging
import os

logger = logging.getLogger(__name__)


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
    if scope["path"] == "/log":
        logger.info("app says hello to %s", "the log")
    if scope["path"] == "/raise":
        try:
            raise LookupError("nothing here")
        except LookupError:
            logger.exception("app caught an error")
        raise RuntimeError("unhandled app error")
    body = str(os.getpid()).encode() if scope["path"] == "/pid" else b"ok"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
