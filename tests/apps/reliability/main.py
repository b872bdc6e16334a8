"""Raw ASGI app for the reliability tests: every answer says which worker process gave it.

`/` hello, `/pid` the worker's PID, `/slow?seconds=N` the worker's PID after N seconds (default 1).
"""

import asyncio
import os
from urllib.parse import parse_qs


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
    body = b"hello from the test app"
    if scope["path"] == "/pid":
        body = str(os.getpid()).encode()
    elif scope["path"] == "/slow":
        seconds = float(parse_qs(scope["query_string"].decode()).get("seconds", ["1"])[0])
        await asyncio.sleep(seconds)
        body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
