"""A raw ASGI app traced by opentelemetry-instrumentation-asgi's middleware, the way users wrap their apps.

/      answers this worker's PID, and logs one record of its own inside the request's span
The middleware uses the global tracer provider: spans go wherever the worker's SDK was set up to send them
(nowhere, if no SDK was started in this process).
"""

import logging
import os

from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

LOG = logging.getLogger("app")


async def traced(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    LOG.warning("served by %d", os.getpid())
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})


app = OpenTelemetryMiddleware(traced, exclude_spans=["receive", "send"])
