"""Starlette test app for the image tests (the `starlette` target): same routes as apps/raw."""

import asyncio
import os
import sys

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def hello(request):
    return PlainTextResponse("hello from starlette")


async def identity(request):
    return JSONResponse({"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(), "python": sys.version.split()[0]})


async def slow(request):
    await asyncio.sleep(float(request.query_params.get("seconds", "2")))
    return PlainTextResponse("slow done")


app = Starlette(routes=[Route("/", hello), Route("/id", identity), Route("/slow", slow)])
