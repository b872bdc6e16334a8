"""The uv recipe's app (tests/docker/test_uv_recipe.py): Starlette, installed from uv.lock.

/            200 "hello from uv"
/id          JSON: uid, gid, python version
/dist?name=X the installed version of distribution X (404 if missing)
"""

import os
import sys
from importlib import metadata

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


async def hello(request):
    return PlainTextResponse("hello from uv")


async def identity(request):
    return JSONResponse({"uid": os.getuid(), "gid": os.getgid(), "python": sys.version.split()[0]})


async def dist(request):
    try:
        return PlainTextResponse(metadata.version(request.query_params["name"]))
    except metadata.PackageNotFoundError:
        return PlainTextResponse("not installed", status_code=404)


app = Starlette(routes=[Route("/", hello), Route("/id", identity), Route("/dist", dist)])
