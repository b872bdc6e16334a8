"""Raw ASGI test app for the image tests (the `base` target).

/            200 "hello from raw"
/id          JSON: uid, gid, pid, python version
/slow?seconds=N   answers after N seconds (default 2)
/dist?name=X      the installed version of distribution X (404 if missing)
/boom        500
"""

import asyncio
import json
import os
import sys
from importlib import metadata
from urllib.parse import parse_qs


def identity():
    return {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(), "python": sys.version.split()[0]}


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
    query = parse_qs(scope["query_string"].decode())
    status, body = 200, b"hello from raw"
    if scope["path"] == "/id":
        body = json.dumps(identity()).encode()
    elif scope["path"] == "/slow":
        await asyncio.sleep(float(query.get("seconds", ["2"])[0]))
        body = b"slow done"
    elif scope["path"] == "/dist":
        try:
            body = metadata.version(query["name"][0]).encode()
        except metadata.PackageNotFoundError:
            status, body = 404, b"not installed"
    elif scope["path"] == "/boom":
        status, body = 500, b"boom"
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
