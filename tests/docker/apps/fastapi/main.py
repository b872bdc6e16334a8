"""FastAPI test app for the image tests (the `fastapi` target): same routes as apps/raw."""

import asyncio
import os
import sys

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
async def hello():
    return "hello from fastapi"


@app.get("/id")
async def identity():
    return {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(), "python": sys.version.split()[0]}


@app.get("/slow", response_class=PlainTextResponse)
async def slow(seconds: float = 2.0):
    await asyncio.sleep(seconds)
    return "slow done"
