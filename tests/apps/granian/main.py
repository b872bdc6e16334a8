"""A raw ASGI app for the SERVER=granian end-to-end tests (tests/e2e/test_granian.py).

`/loop` the running event loop's type (`module.QualName`) · `/version` the VERSION below (the reload
test rewrites it) · `/pid` the worker's PID · `/slow?seconds=N&mark=NAME` the worker's PID after
N seconds (with `mark`, first creates the file NAME in the working directory: the request is in the app)
· anything else: hello
"""

import asyncio
import os
from urllib.parse import parse_qs

VERSION = "one"


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
    body = "hello from the granian test app"
    if path == "/loop":
        loop_type = type(asyncio.get_running_loop())
        body = f"{loop_type.__module__}.{loop_type.__qualname__}"
    elif path == "/version":
        body = VERSION
    elif path == "/pid":
        body = str(os.getpid())
    elif path == "/slow":
        query = parse_qs(scope["query_string"].decode())
        if "mark" in query:
            with open(os.path.basename(query["mark"][0]), "w"):
                pass
        await asyncio.sleep(float(query.get("seconds", ["1"])[0]))
        body = str(os.getpid())
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body.encode()})
