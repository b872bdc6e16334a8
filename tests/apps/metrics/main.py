"""A raw ASGI app using prometheus_client's multiprocess mode, as users of the old images do.

/            counts the request and answers this worker's PID
/metrics     every worker's metrics, aggregated from PROMETHEUS_MULTIPROC_DIR
"""

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest, multiprocess

REQUESTS = Counter("app_requests", "Requests served")
WORKERS = Gauge("app_workers", "Live worker processes", multiprocess_mode="livesum")
WORKERS.set(1)  # each worker, once, when it imports the app


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/metrics":
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        REQUESTS.inc()
        body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
