"""The bundled example: a raw ASGI app (no framework) with a page, a JSON endpoint and a health check."""

import json
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
    path = scope["path"]
    if path == "/json":
        status, content_type = 200, b"application/json"
        body = json.dumps({"message": "hello", "pid": os.getpid()}).encode()
    elif path == "/health":
        status, content_type, body = 200, b"text/plain", b"ok"
    elif path == "/":
        status, content_type = 200, b"text/plain"
        body = f"Hello from asgi-start (worker pid {os.getpid()})\n".encode()
    else:
        status, content_type, body = 404, b"text/plain", b"not found\n"
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
    await send({"type": "http.response.body", "body": body})
