"""The benchmark's app: raw ASGI, no framework, so the numbers are the server's and the launcher's.

GET /      -> 200 text/plain "Hello, world!"
GET /json  -> 200 application/json, a small object serialised per request
anything else -> 404
"""

import json

HELLO = b"Hello, world!"
TEXT = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(HELLO)).encode())]


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind != "http":
        return
    path = scope["path"]
    if path == "/":
        status, headers, body = 200, TEXT, HELLO
    elif path == "/json":
        body = json.dumps(
            {"message": "Hello, world!", "method": scope["method"], "path": path, "http": scope["http_version"]}
        ).encode()
        status, headers = 200, [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    else:
        body = b"not found"
        status, headers = 404, [(b"content-type", b"text/plain"), (b"content-length", b"9")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
