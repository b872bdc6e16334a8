"""What start.py plans for OTEL_AUTO_INSTRUMENT, an injected OpenTelemetry sitecustomize and
PROMETHEUS_MULTIPROC_DIR, and the module asgi_start_observe's own pieces, in process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import start

ASGI_START_OBSERVE = "ASGI_START_OBSERVE"


def facts(app_dir: Path, instrumentation=(0, 66)) -> start.Facts:
    return start.Facts(
        app_dir=str(app_dir),
        start_dir=str(app_dir / "no-start-dir"),
        cpus=start.CpuCount(2, "CPU affinity"),
        installed=lambda name: True,
        search_path=start.module_search_path(str(app_dir)),
        dev_shm=False,
        version=lambda name: {"opentelemetry-instrumentation": instrumentation}.get(name, (27, 0, 1)),
    )


def planned(app_dir: Path, env: dict[str, str], **more) -> start.Plan:
    return start.plan_launch(start.parse_settings(env), facts(app_dir, **more))


@pytest.fixture
def app_dir(tmp_path):
    (tmp_path / "main.py").write_text("app = None\n")
    return tmp_path


def sitecustomize_dir(root: Path) -> Path:
    """A directory laid out as opentelemetry-instrumentation's (or the Operator's copy of it)."""
    directory = root / "opentelemetry" / "instrumentation" / "auto_instrumentation"
    directory.mkdir(parents=True)
    (directory / "sitecustomize.py").write_text("raise SystemExit('imported!')\n")
    return directory


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn", "hypercorn", "granian"])
def test_nothing_is_observed_unless_asked(app_dir, server):
    assert ASGI_START_OBSERVE not in planned(app_dir, {"SERVER": server}).env
    assert planned(app_dir, {"SERVER": server, "OTEL_AUTO_INSTRUMENT": "true"}).env[ASGI_START_OBSERVE] == "otel"
    both = planned(app_dir, {"SERVER": server, "OTEL_AUTO_INSTRUMENT": "1", "PROMETHEUS_MULTIPROC_DIR": "m"})
    assert both.env[ASGI_START_OBSERVE] == "metrics,otel"
    assert "PYTHONPATH" not in both.env  # left as it is


def test_otel_auto_instrument_needs_the_instrumentation_installed(app_dir):
    with pytest.raises(start.ConfigError) as caught:
        planned(app_dir, {"OTEL_AUTO_INSTRUMENT": "true"}, instrumentation=(0,))
    assert caught.value.problems == [
        f"OTEL_AUTO_INSTRUMENT=true needs opentelemetry-distro, which is not installed for {sys.executable}: "
        "pip install opentelemetry-distro opentelemetry-exporter-otlp"
    ]
    with pytest.raises(start.ConfigError) as caught:
        planned(app_dir, {"OTEL_AUTO_INSTRUMENT": "maybe"})
    assert caught.value.problems[0].startswith("OTEL_AUTO_INSTRUMENT='maybe' is not valid")


def test_an_injected_sitecustomize_moves_from_the_main_process_to_the_workers(app_dir, tmp_path):
    operator = tmp_path / "otel-auto-instrumentation-python"
    injected = sitecustomize_dir(operator)
    # as the Operator sets it: the sitecustomize's directory, then its packages; the user's own entry kept
    python_path = os.pathsep.join([str(injected), str(operator), "/srv/lib"])
    result = planned(app_dir, {"PYTHONPATH": python_path}, instrumentation=(0,))  # its packages are its own
    assert result.env[ASGI_START_OBSERVE] == "otel"
    assert result.env["PYTHONPATH"] == os.pathsep.join([str(operator), "/srv/lib"])
    assert result.env["ASGI_START_OTEL_SITECUSTOMIZE"] == str(injected)
    # an entry that only looks like it (no sitecustomize.py there) is not touched
    (tmp_path / "other" / "opentelemetry" / "instrumentation" / "auto_instrumentation").mkdir(parents=True)
    lookalike = str(tmp_path / "other" / "opentelemetry" / "instrumentation" / "auto_instrumentation")
    assert ASGI_START_OBSERVE not in planned(app_dir, {"PYTHONPATH": lookalike}).env


def observe_module():
    namespace: dict[str, object] = {"__name__": "asgi_start_observe"}
    exec(compile(start.observe_source(), "asgi_start_observe.py", "exec"), namespace)  # noqa: S102 -- our own section
    return namespace


def test_the_observe_module_stands_alone(tmp_path):
    assert callable(observe_module()["worker_started"])
    source = start.observe_source()
    assert "def parse_settings" not in source and "VARIABLES" not in source
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed beside this interpreter (the Python 3.9 image run)")
    written = tmp_path / "asgi_start_observe.py"
    written.write_text(source)
    check = subprocess.run(
        [str(ruff), "check", "--no-cache", "--select", "F821,F401,F811", str(written)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout


def test_each_worker_gets_its_own_service_instance_id():
    with_instance_id = observe_module()["with_instance_id"]
    first, second = with_instance_id("", 10), with_instance_id("", 11)
    assert first.startswith("service.instance.id=") and first != second
    assert len(first.partition("=")[2]) == 36  # a random UUID
    given = "k8s.pod.name=web-1,service.instance.id=ns.web-1.app,deployment.environment=prod"
    assert (
        with_instance_id(given, 42)
        == "k8s.pod.name=web-1,deployment.environment=prod,service.instance.id=ns.web-1.app-42"
    )


def test_the_sweep_marks_gone_processes_and_an_earlier_holder_of_this_pid(tmp_path, monkeypatch):
    pytest.importorskip("prometheus_client")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive, me = int(gone.stdout), os.getppid(), os.getpid()
    names = [
        f"gauge_livesum_{dead}.db",
        f"gauge_liveall_{dead}.db",
        f"gauge_livesum_{alive}.db",
        f"gauge_livesum_{me}.db",  # an earlier process with this worker's PID: it has not written yet
        f"counter_{dead}.db",  # counters stay: their counts are still the server's
        f"gauge_all_{dead}.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    observe_module()["sweep_dead_workers"](str(tmp_path))
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [f"gauge_livesum_{alive}.db", f"counter_{dead}.db", f"gauge_all_{dead}.db"]
    )
