"""A raw ASGI app that reports its scope: what the server (and the launcher) made of a request.

HTTP, any path: the scope as JSON (type, scheme, client, server, root_path, path,
http_version, the headers of SHOWN_HEADERS) · WebSocket, any path: accepts, sends
the same JSON as its first message, then echoes every message until the client
closes · `create_app()`: a factory without arguments returning this app ·
`make_app(name)`: a factory that needs an argument (the launcher must refuse it).
"""

import json
import os

SHOWN_HEADERS = ("host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")


def describe(scope):
    headers = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        if key in SHOWN_HEADERS:
            headers[key] = value.decode("latin-1")
    return {
        "type": scope["type"],
        "scheme": scope.get("scheme"),
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "root_path": scope.get("root_path", ""),
        "path": scope["path"],
        "http_version": scope.get("http_version"),
        "headers": headers,
        "pid": os.getpid(),
    }


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "http":
        body = json.dumps(describe(scope)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(describe(scope))})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


def create_app():
    return app


def make_app(name):
    return app
