"""A raw ASGI app that says where it was imported: PRELOAD_APP's tests read it.

At import it appends its PID to the file named by IMPORTED_BY (one line per import), so a test sees
whether the Gunicorn master imported it once or each worker did. `/pid` the worker's PID ·
`/frozen` gc.get_freeze_count() in the worker (inherited from the master's gc.freeze()) · else hello.
"""

import gc
import os

with open(os.environ["IMPORTED_BY"], "a") as _file:
    _file.write(f"{os.getpid()}\n")


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
    body = b"hello from the preload app"
    if scope["path"] == "/pid":
        body = str(os.getpid()).encode()
    elif scope["path"] == "/frozen":
        body = str(gc.get_freeze_count()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
