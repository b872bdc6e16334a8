"""The command lines of the cases: start.py, its --dry-run plan, the `direct` equivalents, inboard.

Runner.command() turns a Case into (argv, env, expected workers); Runner.launch() starts it as a
procs.Server. `direct` is derived from start.py's own plan without config files (every setting a flag).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile

import cases
from cases import Case
from procs import APP_DIR, HOST, Server, join_cgroup


def as_python_m(argv: list[str]) -> list[str]:
    """start.py's argv, `python RUNTIME/hand_over.py [--fork-guard] SERVER ARGS...`, as the `python -m SERVER
    ARGS...` it amounts to: what someone would type to run the server by hand."""
    if len(argv) < 2 or not argv[1].endswith("/hand_over.py"):
        return list(argv)
    rest = argv[2:]
    if rest[:1] == ["--fork-guard"]:
        rest = rest[1:]
    return [argv[0], "-m", *rest]


def without_generated(argv: list[str], generated: list[str]) -> list[str]:
    """argv minus every value naming a file start.py generates (and the flag before it)."""
    out: list[str] = []
    for item in argv:
        if any(path in item for path in generated):
            if out and out[-1].startswith("-") and "=" not in out[-1]:
                out.pop()
            continue
        out.append(item)
    return out


class Runner:
    def __init__(self, args, work, image=None):
        self.args, self.work = args, work
        self.py = os.path.join(args.servers_venv, "bin", "python")
        self.inboard_py = os.path.join(args.inboard_venv, "bin", "python") if args.inboard_venv else None
        self.home = os.path.join(work, "home")
        os.makedirs(self.home, exist_ok=True)
        # image=None: the classic run (TMPDIR shared by every launch, python start.py).
        # image=ImageLayout: the image's conditions, as in `--targets`: its PYTHON* environment
        # (PYTHONDONTWRITEBYTECODE=1 always), a fresh empty TMPDIR for every start, its CMD as the argv.
        self.image = image
        self.tmp_root = os.path.join(work, "tmp")
        os.makedirs(self.tmp_root, exist_ok=True)
        self.start_argv = image.cmd if image else [self.py, cases.START_PY]
        # start.py alone (no config file beside it): its plan puts every setting on the command line,
        # which is the hand-written "direct" command line.
        self.alone = os.path.join(work, "alone")
        os.makedirs(self.alone, exist_ok=True)
        for name in image.files if image else ("start.py",):
            if not (image and image.is_config(name)):
                shutil.copy2(os.path.join(os.path.dirname(cases.START_PY), name), self.alone)
        self.launches = 0

    def wrapper_dir(self) -> str:
        """A directory holding only the module `asgi_start` (with its bytecode), written from start.py's
        own runtime_module_source(): what start.py's runtime directory serves the app through."""
        directory = os.path.join(self.work, "wrapper")
        if not os.path.isdir(directory):
            os.makedirs(directory)
            code = (
                "import importlib.util as u, sys\n"
                "spec = u.spec_from_file_location('asgi_start_launcher', sys.argv[1])\n"
                "module = u.module_from_spec(spec)\n"
                "spec.loader.exec_module(module)\n"
                "sys.stdout.write(module.runtime_module_source())\n"
            )
            done = subprocess.run(
                [self.py, "-c", code, os.path.join(self.alone, "start.py")],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
            path = os.path.join(directory, "asgi_start.py")
            with open(path, "w") as file:
                file.write(done.stdout)
            subprocess.run([self.py, "-m", "compileall", "-q", path], check=True, timeout=60)
        return directory

    def fresh_tmpdir(self) -> str:
        return tempfile.mkdtemp(prefix="t", dir=self.tmp_root)

    def clean_tmpdirs(self) -> None:
        for entry in os.listdir(self.tmp_root):
            shutil.rmtree(os.path.join(self.tmp_root, entry), ignore_errors=True)

    def env(self, venv: str, extra: dict) -> dict:
        env = {
            "PATH": f"{os.path.join(venv, 'bin')}:/usr/local/bin:/usr/bin:/bin",
            "HOME": self.home,
            "LANG": "C.UTF-8",
            "TMPDIR": self.work,
        }
        if self.image:
            env.update(self.image.env)
            env["TMPDIR"] = self.fresh_tmpdir()
        env.update(extra)
        return env

    def dry_run(self, case: Case, port: int, start_py: str | None = None, cgroup: str | None = None) -> dict:
        start_py = start_py or cases.START_PY
        extra = {"HOST": HOST, "PORT": str(port), "SERVER": case.server, **case.extra_env}
        argv = [self.py, start_py, "--dry-run"] + (["--", *case.server_args] if case.server_args else [])
        if start_py == cases.START_PY:
            argv = list(self.start_argv) + argv[2:]
        done = subprocess.run(
            argv,
            env=self.env(self.args.servers_venv, extra),
            cwd=APP_DIR,
            capture_output=True,
            text=True,
            timeout=30,
            preexec_fn=join_cgroup(cgroup) if cgroup else None,
        )
        if done.returncode != 0:
            raise RuntimeError(f"--dry-run failed ({done.returncode}): {done.stderr}")
        return json.loads(done.stdout)

    def command(self, case: Case, port: int, cgroup: str | None = None) -> tuple[list[str], dict, int]:
        """(argv, env, expected worker count) for one launch of `case` on `port`."""
        contract = {"HOST": HOST, "PORT": str(port), **case.extra_env}
        if case.launcher == "inboard":
            env = self.env(self.args.inboard_venv, {"APP_MODULE": "main:app", **contract})
            wpc = float(case.extra_env.get("WORKERS_PER_CORE", "1"))
            workers = 1 if case.server == "uvicorn" else max(int(wpc * os.cpu_count()), 2)  # its rule
            return [self.inboard_py, "-m", "inboard.start"], env, workers
        if case.launcher == "start":
            argv = list(self.start_argv) + (["--", *case.server_args] if case.server_args else [])
            env = self.env(self.args.servers_venv, {"SERVER": case.server, **contract})
            return argv, env, self.dry_run(case, port, cgroup=cgroup)["workers"]
        if case.launcher == "direct-argv":
            plan = self.dry_run(case, port)
            if plan.get("prebound_socket"):
                raise RuntimeError("direct-argv cannot reproduce a pre-bound socket")
            env = self.env(self.args.servers_venv, {"SERVER": case.server, **contract, **plan["env"]})
            return plan["argv"], env, plan["workers"]
        # "direct": what someone would type, derived from start.py's own plan without a config file:
        # every setting as a flag, minus what points into start.py's generated runtime directory
        # (its logging configuration), so the server logs with its own defaults
        plan = self.dry_run(case, port, os.path.join(self.alone, "start.py"))
        generated = [p for p in [plan.get("runtime_dir"), *plan.get("files", [])] if p]
        argv = without_generated(as_python_m(plan["argv"]), generated)
        if case.server == "gunicorn" and "GUNICORN_CMD_ARGS" in plan["env"]:
            # GUNICORN_CMD_ARGS (start.py alone) -> the same flags on the command line
            argv = argv[:3] + without_generated(shlex.split(plan["env"]["GUNICORN_CMD_ARGS"]), generated) + argv[3:]
        wrapped = plan["env"].get("ASGI_START_APP")
        keep_wrapper = case.launcher == "direct-wrapped"
        if wrapped and argv and argv[-1].startswith("asgi_start:") and not keep_wrapper:
            # Hypercorn and Granian by hand serve the app itself, not start.py's proxy-headers wrapper
            argv = [*argv[:-1], wrapped]
            if argv[-2] == "--factory":  # Granian: the wrapper is a factory, the app is not
                del argv[-2]
        if case.server == "uvicorn" and "--fd" in argv:
            # Uvicorn binds the address itself, as `uvicorn --host --port` does
            index = argv.index("--fd")
            argv[index : index + 2] = ["--host", HOST, "--port", str(port)]
        kept = ("ASGI_START_APP", "ASGI_START_FORWARDED_ALLOW_IPS") if keep_wrapper else ()
        env = {
            k: v
            for k, v in plan["env"].items()
            if k != "GUNICORN_CMD_ARGS"
            and (k in kept or not k.startswith("ASGI_START_"))
            and not any(g in v for g in generated)
        }
        if keep_wrapper:
            # only the module `asgi_start` on the path: no sitecustomize, no logging configuration
            path = (self.image.env if self.image else {}).get("PYTHONPATH")
            env["PYTHONPATH"] = self.wrapper_dir() + (os.pathsep + path if path else "")
        # the same environment start.py would have exec'd the server with (the flags win anyway)
        return argv, self.env(self.args.servers_venv, {"SERVER": case.server, **contract, **env}), plan["workers"]

    def launch(
        self, case: Case, port: int, cgroup: str | None = None, argv_prefix=(), env_update=None, head=None
    ) -> tuple[Server, int, list]:
        argv, env, workers = self.command(case, port, cgroup)
        if argv_prefix:
            argv = [argv[0], *argv_prefix, *argv[1:]]
        if env_update:
            env = env_update(env)
        self.launches += 1
        return Server(argv, env, cgroup=cgroup, head=head), workers, argv


# --------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------
