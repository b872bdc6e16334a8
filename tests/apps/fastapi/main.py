"""A FastAPI app (a test dependency, never the launcher's): `app`, and the factory `create_app()`.

`/scope` what the request's scope says (root_path, client, scheme, path, HTTP
version) and the URL FastAPI builds for a route, which carries root_path ·
`/go` a redirect to `/scope` built with `url_for` · `POST /echo` the request
body sent back · `/sleep?seconds=S` answers after S seconds
(`/sleeping`: how many are in it) ·
`/barrier?n=N` answers once N requests are inside this endpoint of this worker
at once (or after 10 s, with `met` false): only requests served concurrently
can all meet · WebSocket `/ws` sends its scope, then echoes every message ·
FastAPI's own `/docs` and `/openapi.json`.
"""

import asyncio
import os

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import RedirectResponse, Response


def describe(request: Request) -> dict:
    return {
        "framework": "fastapi",
        "root_path": request.scope.get("root_path", ""),
        "client": list(request.scope["client"]) if request.scope.get("client") else None,
        "scheme": request.scope["scheme"],
        "path": request.scope["path"],
        "http_version": request.scope.get("http_version"),
        "pid": os.getpid(),
    }


def create_app() -> FastAPI:
    api = FastAPI()
    inside: list[asyncio.Future] = []  # the requests waiting at the barrier
    sleeping: list[float] = []  # the requests in /sleep

    @api.get("/scope")
    def scope(request: Request) -> dict:
        return {**describe(request), "url_for": str(request.url_for("scope"))}

    @api.get("/go")
    def go(request: Request) -> RedirectResponse:
        return RedirectResponse(request.url_for("scope"), status_code=307)

    @api.post("/echo")
    async def echo(request: Request) -> Response:
        # read whole, then sent: a client that does not read while it sends (curl) would meet a response
        # streamed back meanwhile with a full flow-control window, and both would wait for good
        return Response(await request.body(), media_type="application/octet-stream")

    @api.get("/sleep")
    async def sleep(request: Request, seconds: float = 1.0) -> dict:
        sleeping.append(seconds)
        try:
            await asyncio.sleep(seconds)
        finally:
            sleeping.remove(seconds)
        return {**describe(request), "slept": seconds}

    @api.get("/sleeping")
    def count_sleeping() -> int:
        return len(sleeping)

    @api.get("/barrier")
    async def barrier(request: Request, n: int) -> dict:
        arrived = asyncio.get_running_loop().create_future()
        inside.append(arrived)
        if len(inside) >= n:
            for waiting in inside[:n]:
                if not waiting.done():
                    waiting.set_result(True)
            del inside[:n]
        try:
            met = await asyncio.wait_for(asyncio.shield(arrived), 10)
        except asyncio.TimeoutError:
            met = False
            if arrived in inside:
                inside.remove(arrived)
        return {**describe(request), "met": met}

    @api.websocket("/ws")
    async def websocket(ws: WebSocket) -> None:
        await ws.accept()
        scope = ws.scope
        await ws.send_json(
            {
                "type": "websocket",
                "scheme": scope["scheme"],
                "client": list(scope["client"]) if scope.get("client") else None,
                "root_path": scope.get("root_path", ""),
                "path": scope["path"],
            }
        )
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:
                    await ws.send_text(message["text"])
                else:
                    await ws.send_bytes(message.get("bytes") or b"")
        except WebSocketDisconnect:
            return

    return api


app = create_app()
