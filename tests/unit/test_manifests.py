"""The example Kubernetes manifests (deploy/kubernetes): valid, offline, and their numbers agree.

Every document of every file is validated in strict mode (unknown fields are errors)
against the Kubernetes API schemas that the pinned `kubernetes-validate` package
ships, for the oldest and the newest Kubernetes version checked here. Then the
relations a schema cannot see: the shutdown timeline fits the grace period, the
worker memory budget fits the memory limit, the security context is the
restricted one with a writable /tmp, ports, probes and selectors line up, and
start.py accepts the environment.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from helpers import REPO

import start

MANIFESTS = REPO / "deploy" / "kubernetes"
FILES = sorted(MANIFESTS.glob("*.y*ml"))
# The oldest Kubernetes the examples are written for, and the newest the pinned
# kubernetes-validate ships schemas for.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
IMAGE_UID = 10001  # USER 10001:10001 in the Dockerfile
# The usual idle timeout in front of the pods: ingress-nginx's upstream keep-alive
# and an AWS Application Load Balancer both close idle connections after 60 s.
PROXY_IDLE_TIMEOUT = 60


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def all_documents() -> list[dict]:
    return [doc for path in FILES for doc in documents(path)]


def one(kind: str) -> dict:
    found = [doc for doc in all_documents() if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in {MANIFESTS}, found {len(found)}"
    return found[0]


def container() -> dict:
    containers = one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the example runs one container per pod"
    return containers[0]


# Variables the pod gives from the Downward API rather than as values.
FROM_THE_POD = {"CPU_REQUEST": {"resourceFieldRef": {"resource": "requests.cpu"}}}


def env() -> dict[str, str]:
    """The plain values; the variables of FROM_THE_POD are left out (checked by their own test)."""
    variables = [variable for variable in container().get("env", []) if variable["name"] not in FROM_THE_POD]
    for variable in variables:
        assert set(variable) == {"name", "value"}, f"plain values only, so they can be checked: {variable}"
        assert isinstance(variable["value"], str), variable
    return {variable["name"]: variable["value"] for variable in variables}


# Kubernetes resource quantities: 500m, 1, 1.5, 512Mi, 1Gi, 1G, 1e3
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(?:(Ki|Mi|Gi|Ti|Pi|Ei)|(m|k|M|G|T|P|E)|[eE]([0-9]+))?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def quantity(value: str | int | float) -> float:
    match = _QUANTITY.match(str(value))
    assert match, f"not a Kubernetes quantity: {value!r}"
    number, binary, decimal, exponent = match.groups()
    if binary:
        return float(number) * _BINARY[binary]
    if decimal:
        return float(number) * _DECIMAL[decimal]
    return float(number) * (10 ** int(exponent) if exponent else 1)


def prestop_sleep_seconds(spec: dict) -> int:
    """The preStop delay: `exec: [sleep, N]` or the built-in `sleep: {seconds: N}`."""
    prestop = spec.get("lifecycle", {}).get("preStop", {})
    if "sleep" in prestop:
        return int(prestop["sleep"]["seconds"])
    command = prestop.get("exec", {}).get("command", [])
    assert len(command) == 2 and command[0] in ("sleep", "/bin/sleep"), f"preStop must be a sleep: {prestop}"
    return int(command[1])


# --------------------------------------------------------------------------
# the schemas
# --------------------------------------------------------------------------
def test_the_four_kinds_are_there():
    kinds = sorted(doc["kind"] for doc in all_documents())
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"], kinds


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_every_manifest_is_valid_in_strict_mode(path, version):
    docs = documents(path)
    assert docs, f"{path.name} holds no document"
    problems = []
    for doc in docs:
        name = f"{path.name}: {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path)
            problems.append(f"{name} is invalid for Kubernetes {version}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:  # the command line only warns here
            problems.append(f"{name}: {exc.message}")
    if problems:  # one line each, without the schema dump of the exception
        pytest.fail("\n".join(problems), pytrace=False)


def test_the_validation_catches_a_misspelt_field():
    """Strict mode is what makes a typo fail: an unknown field is an error, not ignored."""
    deployment = one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSecond"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


# --------------------------------------------------------------------------
# shutdown: preStop sleep, then SIGTERM and GRACEFUL_TIMEOUT, all inside the grace period
# --------------------------------------------------------------------------
def test_the_shutdown_fits_the_grace_period():
    pod = one("Deployment")["spec"]["template"]["spec"]
    grace = pod.get("terminationGracePeriodSeconds", 30)  # Kubernetes' default
    variables = env()
    assert "GRACEFUL_TIMEOUT" in variables, "set GRACEFUL_TIMEOUT: the image's default (120 s) exceeds 30 s"
    graceful = float(variables["GRACEFUL_TIMEOUT"])
    sleep = prestop_sleep_seconds(container())
    # endpoints need a few seconds to drop the pod; SIGTERM comes after the sleep
    assert 3 <= sleep <= 30, f"preStop sleep {sleep} s"
    # the grace period counts from the start of the preStop hook
    assert grace > sleep + graceful, f"grace {grace} s <= preStop {sleep} s + GRACEFUL_TIMEOUT {graceful} s"


# --------------------------------------------------------------------------
# resources and the worker count
# --------------------------------------------------------------------------
def test_requests_and_limits_are_set():
    resources = container()["resources"]
    for resource in ("cpu", "memory"):
        request = quantity(resources["requests"][resource])
        limit = quantity(resources["limits"][resource])
        assert 0 < request <= limit, (resource, resources)


def expected_workers(variables: dict[str, str], cpu_limit: float) -> int:
    """contract.md's rule, with the CPU limit as the container's quota."""
    if "WEB_CONCURRENCY" in variables:
        return int(variables["WEB_CONCURRENCY"])
    cores = max(math.ceil(cpu_limit), 1)
    workers = max(int(float(variables.get("WORKERS_PER_CORE", "1")) * cores), 2)
    if "MAX_WORKERS" in variables:
        workers = min(workers, int(variables["MAX_WORKERS"]))
    return workers


def test_cpu_request_comes_from_the_downward_api_in_whole_cpus():
    """CPU_REQUEST is the container's own request, with the default divisor ("1": whole CPUs, rounded up),
    which start.py reads as CPUs; a divisor of 1m would give millicores as a bare number."""
    given = {variable["name"]: variable for variable in container()["env"]}
    assert given.get("CPU_REQUEST", {}).get("valueFrom") == FROM_THE_POD["CPU_REQUEST"], given.get("CPU_REQUEST")
    reference = given["CPU_REQUEST"]["valueFrom"]["resourceFieldRef"]
    assert reference.get("containerName") in (None, container()["name"])
    assert quantity(reference.get("divisor", "1")) == 1
    # what the kubelet would put there, and what start.py then counts
    request = quantity(container()["resources"]["requests"]["cpu"])
    downward = str(math.ceil(request))
    assert start.parse_settings({"CPU_REQUEST": downward}).cpu_request == 1000 * math.ceil(request)


def test_worker_memory_fits_the_memory_limit():
    variables = env()
    limits = container()["resources"]["limits"]
    raw = variables.get("WORKER_MEMORY")
    assert raw, "set WORKER_MEMORY, so that the worker count also follows the memory limit"
    # binary units mean the same to Kubernetes and to start.py (M could be 10^6 or 2^20)
    assert re.fullmatch(r"[0-9]+(Ki|Mi|Gi)", raw), f"WORKER_MEMORY={raw}: use Ki, Mi or Gi"
    worker_memory = quantity(raw)
    memory_limit = quantity(limits["memory"])
    by_memory = int(memory_limit // worker_memory)
    assert by_memory >= 1, f"WORKER_MEMORY {raw} exceeds the memory limit {limits['memory']}"
    # the count the CPU limit gives fits in memory too: memory does not silently cut it
    by_cpu = expected_workers(variables, quantity(limits["cpu"]))
    assert by_cpu * worker_memory <= memory_limit, (
        f"{by_cpu} workers (CPU limit {limits['cpu']}) x WORKER_MEMORY {raw} > memory limit {limits['memory']}"
    )


# --------------------------------------------------------------------------
# security context: non-root, read-only root with a writable /tmp
# --------------------------------------------------------------------------
def test_security_context_is_the_restricted_one():
    pod = one("Deployment")["spec"]["template"]["spec"]
    pod_context = pod.get("securityContext", {})
    context = {**pod_context, **container().get("securityContext", {})}  # the container's win
    assert context.get("runAsNonRoot") is True
    assert context.get("runAsUser") == IMAGE_UID
    assert context.get("allowPrivilegeEscalation") is False
    assert context.get("capabilities", {}).get("drop") == ["ALL"]
    assert not context.get("capabilities", {}).get("add")
    assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault"
    assert context.get("readOnlyRootFilesystem") is True


def test_tmp_is_a_writable_empty_dir():
    """start.py writes its logging configuration under TMPDIR (default /tmp)."""
    pod = one("Deployment")["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    mounts = {mount["mountPath"]: mount for mount in container().get("volumeMounts", [])}
    tmpdir = env().get("TMPDIR", "/tmp")
    assert tmpdir in mounts, f"nothing mounted on {tmpdir}: {sorted(mounts)}"
    mount = mounts[tmpdir]
    assert not mount.get("readOnly"), mount
    assert "emptyDir" in volumes[mount["name"]], volumes[mount["name"]]


# --------------------------------------------------------------------------
# ports, probes, keep-alive
# --------------------------------------------------------------------------
def container_port(port: int | str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    return ports[port] if isinstance(port, str) else port


def test_the_server_listens_on_an_unprivileged_port_that_everything_uses():
    variables = env()
    port = int(variables["PORT"])
    assert port > 1023, "a non-root server cannot bind below 1024 without the sysctl"
    assert [p["containerPort"] for p in container()["ports"]] == [port]
    service = one("Service")
    assert [container_port(p["targetPort"]) for p in service["spec"]["ports"]] == [port]


def test_startup_readiness_and_liveness_probes():
    spec = container()
    health_path = env().get("HEALTHCHECK_PATH", "/")
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = spec.get(name)
        assert probe, f"no {name}"
        if "httpGet" in probe:
            assert container_port(probe["httpGet"]["port"]) == int(env()["PORT"]), (name, probe)
            assert probe["httpGet"]["path"] == health_path, f"{name} requests another path than HEALTHCHECK_PATH"
        else:
            assert probe["exec"]["command"] == ["python", "/start.py", "--healthcheck"], (name, probe)
        # a probe's timeout below its period, so that probes do not pile up
        assert probe.get("timeoutSeconds", 1) < probe.get("periodSeconds", 10), (name, probe)
    startup = spec["startupProbe"]
    assert startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) >= 30, "allow 30 s to start"
    filters = [path for path in env().get("LOG_FILTERS", "").split(",") if path]
    assert health_path in filters, "keep the probes' requests out of the access log (LOG_FILTERS)"


def test_keep_alive_outlasts_the_proxy_idle_timeout():
    keep_alive = float(env().get("KEEP_ALIVE", "5"))  # start.py's default
    assert keep_alive > PROXY_IDLE_TIMEOUT, "the proxy, not the server, must close idle connections"


# --------------------------------------------------------------------------
# the objects point at each other
# --------------------------------------------------------------------------
def test_selectors_and_references_line_up():
    deployment = one("Deployment")
    name = deployment["metadata"]["name"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict) -> bool:
        return bool(selector) and all(labels.get(key) == value for key, value in selector.items())

    assert selects(deployment["spec"]["selector"]["matchLabels"])
    assert selects(one("Service")["spec"]["selector"])
    pdb = one("PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"])
    hpa = one("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", name)
    # the autoscaler owns the replica count; a `replicas` field would reset it on every apply
    assert "replicas" not in deployment["spec"]
    # a drain can always proceed, and leaves a pod serving
    min_replicas = hpa["spec"].get("minReplicas", 1)
    if "maxUnavailable" in pdb["spec"]:
        assert 1 <= int(pdb["spec"]["maxUnavailable"]) < min_replicas, (pdb["spec"], min_replicas)
    else:
        assert 1 <= int(pdb["spec"]["minAvailable"]) < min_replicas, (pdb["spec"], min_replicas)
    # utilisation is measured against the CPU request, which must therefore exist
    assert "cpu" in container()["resources"]["requests"]
