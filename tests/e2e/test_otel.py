"""OpenTelemetry under all four servers, with the real SDK and OTLP/HTTP exporter against a receiver here:
OTEL_AUTO_INSTRUMENT=true, and the command wrapped in `opentelemetry-instrument` (as the Operator's injected
sitecustomize does it). Spans come from every worker that served, each with its own service.instance.id,
none from the server's main process (which never loads the SDK); spans still buffered when a graceful stop
begins arrive (each worker flushes at its end); JSON log records written inside a span carry its ids."""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import SERVERS, Server, copy_app, http_get, local_env, stop, wait_until, worker_pids

pytestmark = pytest.mark.e2e
pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.distro")
pytest.importorskip("opentelemetry.instrumentation.asgi")
trace_service = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")

INSTRUMENT = Path(sys.executable).parent / "opentelemetry-instrument"


class Receiver:
    """An OTLP/HTTP receiver of traces on 127.0.0.1: every span received, with its resource's attributes."""

    def __init__(self) -> None:
        self.spans: list[dict] = []
        spans = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    request = trace_service.ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    for resource_spans in request.resource_spans:
                        resource = {
                            a.key: getattr(a.value, a.value.WhichOneof("value"))
                            for a in resource_spans.resource.attributes
                        }
                        for scope_spans in resource_spans.scope_spans:
                            for span in scope_spans.spans:
                                spans.append({"resource": resource, "trace_id": span.trace_id.hex(), "name": span.name})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.http.server_address[1]}"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def receiver():
    received = Receiver()
    yield received
    received.close()


def otel_env(receiver: Receiver, server: str, **more: str) -> dict[str, str]:
    return local_env(
        SERVER=server,
        WEB_CONCURRENCY="2",
        LOG_FORMAT="json",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        OTEL_SERVICE_NAME="otel-test",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint,
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_METRICS_EXPORTER="none",
        OTEL_LOGS_EXPORTER="none",
        OTEL_EXPERIMENTAL_RESOURCE_DETECTORS="process",
        OTEL_BSP_SCHEDULE_DELAY="60000",  # nothing sent before the stop: what arrives was flushed at each worker's end
        **more,
    )


def loaded_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.parametrize("wrapped", [False, True], ids=["OTEL_AUTO_INSTRUMENT", "opentelemetry-instrument"])
@pytest.mark.parametrize("server_name", SERVERS)
def test_spans_from_every_worker_none_from_the_main_process(servers, receiver, tmp_path, server_name, wrapped):
    app_dir = copy_app(tmp_path, "otel")
    if wrapped:
        env = otel_env(receiver, server_name)
        command = [str(INSTRUMENT), sys.executable, str(Path(__file__).resolve().parents[2] / "start.py")]
    else:
        env = otel_env(receiver, server_name, OTEL_AUTO_INSTRUMENT="true")
        command = None
    server = Server(app_dir, env, command=command)
    servers.append(server)
    assert server.wait_ready()[0] == 200
    served: dict[str, int] = {}

    def both_served() -> bool:
        pid = http_get(server.url("/"), timeout=5)[1]
        served[pid] = served.get(pid, 0) + 1
        return len(served) == 2

    assert wait_until(both_served, deadline_s=30, step=0), served  # fresh connections until both workers answered
    workers = worker_pids(server.pid)
    assert {int(pid) for pid in served} <= set(workers)
    # the SDK's exporter (protobuf's native module) is loaded in the workers, never in the main process
    assert all("_upb" in loaded_libraries(worker) for worker in workers)
    assert "_upb" not in loaded_libraries(server.pid)
    assert receiver.spans == []  # still in the workers' buffers
    output = stop(server)

    by_pid: dict[int, set[str]] = {}
    for span in receiver.spans:
        by_pid.setdefault(span["resource"]["process.pid"], set()).add(span["resource"]["service.instance.id"])
    assert set(by_pid) == {int(pid) for pid in served}, (by_pid, served)  # every worker that served, nobody else
    assert all(len(ids) == 1 for ids in by_pid.values())
    assert len({next(iter(ids)) for ids in by_pid.values()}) == 2  # one instance id per worker
    assert {span["resource"]["service.name"] for span in receiver.spans} == {"otel-test"}
    # one server span per request served: those counted here, the readiness check's (which may have retried)
    assert len(receiver.spans) > sum(served.values())

    # every record written inside a request's span carries its ids (Granian writes its access records after
    # the response, outside any span: the app's own records carry them there)
    traces = {span["trace_id"] for span in receiver.spans}
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    app_records = [record for record in records if record["logger"] == "app"]
    access_records = [record for record in records if record["logger"].endswith(".access")]
    assert len(app_records) == len(receiver.spans)
    assert {record["trace_id"] for record in app_records} == traces
    assert all(len(record["span_id"]) == 16 for record in app_records)
    if server_name == "granian":
        assert access_records and not any("trace_id" in record for record in access_records)
    else:
        assert len(access_records) == len(receiver.spans)
        assert {record["trace_id"] for record in access_records} == traces
    assert not any(
        "trace_id" in record
        for record in records
        if record["logger"] not in ("app",) and not record["logger"].endswith(".access")
    )
