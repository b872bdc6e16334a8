#!/usr/bin/env python3
"""asgi-start: serve an ASGI app with Gunicorn + Uvicorn workers, Uvicorn, Hypercorn or Granian.

One file, standard library only, Python 3.9+. Copy it into any image and run
``python start.py``. It reads the environment, finds the app without importing
it, sizes the worker pool from the CPUs the container really has, runs the
pre-start script and then replaces itself with the server (``os.execve``), so
the server is the process the container runtime signals.

The file reads top to bottom as a pipeline:

    environment -> settings -> plan -> effects

``VARIABLES`` declares every setting once: how it is parsed, its default, its
documentation, and what it becomes under each server. ``parse_settings`` turns
a mapping of strings into ``Settings``; ``probe_facts`` looks at the machine
(files, installed packages, CPUs); ``plan_launch`` turns both into the exact
argv and the finished server options; only ``main`` runs anything. Every stage
adds to one list of problems, so that one run reports all of them.

The default config files (gunicorn_conf.py, hypercorn_conf.py) do not plan
again: start.py hands them the finished options in a file named by
``ASGI_START_OPTIONS``. Run by hand, without start.py, they plan from the
environment through this file.

The last section is the code that runs inside the servers (log formatters,
the access-path filter). start.py writes it out as the small module
``asgi_start``, with its bytecode, so no server process compiles this file.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time; only type checkers need it
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any, Callable, NoReturn, Optional

    # One server option: its config-file key (None: command line only), its flag
    # (None: config file only) and its value. Lists repeat the flag; True is a bare
    # flag; None and False leave the option out.
    Option = tuple[Optional[str], Optional[str], Any]

if __name__ == "__main__":
    # From the first line: see hold_sigterm. The interpreter has loaded _signal; `signal` would cost an import.
    sys.modules["_signal"].pthread_sigmask(sys.modules["_signal"].SIG_BLOCK, {sys.modules["_signal"].SIGTERM})

__version__ = "1.1.0"

PROG = "asgi-start"
SERVERS = ("gunicorn", "uvicorn", "hypercorn", "granian")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("text", "json")
TRUE_WORDS = ("1", "true", "yes", "y")
FALSE_WORDS = ("0", "false", "no", "n")
HYPERCORN_WORKER_CLASSES = ("asyncio", "uvloop", "trio")
# Granian's event loops (its --loop); WORKER_CLASS picks one. winloop is Windows-only.
GRANIAN_LOOPS = ("auto", "asyncio", "uvloop", "rloop")
# Gunicorn's short names for its own worker classes (gunicorn.workers.SUPPORTED_WORKERS).
GUNICORN_WORKER_ALIASES = ("sync", "eventlet", "gevent", "tornado", "gthread", "asgi")
# The package each importable name comes from, for "install X" messages.
PACKAGE_OF_MODULE = {
    "gunicorn": "gunicorn",
    "uvicorn": "uvicorn",
    "hypercorn": "hypercorn",
    "uvicorn_worker": "uvicorn-worker",
    "uvloop": "uvloop",
    "trio": "trio",
    "granian": "granian",
    "rloop": "rloop",
    "watchfiles": "'granian[reload]'",
    "zttp": "zttp",
    "h2": "'gunicorn[http2]'",
}
# Gunicorn hooks a setting asked for, said in a warning when no config file can carry them.
HOOK_PURPOSE = {
    "child_exit": "a worker killed in PROMETHEUS_MULTIPROC_DIR is marked dead only when its replacement starts",
    "when_ready": "the preloaded app's objects are not frozen (gc.freeze), so workers copy more of its memory",
}
# The hand-over's option for the servers that fork their workers (Gunicorn, Granian): a forked worker
# starts with the stop signals at their defaults (see _guard_forked_workers).
FORK_GUARD_FLAG = "--fork-guard"
# Uvicorn gets its pre-bound listening socket on this descriptor (see plan_uvicorn).
UVICORN_SOCKET_FD = 3


class ConfigError(Exception):
    """Raised only where a caller cannot go on: the problems, one line each, for the user."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


# --------------------------------------------------------------------------
# Value parsers. Each takes the raw string and returns the typed value, or
# raises ValueError whose text says what is accepted.
# --------------------------------------------------------------------------


def parse_bool(raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"a boolean: {' '.join(TRUE_WORDS)} / {' '.join(FALSE_WORDS)}")


# Upper bounds keep every number one the servers and the kernel can take (listen()'s
# backlog, float arithmetic on the worker count); past them is a typo, not a setting.
MAX_WORKER_COUNT = 4096
MAX_WORKERS_PER_CORE = 64
MAX_CPU_COUNT = 65536
MAX_SECONDS = 86400
MAX_BACKLOG = 65535
MAX_REQUEST_COUNT = 2**31 - 1


def _parse_int(raw: str, minimum: int, maximum: int) -> int:
    accepted = f"a whole number from {minimum} to {maximum}"
    text = raw.strip()
    # ASCII digits only: int() would also take '+5', '1_000' and other scripts' digits
    if not (text.isascii() and text.isdigit()):
        raise ValueError(accepted)
    value = int(text)
    if not minimum <= value <= maximum:
        raise ValueError(accepted)
    return value


def parse_worker_count(raw: str) -> int:
    return _parse_int(raw, 1, MAX_WORKER_COUNT)


def parse_seconds(raw: str) -> int:
    return _parse_int(raw, 0, MAX_SECONDS)


MIN_WORKER_LIFETIME = 60  # Granian's own least; a shorter life recycles workers faster than they warm up


def parse_worker_lifetime(raw: str) -> int:
    return _parse_int(raw, MIN_WORKER_LIFETIME, MAX_SECONDS)


def parse_port(raw: str) -> int:
    return _parse_int(raw, 1, 65535)


def parse_backlog(raw: str) -> int:
    return _parse_int(raw, 1, MAX_BACKLOG)


def parse_request_count(raw: str) -> int:
    return _parse_int(raw, 1, MAX_REQUEST_COUNT)


def parse_workers_per_core(raw: str) -> float:
    accepted = f"a number above 0 and at most {MAX_WORKERS_PER_CORE}, fractions allowed (e.g. 0.5)"
    text = raw.strip()
    whole, _, fraction = text.partition(".")
    if not (text.isascii() and (whole + fraction).isdigit() and (whole or fraction)):
        raise ValueError(accepted)
    value = float(text)
    if not 0 < value <= MAX_WORKERS_PER_CORE:
        raise ValueError(accepted)
    return value


def parse_cpu_count(raw: str) -> int | None:
    # CPython 3.13's PYTHON_CPU_COUNT also accepts "default": use the system's count.
    if raw.strip().lower() == "default":
        return None
    try:
        return _parse_int(raw, 1, MAX_CPU_COUNT)
    except ValueError:
        raise ValueError(f"a whole number from 1 to {MAX_CPU_COUNT}, or 'default'") from None


def parse_cpu_request(raw: str) -> int:
    """Millicores, from a Kubernetes CPU quantity as the Downward API writes it: `500m`, `2`, `1.5`."""
    accepted = f"a CPU quantity above 0 and at most {MAX_CPU_COUNT}: millicores (500m), or CPUs (2, 1.5)"
    text = raw.strip()
    number, millicores = (text[:-1], True) if text.endswith("m") else (text, False)
    whole, _, fraction = number.partition(".")
    # Kubernetes counts CPU to the millicore: no fraction of a millicore, no more than 3 decimals of a CPU
    if not (number.isascii() and (whole + fraction).isdigit() and whole) or (millicores and "." in number):
        raise ValueError(accepted)
    if len(fraction) > 3 or len(whole) > 12:
        raise ValueError(accepted)
    value = int(whole) if millicores else int(whole) * 1000 + int(fraction.ljust(3, "0") or "0")
    if not 1 <= value <= MAX_CPU_COUNT * 1000:
        raise ValueError(accepted)
    return value


def format_millicores(millicores: int) -> str:
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


MEMORY_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
MAX_MEMORY = 1 << 50  # a pebibyte per worker is a typo, not a budget


def parse_memory(raw: str) -> int:
    """Bytes, or a number with K, M, G, T (binary, as Docker reads `--memory 512m`) or Ki, Mi, Gi, Ti."""
    accepted = "a size such as 256M, 1G, 512Mi or a number of bytes (K, M, G, T and Ki, Mi, Gi, Ti are powers of 1024)"
    text = raw.strip()
    lowered = text.lower()
    number = lowered.removesuffix("i") if lowered[-2:-1].isalpha() else lowered
    unit = number[-1:] if number[-1:].isalpha() else ""
    digits = number[: len(number) - len(unit)]
    whole, _, fraction = digits.partition(".")
    if unit not in MEMORY_UNITS or not (digits.isascii() and (whole + fraction).isdigit() and whole + fraction):
        raise ValueError(accepted)
    if len(digits) > 20:  # past MAX_MEMORY in any unit; keeps the arithmetic small
        raise ValueError(accepted)
    scale = MEMORY_UNITS[unit]
    value: int = int(whole or "0") * scale + int(fraction or "0") * scale // 10 ** len(fraction)
    if not 1 <= value <= MAX_MEMORY:
        raise ValueError(accepted)
    return value


def format_bytes(count: float) -> str:
    """A size as people read it: MiB below a GiB, GiB above, with at most one decimal."""
    unit, size = ("GiB", count / (1 << 30)) if count >= 1 << 30 else ("MiB", count / (1 << 20))
    return f"{size:.1f}".rstrip("0").rstrip(".") + f" {unit}"


def parse_log_level(raw: str) -> str:
    level = raw.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"one of {' '.join(LOG_LEVELS)}")
    return level


def parse_log_format(raw: str) -> str:
    log_format = raw.strip().lower()
    if log_format not in LOG_FORMATS:
        raise ValueError(f"one of {' '.join(LOG_FORMATS)}")
    return log_format


def parse_request_paths(raw: str) -> list[str]:
    paths = split_list(raw)
    if any(not path.startswith("/") or any(ord(char) < 33 for char in path) for path in paths):
        raise ValueError("comma-separated URL paths, each starting with /, e.g. /health,/metrics")
    return paths


def parse_server(raw: str) -> str:
    server = raw.strip().lower()
    if server not in SERVERS:
        raise ValueError(f"one of {' '.join(SERVERS)}")
    return server


def parse_http2(raw: str) -> str:
    value = raw.strip().lower()
    if value not in ("on", "off"):
        raise ValueError("on or off")
    return value


def granian_http(value: str) -> str:
    """HTTP2 as Granian's --http: `auto` takes HTTP/2 over TLS (ALPN) and prior-knowledge h2c beside HTTP/1.1."""
    return "auto" if value == "on" else "1"


def hypercorn_alpn(value: str) -> list[str]:
    return ["h2", "http/1.1"] if value == "on" else ["http/1.1"]


def parse_text(raw: str) -> str:
    return raw


def parse_forwarded_allow_ips(raw: str) -> str:
    """Comma-separated addresses and networks, or *, checked as the wrapper will read them."""
    import ipaddress  # only when set

    items = split_list(raw)
    for item in items:
        if item == "*" or item.startswith("unix:"):
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ValueError("comma-separated IP addresses or networks (10.0.0.0/8), or *") from None
    if not items:
        raise ValueError("comma-separated IP addresses or networks (10.0.0.0/8), or *")
    return ",".join(items)


def _is_dotted_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def parse_module_name(raw: str) -> str:
    name = raw.strip()
    if not _is_dotted_name(name):
        raise ValueError("a dotted module name such as app.main")
    return name


def parse_attribute_name(raw: str) -> str:
    name = raw.strip()
    if not _is_dotted_name(name):
        raise ValueError("a Python attribute name such as app")
    return name


def parse_app_module(raw: str) -> str:
    text = raw.strip()
    module, colon, attribute = text.partition(":")
    name, parenthesis, arguments = attribute.partition("(")
    if parenthesis and arguments.strip() != ")":
        if _is_dotted_name(module) and _is_dotted_name(name) and arguments.endswith(")"):
            raise ValueError(
                "a factory called without arguments, module:factory(); write a factory that reads its settings itself"
            )
        raise ValueError("module:attribute or module:factory(), e.g. app.main:app or app.main:create_app()")
    if not colon or not _is_dotted_name(module) or not _is_dotted_name(name):
        raise ValueError("module:attribute or module:factory(), e.g. app.main:app or app.main:create_app()")
    return f"{module}:{name}()" if parenthesis else text


def split_factory(app_module: str) -> tuple[str, bool]:
    """'m:create_app()' -> ('m:create_app', True); 'm:app' -> ('m:app', False)."""
    return (app_module[:-2], True) if app_module.endswith("()") else (app_module, False)


def parse_root_path(raw: str) -> str:
    path = raw.strip().rstrip("/")
    if path and (not path.startswith("/") or any(ord(char) < 33 for char in path)):
        raise ValueError("a URL path prefix starting with /, e.g. /api")
    return path


def parse_server_args(raw: str) -> list[str]:
    import shlex  # only when set: shlex brings re and enum along

    try:
        return shlex.split(raw)
    except ValueError as error:
        raise ValueError(f"arguments as a POSIX shell splits them (never run by one): {error}") from None


def parse_reload_delay(raw: str) -> float:
    accepted = "seconds from 0 to 3600, fractions allowed (e.g. 0.25)"
    text = raw.strip()
    whole, _, fraction = text.partition(".")
    if not (text.isascii() and (whole + fraction).isdigit()):
        raise ValueError(accepted)
    value = float(text)
    if not 0 <= value <= 3600:
        raise ValueError(accepted)
    return value


def split_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_address(raw: str) -> str:
    """One listening address: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N."""
    text = raw.strip()
    accepted = "HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N"
    if text.startswith("unix:"):
        if len(text) == len("unix:"):
            raise ValueError(accepted)
        return text
    if text.startswith("fd://"):
        _parse_int(text[len("fd://") :], 0, 65535)
        return text
    host, port = split_host_port(text)
    if not host or port is None:
        raise ValueError(accepted)
    return text


def split_host_port(address: str) -> tuple[str, int | None]:
    """'h:80' -> ('h', 80); '[::1]:80' -> ('::1', 80); anything unusable -> ('', None)."""
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            return "", None
        port_text = rest[1:]
    else:
        host, colon, port_text = address.rpartition(":")
        if not colon or ":" in host:
            return "", None
    try:
        return host, parse_port(port_text)
    except ValueError:
        return "", None


def parse_address_list(raw: str) -> list[str]:
    addresses = split_list(raw)
    if not addresses:
        raise ValueError("one or more comma-separated HOST:PORT addresses")
    return [parse_address(address) for address in addresses]


def parse_host(raw: str) -> str:
    host = raw.strip()
    if not host or any(char in host for char in " /[]"):
        raise ValueError("a host name or IP address such as 0.0.0.0 or ::")
    return host


def parse_path(raw: str) -> str:
    return raw.strip()


def parse_path_list(raw: str) -> list[str]:
    return split_list(raw)


def parse_http_path(raw: str) -> str:
    path = raw.strip()
    if not path.startswith("/") or any(ord(char) < 33 for char in path):
        raise ValueError("a URL path starting with / and without spaces")
    return path


# --------------------------------------------------------------------------
# The table: every environment variable, declared once. Parsing, --help, the
# README's table, the per-server options and flags, and the "not supported by
# SERVER=x" errors all come from it.
# --------------------------------------------------------------------------


class To:
    """What a setting becomes under one server: its config-file key and its command-line flag.

    A missing key means the server has no config file (Uvicorn, Granian); a
    missing flag means the setting needs the config file, and `no_flag` says
    why. `default` is the value this server gets when the variable is unset.
    `convert` turns the parsed value into this server's unit or range; its
    ValueError says what the server accepts, and `note` says it in the README.
    """

    __slots__ = ("convert", "default", "flag", "key", "no_flag", "note")

    def __init__(
        self,
        key: str | None = None,
        flag: str | None = None,
        default: Any = None,
        no_flag: str = "",
        convert: Callable[[Any], Any] | None = None,
        note: str = "",
    ) -> None:
        self.key = key
        self.flag = flag
        self.default = default
        self.no_flag = no_flag
        self.convert = convert
        self.note = note


class Var:
    """One environment variable.

    `to` maps a server to what the value becomes there, for the settings that
    pass through unchanged (paths made absolute when `is_path`). Settings the
    planners compute from (workers, binds, logging) have no `to`. `servers`
    lists where the variable may be set at all; elsewhere setting it is an error.
    """

    __slots__ = (
        "aliases",
        "default",
        "empty_is_value",
        "group",
        "help",
        "is_path",
        "name",
        "parse",
        "servers",
        "shown",
        "to",
        "via",
    )

    def __init__(
        self,
        name: str,
        parse: Callable[[str], Any],
        default: str | None,
        help: str,
        group: str,
        shown: str = "",
        aliases: tuple[str, ...] = (),
        empty_is_value: bool = False,
        to: Mapping[str, To] | None = None,
        servers: tuple[str, ...] = SERVERS,
        is_path: bool = False,
        via: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.parse = parse
        self.default = default
        self.shown = shown or (f"`{default}`" if default is not None else "unset")
        self.help = help
        self.group = group
        self.aliases = aliases
        self.empty_is_value = empty_is_value
        self.to = dict(to or {})
        self.servers = servers
        self.is_path = is_path
        self.via = via or {}  # how a server without a `to` entry gets the setting, in words

    @property
    def attribute(self) -> str:
        return self.name.lower()


APP = "Which server, which app"
WORKERS = "Workers"
LISTEN = "Where it listens"
TIMES = "Time limits"
LOGS = "Logs"
CLASSES = "Worker class and config files"
PRESTART = "Pre-start and health check"
METRICS = "Metrics and traces"


# Granian's units and ranges for settings it takes under another name.
GRANIAN_MAX_KILL_TIMEOUT = 1800
GRANIAN_MIN_BACKLOG = 128
GRANIAN_MAX_HEADER_TIMEOUT = 60


def granian_kill_timeout(seconds: int) -> int:
    """GRACEFUL_TIMEOUT as --workers-kill-timeout: Granian takes 1 to 1800 s, so no grace (0) is its least, 1 s."""
    if seconds > GRANIAN_MAX_KILL_TIMEOUT:
        raise ValueError(f"0 to {GRANIAN_MAX_KILL_TIMEOUT} seconds under SERVER=granian (its --workers-kill-timeout)")
    return max(seconds, 1)


def granian_max_rss(size: int) -> int:
    """WORKER_MAX_MEMORY as --workers-max-rss, which counts whole MiB: rounded up."""
    return -(-size // (1 << 20))


def granian_backlog(count: int) -> int:
    if count < GRANIAN_MIN_BACKLOG:
        raise ValueError(f"{GRANIAN_MIN_BACKLOG} to {MAX_BACKLOG} under SERVER=granian (its smallest --backlog)")
    return count


def granian_reload_tick(seconds: float) -> int:
    """RELOAD_DELAY as --reload-tick, in milliseconds, which Granian takes from 50 to 5000."""
    milliseconds = round(seconds * 1000)
    if not 50 <= milliseconds <= 5000:
        raise ValueError("0.05 to 5 seconds under SERVER=granian (its --reload-tick)")
    return milliseconds


def granian_keep_alive(seconds: int) -> int | None:
    """KEEP_ALIVE as --http1-header-read-timeout (ms): Granian closes an idle keep-alive connection when
    the next request's headers have not come in that long. 0 turns keep-alive off (the planner's flag)."""
    if seconds > GRANIAN_MAX_HEADER_TIMEOUT:
        raise ValueError(
            f"0 to {GRANIAN_MAX_HEADER_TIMEOUT} seconds under SERVER=granian (its --http1-header-read-timeout)"
        )
    return seconds * 1000 or None


def granian_ignore_patterns(globs: list[str]) -> list[str]:
    """RELOAD_EXCLUDES as --reload-ignore-patterns: Granian (watchfiles) searches these regular
    expressions in the changed file's name, so each glob becomes one anchored at both ends."""
    import fnmatch  # only when set: it brings re along

    if any("/" in glob for glob in globs):
        raise ValueError(
            "file or directory names or glob patterns without / under SERVER=granian (it matches names, not paths)"
        )
    return ["^" + fnmatch.translate(glob) for glob in globs]


# Variables of the images start.py replaces that it does not read, and what to use instead: said in a
# warning line when set, so that a migrated setting is not lost without a word.
NOT_READ = {
    "UVICORN_CONFIG_OPTIONS": "inboard's; put Uvicorn's flags in SERVER_ARGS (SERVER=uvicorn)",
    "LOG_COLORS": "inboard's; log lines carry no colour codes (LOG_FORMAT=text or json)",
}

# fmt: off
VARIABLES = (
    Var("SERVER", parse_server, "gunicorn", "`gunicorn` (Gunicorn master, Uvicorn workers), `uvicorn` (Uvicorn alone, its own `--workers` manager), `hypercorn` or `granian`", APP, aliases=("PROCESS_MANAGER",)),
    Var("APP_MODULE", parse_app_module, None, "the `module:attribute` to serve, or `module:factory()` to serve what a factory without arguments returns; the module must exist on disk", APP, shown="`MODULE_NAME:VARIABLE_NAME`", aliases=("UVICORN_APP",)),
    Var("MODULE_NAME", parse_module_name, None, "module holding the app", APP, shown="`app.main` if `app/main.py` exists, else `main` if `main.py` exists"),
    Var("VARIABLE_NAME", parse_attribute_name, "app", "attribute holding the ASGI app", APP),
    Var("WITH_RELOAD", parse_bool, "false", "development: one process, restart on code change (Uvicorn’s reloader for gunicorn/uvicorn, the server’s own for hypercorn and granian; granian needs `granian[reload]`)", APP),
    Var("RELOAD_DIRS", parse_path_list, None, "comma-separated directories to watch (Uvicorn, Granian; Hypercorn watches the loaded modules)", APP, shown="app directory"),
    Var("RELOAD_INCLUDES", parse_path_list, None, "with `WITH_RELOAD`: comma-separated glob patterns of files to watch", APP, servers=("gunicorn", "uvicorn"),
        to={"uvicorn": To(flag="--reload-include")}),
    Var("RELOAD_EXCLUDES", parse_path_list, None, "with `WITH_RELOAD`: comma-separated glob patterns of files not to watch (Granian: names, not paths)", APP, servers=("gunicorn", "uvicorn", "granian"),
        to={"uvicorn": To(flag="--reload-exclude"), "granian": To(flag="--reload-ignore-patterns", convert=granian_ignore_patterns, note="each glob as a regex on file names; a plain name also `--reload-ignore-dirs`")}),
    Var("RELOAD_DELAY", parse_reload_delay, None, "with `WITH_RELOAD`: seconds between checks for changes", APP, shown="the server’s own", servers=("gunicorn", "uvicorn", "granian"),
        to={"uvicorn": To(flag="--reload-delay"), "granian": To(flag="--reload-tick", convert=granian_reload_tick, note="in ms, 0.05–5 s")}),
    Var("ROOT_PATH", parse_root_path, None, "the path prefix a proxy strips before the app sees the request (`/api`); reaches the app as the ASGI scope’s `root_path`", APP,
        to={"uvicorn": To(flag="--root-path"), "hypercorn": To("root_path", "--root-path"), "granian": To(flag="--url-path-prefix")}, via={"gunicorn": "the launcher’s Uvicorn worker class"}),
    Var("WEB_CONCURRENCY", parse_worker_count, None, "exact number of worker processes (1–4096); wins over the computed count, not over `MAX_WORKERS`", WORKERS),
    Var("WORKERS_PER_CORE", parse_workers_per_core, "1", "workers per effective CPU (above 0, at most 64, fractions allowed)", WORKERS),
    Var("MAX_WORKERS", parse_worker_count, None, "upper bound on every count, `WEB_CONCURRENCY` included (1–4096)", WORKERS),
    Var("PYTHON_CPU_COUNT", parse_cpu_count, None, "overrides the effective CPU count (as in CPython 3.13)", WORKERS),
    Var("CPU_REQUEST", parse_cpu_request, None, "the container’s CPU request (`500m`, `2`, `1.5`), as Kubernetes’ Downward API gives it (`resourceFieldRef: {resource: requests.cpu}`): counted like a CPU quota (rounded up, at most the CPUs in the affinity mask) when there is no quota; a quota wins, `PYTHON_CPU_COUNT` wins over both", WORKERS),
    Var("PRELOAD_APP", parse_bool, "false", "Gunicorn only: import the app in the master before forking the workers and freeze its objects (`gc.freeze()`), so that workers share its memory copy-on-write; not with `WITH_RELOAD` (see “Preloading the app”)", WORKERS, servers=("gunicorn",),
        to={"gunicorn": To("preload_app", "--preload")}),
    Var("WORKER_MEMORY", parse_memory, None, "memory one worker needs (`256M`, `1G`, `512Mi`, or bytes; K/M/G are powers of 1024, as Docker reads them): the computed count is then at most the container’s memory limit ÷ this, at least 1", WORKERS),
    Var("WORKER_MAX_MEMORY", parse_memory, None, "a worker whose resident memory (RSS) stays above this size (`WORKER_MEMORY`’s syntax) for 3 checks 10 s apart is replaced gracefully, one worker at a time (see “Recycling workers”)", WORKERS,
        to={"granian": To(flag="--workers-max-rss", convert=granian_max_rss, note="in MiB, rounded up, with `--rss-samples 3 --rss-sample-interval 10`")},
        via={"gunicorn": "the launcher’s worker keeper", "uvicorn": "the launcher’s worker keeper", "hypercorn": "the launcher’s worker keeper"}),
    Var("WORKER_LIFETIME", parse_worker_lifetime, None, f"seconds (at least {MIN_WORKER_LIFETIME}) after which a worker is replaced gracefully, one at a time; each worker’s lifetime gets a random jitter of up to 10 % (not under Granian)", WORKERS,
        to={"granian": To(flag="--workers-lifetime", note="no jitter")},
        via={"gunicorn": "the launcher’s worker keeper", "uvicorn": "the launcher’s worker keeper", "hypercorn": "the launcher’s worker keeper"}),
    Var("HOST", parse_host, "0.0.0.0", "address inside the container", LISTEN),
    Var("PORT", parse_port, "80", "plain-HTTP port; setting both names to different values is an error", LISTEN, aliases=("TCP_PORT",)),
    Var("BIND", parse_address_list, None, "address(es) actually bound, comma-separated: `HOST:PORT`, `[IPv6]:PORT`, `unix:PATH`, `fd://N`", LISTEN, shown="`HOST:PORT` (`HOST:SSL_PORT` when `USE_SSL`)"),
    Var("USE_SSL", parse_bool, "false", "serve TLS on `SSL_PORT`; requires `CERTFILE` and `KEYFILE`", LISTEN),
    Var("USE_TCP", parse_bool, None, "with `USE_SSL`: also serve plain HTTP on `HOST:PORT` (Hypercorn’s `INSECURE_BIND`; setting it true under another server is an error)", LISTEN, shown="`true` under Hypercorn"),
    Var("SSL_PORT", parse_port, "443", "TLS port", LISTEN),
    Var("INSECURE_BIND", parse_address_list, None, "Hypercorn’s plain listener beside the TLS one", LISTEN, shown="`HOST:PORT` when `USE_SSL` and `USE_TCP`", servers=("hypercorn",)),
    Var("QUIC_BIND", parse_address_list, None, "Hypercorn HTTP/3 listener (needs TLS)", LISTEN, servers=("hypercorn",),
        to={"hypercorn": To("quic_bind", "--quic-bind")}),
    Var("CERTFILE", parse_path, None, "TLS certificate chain (all servers); with `KEYFILE` it turns TLS on", LISTEN, is_path=True,
        to={"gunicorn": To("certfile", "--certfile"), "uvicorn": To(flag="--ssl-certfile"), "hypercorn": To("certfile", "--certfile"), "granian": To(flag="--ssl-certificate")}),
    Var("KEYFILE", parse_path, None, "TLS private key (under Granian not encrypted)", LISTEN, is_path=True,
        to={"gunicorn": To("keyfile", "--keyfile"), "uvicorn": To(flag="--ssl-keyfile"), "hypercorn": To("keyfile", "--keyfile"), "granian": To(flag="--ssl-keyfile")}),
    Var("CA_CERTS", parse_path, None, "CA bundle for client certificates", LISTEN, is_path=True,
        to={"gunicorn": To("ca_certs", "--ca-certs"), "uvicorn": To(flag="--ssl-ca-certs"), "hypercorn": To("ca_certs", "--ca-certs"), "granian": To(flag="--ssl-ca")}),
    Var("CIPHERS", parse_text, None, "TLS cipher string", LISTEN, shown="`ECDHE+AESGCM` under Hypercorn; the server’s own elsewhere", servers=("gunicorn", "uvicorn", "hypercorn"),
        to={"gunicorn": To("ciphers", "--ciphers"), "uvicorn": To(flag="--ssl-ciphers"), "hypercorn": To("ciphers", "--ciphers")}),
    Var("BACKLOG", parse_backlog, None, "pending-connection queue (Granian: at least 128)", LISTEN, shown="the server’s own (2048; 1024 under Granian); `100` under Hypercorn",
        to={"gunicorn": To("backlog", "--backlog"), "uvicorn": To(flag="--backlog"), "hypercorn": To("backlog", "--backlog", default=100), "granian": To(flag="--backlog", convert=granian_backlog, note="at least 128")}),
    Var("FORWARDED_ALLOW_IPS", parse_forwarded_allow_ips, None, "proxies trusted for `X-Forwarded-For`/`-Proto` (addresses, networks, `*`): from a trusted peer they set the scope’s `client` and `scheme`, from any other they are ignored (under Hypercorn and Granian the launcher applies them)", LISTEN, shown="`127.0.0.1,::1`",
        to={"gunicorn": To("forwarded_allow_ips", "--forwarded-allow-ips"), "uvicorn": To(flag="--forwarded-allow-ips")},
        via={"hypercorn": "the launcher’s proxy-headers wrapper", "granian": "the launcher’s proxy-headers wrapper"}),
    Var("HTTP2", parse_http2, None, "`on`: HTTP/2 over TLS (ALPN, beside HTTP/1.1) and prior-knowledge cleartext HTTP/2 (h2c) beside HTTP/1.1 on the same port, for a proxy in front (Gunicorn’s own workers: from `FORWARDED_ALLOW_IPS` only); `off`: HTTP/1.1 only (see “HTTP/2”)", LISTEN, shown="`off` under Gunicorn and Uvicorn; the server’s own (`on`) under Hypercorn and Granian",
        to={"hypercorn": To("alpn_protocols", no_flag="Hypercorn has no flag for its ALPN protocols", convert=hypercorn_alpn, note="`off`: `http/1.1` alone, and the launcher refuses h2c in each worker"),
            "granian": To(flag="--http", convert=granian_http, note="`on` is `auto`, `off` is `1`")},
        via={"gunicorn": "Uvicorn workers: `http=zttp`, `http2` (the launcher’s worker class); Gunicorn’s own: `http_protocols`, `http2_cleartext`", "uvicorn": "`--http zttp --http2`"}),
    Var("TIMEOUT", parse_seconds, "120", "Gunicorn: a worker silent this long is killed and replaced", TIMES, servers=("gunicorn", "uvicorn", "hypercorn"),
        to={"gunicorn": To("timeout", "--timeout")}, via={"uvicorn": "no effect", "hypercorn": "no effect"}),
    Var("GRACEFUL_TIMEOUT", parse_seconds, "120", "seconds in-flight requests get to finish on shutdown (all servers; Granian: 1 to 1800, 0 is 1)", TIMES,
        to={"gunicorn": To("graceful_timeout", "--graceful-timeout"), "uvicorn": To(flag="--timeout-graceful-shutdown"), "hypercorn": To("graceful_timeout", "--graceful-timeout"),
            "granian": To(flag="--workers-kill-timeout", convert=granian_kill_timeout, note="1–1800, 0 is 1")}),
    Var("KEEP_ALIVE", parse_seconds, "5", "idle keep-alive seconds (all servers; Granian: at most 60, and it also bounds how long a request’s headers may take)", TIMES,
        to={"gunicorn": To("keepalive", "--keep-alive"), "uvicorn": To(flag="--timeout-keep-alive"), "hypercorn": To("keep_alive_timeout", "--keep-alive"),
            "granian": To(flag="--http1-header-read-timeout", convert=granian_keep_alive, note="in ms, at most 60 s; 0 is `--no-http1-keep-alive`")}),
    Var("MAX_REQUESTS", parse_request_count, None, "recycle a worker after this many requests", TIMES, servers=("gunicorn", "uvicorn", "hypercorn"),
        to={"gunicorn": To("max_requests", "--max-requests"), "uvicorn": To(flag="--limit-max-requests"), "hypercorn": To("max_requests", "--max-requests")}),
    Var("MAX_REQUESTS_JITTER", parse_request_count, None, "random extra requests added to `MAX_REQUESTS` per worker", TIMES, servers=("gunicorn", "uvicorn", "hypercorn"),
        to={"gunicorn": To("max_requests_jitter", "--max-requests-jitter"), "uvicorn": To(flag="--limit-max-requests-jitter"),
            "hypercorn": To("max_requests_jitter", no_flag="Hypercorn's --max-requests-jitter flag sets the wrong value")}),
    Var("LOG_LEVEL", parse_log_level, "info", "`debug info warning error critical` (any case)", LOGS,
        to={"gunicorn": To("loglevel", "--log-level"), "hypercorn": To("loglevel", "--log-level"), "granian": To(flag="--log-level")}, via={"uvicorn": "the logging configuration"}),
    Var("LOG_FORMAT", parse_log_format, "text", "`text` (time, level, logger, pid, message) or `json` (one object per line); applies to start.py, the server, its access log and the app’s own loggers", LOGS),
    Var("ACCESS_LOG", parse_path, "-", "`-` is stdout, else a file path; empty disables the access log at its source", LOGS, empty_is_value=True),
    Var("ERROR_LOG", parse_path, "-", "`-` is stderr, else a file path; empty disables (server and app records)", LOGS, empty_is_value=True),
    Var("LOG_FILTERS", parse_request_paths, None, "comma-separated request paths whose access records are dropped: `/health` drops `/health` and `/health/live`, not `/healthy`", LOGS),
    Var("LOGGING_CONF", parse_path, None, "your own `logging.config.dictConfig`: a `.json` file, or a Python file or module defining `LOGGING_CONFIG`; replaces the built-in configuration", LOGS),
    Var("WORKER_CLASS", parse_text, None, "Gunicorn: any worker class path or `asgi`; Hypercorn: `asyncio`, `uvloop`, `trio`; Granian: its event loop, `auto`, `asyncio`, `uvloop`, `rloop`", CLASSES, shown="Gunicorn: `uvicorn_worker.UvicornWorker` (else `uvicorn.workers.UvicornWorker` if `uvicorn-worker` is absent); Hypercorn: `asyncio`; Granian: its own (`auto`)",
        to={"granian": To(flag="--loop")},
        via={"gunicorn": "`worker_class` / `--worker-class` (the launcher’s subclass with `ROOT_PATH`)", "uvicorn": "no effect", "hypercorn": "`worker_class` / `--worker-class`"}),
    Var("GUNICORN_CONF", parse_path, None, "Gunicorn config file (path, or `python:module`)", CLASSES, shown="`gunicorn_conf.py`, else `app/gunicorn_conf.py`, else the default beside start.py"),
    Var("HYPERCORN_CONF", parse_path, None, "Hypercorn config (a path, `file:` path, `python:` module, or a `.toml` file)", CLASSES, shown="`hypercorn_conf.py`, else `app/hypercorn_conf.py`, else the default beside start.py"),
    Var("GUNICORN_CMD_ARGS", parse_text, None, "read by Gunicorn itself; wins over the config file", CLASSES),
    Var("SERVER_ARGS", parse_server_args, None, "extra arguments for whichever server runs, split as a POSIX shell splits words (never run by one); after start.py’s own, before those given after `--`", CLASSES),
    Var("PROMETHEUS_MULTIPROC_DIR", parse_path, None, "prometheus_client’s multiprocess directory: created if missing and emptied of an earlier run’s metric files before the server starts; a worker that exits is marked dead under every server, so live gauges count live workers only (see “Metrics with several workers”)", METRICS),
    Var("OTEL_AUTO_INSTRUMENT", parse_bool, "false", "OpenTelemetry auto-instrumentation (`opentelemetry-distro`) started in every worker after it is forked or spawned, never in the server’s main process, each worker with its own `service.instance.id`; the SDK reads its own `OTEL_*` variables. A command wrapped in `opentelemetry-instrument`, or the Operator’s injected `sitecustomize`, is moved to the workers the same way (see “OpenTelemetry”)", METRICS),
    Var("PRE_START_PATH", parse_path, None, "run before the server: `.py` with start.py’s interpreter, `.sh` with `sh`, else executed directly; a non-zero exit stops the start with that status; a path given here must exist", PRESTART, shown="`prestart.py`, else `prestart.sh`, if present"),
    Var("HEALTHCHECK_PATH", parse_http_path, "/", "path requested by `start.py --healthcheck` (the image’s HEALTHCHECK); healthy below status 500", PRESTART),
)
# fmt: on


class Settings:
    """The environment, parsed: `values` holds every variable of VARIABLES by name, each also an
    attribute by its lower-case name; derived values are properties."""

    def __init__(self, values: Mapping[str, Any], given: Iterable[str] = (), names: Mapping[str, str] = {}) -> None:
        self.values = dict(values)
        self.given = frozenset(given)  # names set in the environment (not defaults)
        self.names = dict(names)  # the name each given variable was set under, where an alias was used
        self.not_read: list[str] = []  # set variables of NOT_READ
        self.python_path: str | None = None  # PYTHONPATH as given

    def __getattr__(self, attribute: str) -> Any:
        """Each variable of the table by its lower-case name (`settings.web_concurrency`), as Gunicorn's
        Config reads its settings: declared once, in VARIABLES."""
        try:
            return self.__dict__["values"][attribute.upper()]
        except KeyError:
            raise AttributeError(attribute) from None

    def name_of(self, variable: str) -> str:
        """The name the user set a variable under (an alias, say), for messages."""
        return self.names.get(variable, variable)

    @property
    def tls(self) -> bool:
        return bool(self.certfile and self.keyfile)

    @property
    def dual_stack(self) -> bool:
        """Whether a listener takes IPv4 and IPv6 alike (HOST=:: or BIND=[::]:PORT)."""
        return any(split_host_port(address)[0] == "::" for address in self.binds)

    @property
    def effective_server(self) -> str:
        """The server that will run: Gunicorn has no reloader for ASGI workers, so WITH_RELOAD runs Uvicorn's."""
        return "uvicorn" if self.with_reload and self.server == "gunicorn" else self.server

    @property
    def binds(self) -> list[str]:
        """The addresses the server listens on: BIND, else HOST with PORT (SSL_PORT under USE_SSL)."""
        if self.bind:
            return list(self.bind)
        port = self.ssl_port if self.use_ssl else self.port
        return [join_host_port(self.host, port)]

    @property
    def insecure_binds(self) -> list[str]:
        """Hypercorn's plain-HTTP listeners beside TLS ones."""
        if self.insecure_bind:
            return list(self.insecure_bind)
        if self.use_ssl and self.use_tcp is not False:
            return [join_host_port(self.host, self.port)]
        return []


def read_variable(var: Var, environ: Mapping[str, str], problems: list[str]) -> tuple[str | None, str]:
    """The raw value and the name it was found under; aliases must agree with the main name."""
    found = [(name, environ[name]) for name in (var.name, *var.aliases) if name in environ]
    if not var.empty_is_value:
        found = [(name, raw) for name, raw in found if raw.strip()]
    if not found:
        return None, var.name
    name, raw = found[0]
    for other_name, other_raw in found[1:]:
        if other_raw.strip() != raw.strip():
            problems.append(f"{name}={raw!r} and {other_name}={other_raw!r} disagree; set one of them")
            return None, var.name
    return raw, name


def parse_settings(environ: Mapping[str, str], problems: list[str] | None = None) -> Settings:
    """Every variable of the table, parsed, then checked in combination.

    Problems join `problems`; a variable with a bad value takes its default, so
    that the later stages still run and report what they find. Without a list
    to collect into, any problem raises ConfigError.
    """
    collected: list[str] = [] if problems is None else problems
    first = len(collected)
    values: dict[str, Any] = {}
    given = []
    names = {}
    for var in VARIABLES:
        raw, name = read_variable(var, environ, collected)
        if raw is not None:
            try:
                values[var.name] = var.parse(raw)
                given.append(var.name)
                if name != var.name:
                    names[var.name] = name
                continue
            except ValueError as error:
                collected.append(f"{name}={raw!r} is not valid; expected {error}")
        values[var.name] = None if var.default is None else var.parse(var.default)
    settings = Settings(values, given, names)
    settings.not_read = [name for name in NOT_READ if environ.get(name, "").strip()]
    settings.python_path = environ.get("PYTHONPATH")  # where an OpenTelemetry sitecustomize may be injected
    check_combinations(settings, collected)
    # The launcher's default goes to every server (older Gunicorns and Uvicorns trust 127.0.0.1 alone): a
    # proxy reaching HOST=:: over ::1 is as local as one over 127.0.0.1.
    trusted = settings.forwarded_allow_ips or DEFAULT_TRUSTED_PROXIES
    # IPv4 peers of a dual-stack listener appear as ::ffff:a.b.c.d; trust them as written for IPv4
    settings.values["FORWARDED_ALLOW_IPS"] = with_mapped_ipv4(trusted) if settings.dual_stack else trusted
    if problems is None and len(collected) > first:
        raise ConfigError(collected[first:])
    return settings


def check_combinations(settings: Settings, problems: list[str]) -> None:
    """Problems that only show when two settings meet, or a setting meets a server."""
    server = settings.effective_server
    for name in ("WORKER_MAX_MEMORY", "WORKER_LIFETIME"):
        if name in settings.given and settings.with_reload:
            problems.append(f"{name} does not work with WITH_RELOAD=true (one process, no workers to replace)")
    for var in VARIABLES:
        if var.name in settings.given and server not in var.servers:
            if settings.server in var.servers:  # Gunicorn asked for, Uvicorn's reloader runs
                problems.append(
                    f"{var.name} does not work with WITH_RELOAD=true (SERVER={settings.server} then runs Uvicorn's reloader, one process)"
                )
            elif len(var.servers) == 1:
                problems.append(f"{var.name} works only with SERVER={var.servers[0]}, not {server}")
            else:
                where = ", ".join(var.servers[:-1]) + f" and {var.servers[-1]}"
                problems.append(f"{var.name} is not supported by SERVER={server} (it works with SERVER={where})")
        to = var.to.get(server)
        value = settings.values[var.name]
        if to is not None and to.convert is not None and var.name in settings.given and value is not None:
            try:
                to.convert(value)
            except ValueError as error:
                problems.append(f"{var.name}={value!r} is not valid for SERVER={server}; expected {error}")
    if settings.use_ssl and not settings.tls:
        problems.append("USE_SSL=true needs both CERTFILE and KEYFILE (a certificate chain and its private key)")
    if bool(settings.certfile) != bool(settings.keyfile):
        missing = "KEYFILE" if settings.certfile else "CERTFILE"
        problems.append(f"{missing} is missing: CERTFILE and KEYFILE go together")
    if server == "hypercorn":
        shared = [address for address in settings.insecure_binds if address in settings.binds]
        if settings.use_ssl and shared:
            problems.append(
                f"TLS and plain HTTP (USE_TCP) cannot share {', '.join(shared)}: set SSL_PORT and PORT apart"
            )
        if settings.quic_bind and not settings.tls:
            problems.append("QUIC_BIND needs TLS: set CERTFILE and KEYFILE")
        if settings.insecure_bind and not settings.tls:
            problems.append(
                f"INSECURE_BIND={','.join(settings.insecure_bind)!r} is the plain-HTTP listener beside TLS: without CERTFILE and KEYFILE, BIND (or HOST:PORT) is plain HTTP already"
            )
        elif settings.insecure_bind and settings.use_tcp is False:
            problems.append(
                f"INSECURE_BIND={','.join(settings.insecure_bind)!r} is a plain-HTTP listener and USE_TCP=false says there is none: unset one of them"
            )
    elif settings.use_ssl and settings.use_tcp:
        problems.append(f"USE_TCP=true (plain HTTP beside TLS) works only with SERVER=hypercorn, not {server}")
    profile = PROFILES[server]
    if profile.single_bind and settings.bind and len(settings.bind) > 1:
        problems.append(f"BIND={','.join(settings.bind)!r}: SERVER={server} binds one address only")
    if not profile.takes_fd and any(address.startswith("fd://") for address in settings.bind or ()):
        problems.append(
            f"BIND={','.join(settings.bind or ())!r}: SERVER={server} cannot take a listening socket (fd://); give HOST:PORT or unix:PATH"
        )
    if settings.worker_class and profile.worker_classes and settings.worker_class not in profile.worker_classes:
        problems.append(
            f"WORKER_CLASS={settings.worker_class!r} is not valid for SERVER={server}; expected one of {profile.worker_class_words}: {' '.join(profile.worker_classes)}"
        )
    for name in ("RELOAD_INCLUDES", "RELOAD_EXCLUDES", "RELOAD_DELAY"):
        if name in settings.given and not settings.with_reload:
            problems.append(f"{name} needs WITH_RELOAD=true")
    if settings.max_requests_jitter and not settings.max_requests:
        problems.append("MAX_REQUESTS_JITTER needs MAX_REQUESTS")


def with_mapped_ipv4(trusted: str) -> str:
    """Trusted proxies, each IPv4 address or network also as its IPv4-mapped IPv6 form."""
    import ipaddress

    items = split_list(trusted)
    for item in list(items):
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            continue
        if network.version == 4:
            if network.num_addresses == 1:
                items.append(f"::ffff:{network.network_address}")  # as the server writes the peer
            else:
                items.append(str(ipaddress.ip_network(f"::ffff:{network.network_address}/{96 + network.prefixlen}")))
    return ",".join(items)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --------------------------------------------------------------------------
# Probing the machine. Small functions, each taking the root or directory it
# reads, so that tests can hand them fixture trees.
# --------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:
        return None


def _under(root: str, absolute: str) -> str:
    return os.path.join(root, absolute.lstrip("/"))


def affinity_cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def parse_proc_cgroup(text: str) -> list[tuple[str, frozenset[str], str]]:
    """Lines of /proc/self/cgroup as (hierarchy id, controllers, path)."""
    memberships = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            memberships.append((parts[0], frozenset(filter(None, parts[1].split(","))), parts[2]))
    return memberships


def _unescape_mount_field(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def parse_mountinfo(text: str) -> list[tuple[str, str, str, frozenset[str]]]:
    """Lines of /proc/self/mountinfo as (root, mount point, fs type, super options)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        separator = fields.index("-")
        if separator < 5 or len(fields) < separator + 4:
            continue
        mounts.append(
            (
                _unescape_mount_field(fields[3]),
                _unescape_mount_field(fields[4]),
                fields[separator + 1],
                frozenset(fields[separator + 3].split(",")),
            )
        )
    return mounts


def cgroup_directory(root: str, mount_root: str, mount_point: str, cgroup_path: str) -> str:
    """Where this process's cgroup appears in the mounted hierarchy (as the JVM resolves it)."""
    if mount_root == "/":
        relative = cgroup_path
    elif cgroup_path == mount_root or cgroup_path.startswith(mount_root.rstrip("/") + "/"):
        relative = cgroup_path[len(mount_root) :]
    else:
        relative = "/"
    directory = _under(root, mount_point.rstrip("/") + "/" + relative.lstrip("/"))
    return directory if os.path.isdir(directory) else _under(root, mount_point)


def read_cpu_limit(directory: str, version: int) -> float | None:
    """The CPU limit set in one cgroup directory, in CPUs; None when unlimited or unreadable."""
    try:
        if version == 2:
            text = _read(os.path.join(directory, "cpu.max"))
            if text is None:
                return None
            quota_text, period_text = text.split()
            if quota_text == "max":
                return None
        else:
            quota_text = _read(os.path.join(directory, "cpu.cfs_quota_us")) or ""
            period_text = _read(os.path.join(directory, "cpu.cfs_period_us")) or ""
        quota, period = int(quota_text), int(period_text)
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


# cgroup v1 writes "no limit" as the largest page-aligned 64-bit number; anything this large is none.
UNLIMITED_MEMORY = 1 << 60


def read_memory_limit(directory: str, version: int) -> float | None:
    """The memory limit set in one cgroup directory, in bytes; None when unlimited or unreadable."""
    text = _read(os.path.join(directory, "memory.max" if version == 2 else "memory.limit_in_bytes"))
    if text is None or text.strip() == "max":
        return None
    try:
        limit = int(text.strip())
    except ValueError:
        return None
    return float(limit) if 0 < limit < UNLIMITED_MEMORY else None


def lowest_limit_up(
    directory: str, mount_point: str, version: int, read_limit: Callable[[str, int], float | None]
) -> float | None:
    """The lowest limit from `directory` up to and including the mount point."""
    limits = []
    mount_point = os.path.normpath(mount_point)
    current = os.path.normpath(directory)
    while True:
        limit = read_limit(current, version)
        if limit is not None:
            limits.append(limit)
        if current == mount_point or not current.startswith(mount_point + os.sep):
            break
        current = os.path.dirname(current)
    return min(limits) if limits else None


def cgroup_limit(root: str, controller: str, read_limit: Callable[[str, int], float | None]) -> float | None:
    """This process's limit of one controller (cgroup v1 or v2), lowest up the hierarchy; None if none."""
    cgroup_text = _read(_under(root, "/proc/self/cgroup"))
    mountinfo_text = _read(_under(root, "/proc/self/mountinfo"))
    if not cgroup_text or not mountinfo_text:
        return None
    mounts = parse_mountinfo(mountinfo_text)
    limits = []
    for hierarchy, controllers, path in parse_proc_cgroup(cgroup_text):
        if hierarchy == "0" and not controllers:
            version = 2
            candidates = [m for m in mounts if m[2] == "cgroup2"]
        elif controller in controllers:
            version = 1
            candidates = [m for m in mounts if m[2] == "cgroup" and controller in m[3]]
        else:
            continue
        for mount_root, mount_point, _, _ in candidates[:1]:
            directory = cgroup_directory(root, mount_root, mount_point, path)
            limit = lowest_limit_up(directory, _under(root, mount_point), version, read_limit)
            if limit is not None:
                limits.append(limit)
    return min(limits) if limits else None


def cgroup_cpu_limit(root: str = "/") -> float | None:
    """This process's CPU quota in CPUs, lowest up the hierarchy; None if none."""
    return cgroup_limit(root, "cpu", read_cpu_limit)


def cgroup_memory_limit(root: str = "/") -> int | None:
    """This process's memory limit in bytes (v2 memory.max, v1 memory.limit_in_bytes), lowest up the hierarchy."""
    limit = cgroup_limit(root, "memory", read_memory_limit)
    return None if limit is None else int(limit)


class CpuCount:
    """The effective CPU count and where it came from, for the summary line."""

    def __init__(self, count: int, source: str) -> None:
        self.count = count
        self.source = source

    def __repr__(self) -> str:
        return f"CpuCount({self.count}, {self.source!r})"


def effective_cpu_count(settings: Settings, root: str = "/", affinity: int | None = None) -> CpuCount:
    if settings.python_cpu_count:
        return CpuCount(settings.python_cpu_count, "PYTHON_CPU_COUNT")
    available = affinity if affinity is not None else affinity_cpu_count()
    quota = cgroup_cpu_limit(root)
    if quota is not None:
        # said, so that a CPU_REQUEST set beside a limit is not silently without effect
        unused = f"; CPU request {format_millicores(settings.cpu_request)} not counted" if settings.cpu_request else ""
        limited = max(1, -int(-quota // 1))  # ceil without importing math
        if limited < available:
            return CpuCount(limited, f"cgroup quota {quota:g}{unused}")
        return CpuCount(max(1, available), f"CPU affinity{unused}")
    if settings.cpu_request:
        # Without a limit the container may use idle CPUs beyond its request, but the request is what
        # the scheduler reserved for it: workers for the whole node would contend with its neighbours.
        requested = -(-settings.cpu_request // 1000)
        if requested < available:
            return CpuCount(requested, f"CPU request {format_millicores(settings.cpu_request)}")
    return CpuCount(max(1, available), "CPU affinity")


def compute_workers(settings: Settings, cpus: CpuCount, memory_limit: int | None = None) -> tuple[int, str]:
    """The worker count and a sentence saying how it was reached."""
    if settings.with_reload:
        return 1, "1 worker (WITH_RELOAD runs one process)"
    if settings.web_concurrency:
        count = settings.web_concurrency
        if settings.max_workers and count > settings.max_workers:
            # both old images read MAX_WORKERS as "at most", whatever asked for more
            count = settings.max_workers
            return (
                count,
                f"{plural(count, 'worker')} = WEB_CONCURRENCY {settings.web_concurrency}, capped by MAX_WORKERS {count}",
            )
        return count, f"{plural(count, 'worker')} = WEB_CONCURRENCY"
    # A tiny epsilon keeps 0.29 × 100 from flooring to 28.
    product = int(settings.workers_per_core * cpus.count + 1e-9)
    count = max(product, 2)
    reason = f"{cpus.count} CPU{'s' if cpus.count > 1 else ''} ({cpus.source}) × WORKERS_PER_CORE {settings.workers_per_core:g}"
    if product < 2:
        reason += ", raised to the minimum of 2"
    if settings.max_workers and count > settings.max_workers:
        count = settings.max_workers
        reason += f", capped by MAX_WORKERS {settings.max_workers}"
    budget = memory_budget(settings, memory_limit)
    if budget is not None and budget < count:
        return (
            budget,
            f"{budget} worker{'s' if budget > 1 else ''} = {memory_words(settings, memory_limit)} (CPU rule: {count})",
        )
    return count, f"{count} worker{'s' if count > 1 else ''} = {reason}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def memory_budget(settings: Settings, memory_limit: int | None) -> int | None:
    """How many workers of WORKER_MEMORY fit in the memory limit (at least 1); None when either is unknown."""
    if not settings.worker_memory or not memory_limit:
        return None
    return max(1, memory_limit // int(settings.worker_memory))


def memory_words(settings: Settings, memory_limit: int | None) -> str:
    return f"{format_bytes(memory_limit or 0)} limit ÷ WORKER_MEMORY {format_bytes(settings.worker_memory or 0)}"


def worker_warnings(settings: Settings, workers: int, memory_limit: int | None) -> list[str]:
    """What the user asked for that the machine may not hold: said once, before the server starts."""
    if not settings.web_concurrency or settings.with_reload:
        return []
    warnings = []
    if workers < settings.web_concurrency:
        warnings.append(
            f"WEB_CONCURRENCY={settings.web_concurrency} is above MAX_WORKERS={workers}; starting {workers}"
        )
    budget = memory_budget(settings, memory_limit)
    if budget is not None and workers > budget:
        warnings.append(
            f"WEB_CONCURRENCY={workers} exceeds the memory budget ({memory_words(settings, memory_limit)} = {budget}); starting {workers} as asked"
        )
    return warnings


def tcp_migrate_req(root: str = "/") -> bool | None:
    """net.ipv4.tcp_migrate_req: whether connections queued on a closed SO_REUSEPORT listener move to
    another listener of the group instead of being reset. None when unknown (not Linux, no /proc)."""
    text = _read(_under(root, "/proc/sys/net/ipv4/tcp_migrate_req"))
    value = (text or "").strip()
    return value != "0" if value.isascii() and value.isdigit() else None


def module_search_path(app_dir: str) -> list[str]:
    """Where the server will look for the app: the app directory, then this interpreter's path.

    sys.path[0] is start.py's own directory, which the server will not have.
    """
    return [app_dir] + [entry for entry in sys.path[1:] if entry]


def path_finder() -> Any:
    """importlib's PathFinder, taken from sys.meta_path: importing importlib costs a millisecond."""
    for finder in sys.meta_path:
        if getattr(finder, "__name__", "") == "PathFinder":
            return finder
    from importlib.machinery import PathFinder

    return PathFinder


def find_module_spec(name: str, search_path: Sequence[str]) -> Any:
    """The spec of `name` (dotted) found on disk, without importing anything; None if absent."""
    PathFinder = path_finder()

    path: Sequence[str] | None = list(search_path)
    parts = name.split(".")
    spec = None
    for depth in range(1, len(parts) + 1):
        # Only the last name: a dotted one would make importlib look its parent up in sys.modules.
        spec = PathFinder.find_spec(parts[depth - 1], path)
        if spec is None:
            return None
        # typeshed says list | None; a namespace package gives a _NamespacePath
        locations: Any = spec.submodule_search_locations
        if locations is None:
            if depth < len(parts):
                return None  # a plain module has no submodules
        elif not isinstance(locations, list):
            # A namespace package's _NamespacePath recomputes itself from its parent's
            # path; its directories are simply these.
            locations = [os.path.join(entry, parts[depth - 1]) for entry in path or ()]
            locations = [entry for entry in locations if os.path.isdir(entry)]
        path = locations
    return spec


def module_exists(name: str, search_path: Sequence[str]) -> bool:
    return find_module_spec(name, search_path) is not None


def installed_version(distribution: str) -> tuple[int, ...]:
    """The installed version of a distribution as numbers, (0,) when unknown.

    Read from the name of its `.dist-info` directory on sys.path: importlib.metadata
    would cost some 50 ms of start-up to import.
    """
    prefix = distribution.lower().replace("-", "_") + "-"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.endswith(".dist-info") and name.lower().startswith(prefix):
                numbers = []
                for part in name[len(prefix) : -len(".dist-info")].split(".")[:3]:
                    digits = "".join(char for char in part if char.isdigit())
                    if not digits:
                        break
                    numbers.append(int(digits))
                return tuple(numbers) or (0,)
    return (0,)


def is_installed(module: str) -> bool:
    """Whether a top-level module can be imported by this interpreter (nothing is imported)."""
    return path_finder().find_spec(module, [entry for entry in sys.path if entry]) is not None


def digest(text: str) -> str:
    """A 128-bit digest that is the same in every process: two SipHash-1-3 keys.

    It is the hash CPython itself uses for hash-based .pyc files (`_imp`, always
    loaded), so it costs no import; hash() is salted per process and hashlib
    would cost milliseconds of start-up.
    """
    import _imp

    data = text.encode("utf-8", "surrogatepass")
    return _imp.source_hash(0x61736769, data).hex() + _imp.source_hash(0x73746172, data).hex()


def runtime_dir_for(start_path: str) -> str:
    """start.py's private directory for this user and this copy of start.py, in TMPDIR."""
    name = f"asgi-start-{os.getuid()}-{digest(os.path.abspath(start_path))[:16]}"
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", name)


class Facts:
    """What planning needs to know about the machine, gathered in one place."""

    def __init__(
        self,
        app_dir: str,
        start_dir: str,
        cpus: CpuCount,
        installed: Callable[[str], bool],
        search_path: Sequence[str],
        dev_shm: bool,
        version: Callable[[str], tuple[int, ...]] = installed_version,
        runtime_dir: str = "",
        user_logging: dict[str, Any] | None = None,
        memory_limit: int | None = None,
        migrate_req: bool | None = None,
    ) -> None:
        self.app_dir = app_dir
        self.start_dir = start_dir
        self.cpus = cpus
        self.installed = installed
        self.version = version  # only asked where a flag depends on it
        self.search_path = list(search_path)
        self.dev_shm = dev_shm
        # where the servers find the module `asgi_start` and this start's generated files
        self.runtime_dir = runtime_dir or runtime_dir_for(os.path.join(start_dir, "start.py"))
        self.user_logging = user_logging
        self.memory_limit = memory_limit  # bytes, from the cgroup; None when unlimited or unknown
        self.migrate_req = migrate_req  # net.ipv4.tcp_migrate_req, read for Granian only; None when unknown

    def path(self, relative: str) -> str:
        return os.path.normpath(os.path.join(self.app_dir, relative))

    def is_file(self, relative: str) -> bool:
        return os.path.isfile(self.path(relative))

    def generated(self, kind: str, content: str) -> str:
        """Where a generated file goes: named by its content, so that servers started
        with other settings (or workers spawned later) never read each other's."""
        return os.path.join(self.runtime_dir, f"{kind}-{digest(content)[:32]}.json")


def launcher_path() -> str:
    """This file's source path (also when run from its compiled bytecode)."""
    path = os.path.abspath(__file__)
    return path[:-1] if path.endswith(".pyc") else path


def probe_facts(settings: Settings, problems: list[str], app_dir: str | None = None, root: str = "/") -> Facts:
    app_dir = os.path.abspath(app_dir or os.getcwd())
    start_path = launcher_path()
    facts = Facts(
        app_dir=app_dir,
        start_dir=os.path.dirname(start_path),
        cpus=effective_cpu_count(settings, root),
        installed=is_installed,
        search_path=module_search_path(app_dir),
        dev_shm=os.path.isdir(_under(root, "/dev/shm")) and os.access(_under(root, "/dev/shm"), os.W_OK),
        runtime_dir=runtime_dir_for(start_path),
        memory_limit=cgroup_memory_limit(root) if settings.worker_memory else None,
        migrate_req=tcp_migrate_req(root) if settings.effective_server == "granian" else None,
    )
    if not os.path.isfile(start_path):
        # start.pyc alone: what runs inside the servers is written out from start.py's text
        problems.append(
            f"{os.path.abspath(__file__)} needs {start_path} beside it (the servers' part of the launcher is written out from it); copy start.py there, or run start.py"
        )
    facts.user_logging = load_logging_conf(settings, facts, problems)
    return facts


# --------------------------------------------------------------------------
# Logging: one dictConfig for every server, its access log and the app. The
# formatters and the filter it names run inside the servers (last section).
# --------------------------------------------------------------------------

RUNTIME_MODULE = "asgi_start"
# The access message Uvicorn writes, `127.0.0.1:5000 - "GET /?q=1 HTTP/1.1" 200`, in the
# other servers' format languages, so that the access lines read alike whichever runs.
GUNICORN_ACCESS_FORMAT = '%(h)s - "%(r)s" %(s)s'
HYPERCORN_ACCESS_FORMAT = '%(h)s - "%(m)s %(Uq)s HTTP/%(H)s" %(s)s'
# Granian's atoms have the path and the query apart; granian_request_line_filter joins them.
GRANIAN_ACCESS_FORMAT = '%(addr)s - "%(method)s %(path)s %(protocol)s" %(status)d'


def to_json(value: Any, indent: int | None = None, sort_keys: bool = False, _depth: int = 0) -> str:
    """JSON for start.py's own output, without importing json (which brings re and enum along).

    Plain data only, as json.dumps would write it with ensure_ascii; TypeError otherwise.
    """
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        import math

        if not math.isfinite(value):
            raise TypeError("not a JSON number")
        return repr(value)
    if isinstance(value, str):
        return json_string(value)
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("JSON object keys must be strings")
        pairs = sorted(value.items()) if sort_keys else value.items()
        items = [f"{json_string(key)}: {to_json(item, indent, sort_keys, _depth + 1)}" for key, item in pairs]
        brackets = "{}"
    elif isinstance(value, (list, tuple)):
        items = [to_json(item, indent, sort_keys, _depth + 1) for item in value]
        brackets = "[]"
    else:
        raise TypeError(f"{type(value).__name__} is not plain data")
    if not items:
        return brackets
    if indent is None:
        return brackets[0] + ", ".join(items) + brackets[1]
    inner = "\n" + " " * (indent * (_depth + 1))
    return brackets[0] + inner + ("," + inner).join(items) + "\n" + " " * (indent * _depth) + brackets[1]


JSON_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def json_string(text: str) -> str:
    parts = ['"']
    for char in text:
        code = ord(char)
        if char in JSON_SHORT_ESCAPES:
            parts.append(JSON_SHORT_ESCAPES[char])
        elif 0x20 <= code < 0x7F:
            parts.append(char)
        elif code > 0xFFFF:  # a surrogate pair, as ensure_ascii writes it
            code -= 0x10000
            parts.append(f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}")
        else:
            parts.append(f"\\u{code:04x}")
    parts.append('"')
    return "".join(parts)


def logging_dict(settings: Settings, facts: Facts) -> dict[str, Any]:
    """The built-in logging configuration: LOG_FORMAT, ACCESS_LOG, ERROR_LOG, LOG_LEVEL, LOG_FILTERS."""
    if settings.log_format == "json":
        formatter: dict[str, Any] = {"()": f"{RUNTIME_MODULE}.json_formatter"}
    else:
        formatter = {"()": f"{RUNTIME_MODULE}.text_formatter"}
    handlers: dict[str, Any] = {"error": log_handler(log_target(settings.error_log, facts), "ext://sys.stderr")}
    access = log_target(settings.access_log, facts)
    if access is not None:
        handlers["access"] = log_handler(access, "ext://sys.stdout", buffered=True)
        if settings.log_filters:
            handlers["access"]["filters"] = ["paths"]
    level = settings.log_level.upper()
    loggers: dict[str, Any] = {}
    for profile in PROFILES.values():
        # A server that sets its logger's level from its own `loglevel` (LOG_LEVEL unless GUNICORN_CMD_ARGS
        # or the user's config file says otherwise) does so just before it applies this dictionary; a level
        # here would overrule theirs. Uvicorn's worker under Gunicorn copies gunicorn.error's level.
        levelled = {} if profile.self_levelled else {"level": level}
        loggers[profile.error_logger] = {**levelled, "handlers": ["error"], "propagate": False}
    # The access log is its own switch (ACCESS_LOG), whatever LOG_LEVEL says; without a
    # handler and without propagation, Uvicorn does not even build the record.
    loggers.update(
        {
            name: {"level": "INFO", "handlers": ["access"] if access else [], "propagate": False}
            for name in ACCESS_LOGGERS
        }
    )
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"asgi_start": formatter},
        "handlers": handlers,
        "loggers": loggers,
        "root": {"level": level, "handlers": ["error"]},
    }
    if settings.log_filters:
        config["filters"] = {"paths": {"()": f"{RUNTIME_MODULE}.access_path_filter", "paths": settings.log_filters}}
    if access:
        config.setdefault("filters", {})["request_line"] = {"()": f"{RUNTIME_MODULE}.granian_request_line_filter"}
        loggers["granian.access"]["filters"] = ["request_line"]
    return config


def log_target(value: str, facts: Facts) -> str | None:
    """'-' stays '-', a path becomes absolute, empty means disabled (None)."""
    if not value:
        return None
    return value if value == "-" else facts.path(value)


def load_logging_conf(settings: Settings, facts: Facts, problems: list[str]) -> dict[str, Any] | None:
    """The user's LOGGING_CONF as a dict, checked: JSON file, Python file or module defining LOGGING_CONFIG.

    A Python config runs here, once per start, like a server runs its config
    file, so that a broken one stops the start with exit status 2 instead of
    failing in a worker. The servers get the resulting dictionary, not the file.
    """
    given = settings.logging_conf
    if not given:
        return None
    name = f"LOGGING_CONF={given!r}"
    path = facts.path(given)
    if not os.path.isfile(path):
        spec_path = module_origin(given, facts.search_path) if _is_dotted_name(given) else None
        if spec_path is None:
            problems.append(f"{name}: no such file {path}, and no module of that name")
            return None
        path = spec_path
    try:
        if path.endswith(".json"):
            import json

            with open(path, encoding="utf-8") as file:
                config = json.load(file)
        else:
            import contextlib
            import runpy

            # what it prints must not mix with start.py's own stdout (--dry-run's JSON)
            with contextlib.redirect_stdout(sys.stderr):
                namespace = runpy.run_path(path, run_name="asgi_start_logging_conf")
            if "LOGGING_CONFIG" not in namespace:
                problems.append(f"{name}: {path} does not define LOGGING_CONFIG")
                return None
            config = namespace["LOGGING_CONFIG"]
    except Exception as error:  # a user's file can fail in any way; the start must not
        detail = str(error).splitlines()[0] if str(error) else ""
        problems.append(f"{name}: cannot load {path}: {type(error).__name__}: {detail}")
        return None
    if not isinstance(config, dict) or config.get("version") != 1:
        problems.append(f"{name}: expected a logging.config.dictConfig dictionary with version 1")
        return None
    try:
        to_json(config)
    except TypeError:
        problems.append(
            f'{name}: every value must be plain data (name classes by import string, e.g. "()": "pkg.mod.Formatter")'
        )
        return None
    return config


def module_origin(name: str, search_path: Sequence[str]) -> str | None:
    """The source file of a module found on disk (nothing imported), or None."""
    origin = getattr(find_module_spec(name, search_path), "origin", None)
    return origin if origin and os.path.isfile(origin) else None


def effective_logging(settings: Settings, facts: Facts) -> dict[str, Any]:
    if facts.user_logging is None:
        return logging_dict(settings, facts)
    # Gunicorn lays a configuration over its own defaults key by key; their loggers and
    # root name handlers that a user's configuration replaces. Empty ones mean
    # "nothing" to Gunicorn and are skipped by dictConfig everywhere else.
    return {"loggers": {}, "root": {}, **facts.user_logging}


def logging_file(settings: Settings, facts: Facts) -> tuple[str, str]:
    """The effective logging configuration as JSON, and the file it goes to for servers that take one."""
    content = to_json(effective_logging(settings, facts), indent=1, sort_keys=True)
    return facts.generated("logging", content), content


def launcher_line(log_format: str, level: str, message: str) -> str:
    """One line of start.py's own output, in LOG_FORMAT, as a server's would look."""
    import time

    now = time.time()
    if log_format == "json":
        return to_json({"time": iso_utc(now), "level": level, "logger": PROG, "pid": os.getpid(), "message": message})
    stamp = time.strftime(TEXT_DATE_FORMAT, time.localtime(now))
    return f"{stamp} {level.upper()} {PROG} [{os.getpid()}] {message}"


# --------------------------------------------------------------------------
# Planning: settings + facts -> what to run. Pure: it reads files' presence
# through Facts and returns data; it runs nothing. Problems join one list.
# --------------------------------------------------------------------------


def find_app_module(settings: Settings, facts: Facts, problems: list[str]) -> str:
    where = f"{facts.app_dir} or on the Python path"
    if settings.app_module:
        module = settings.app_module.partition(":")[0]
        if not module_exists(module, facts.search_path):
            problems.append(
                f"{settings.name_of('APP_MODULE')}={settings.app_module!r}: module {module!r} not found in {where}"
            )
        return str(settings.app_module)
    if settings.module_name:
        if not module_exists(settings.module_name, facts.search_path):
            problems.append(f"MODULE_NAME={settings.module_name!r}: module not found in {where}")
        return f"{settings.module_name}:{settings.variable_name}"
    for relative, module in (("app/main.py", "app.main"), ("main.py", "main")):
        if facts.is_file(relative):
            return f"{module}:{settings.variable_name}"
    problems.append(
        f"no app found: looked for {facts.path('app/main.py')} and {facts.path('main.py')}; set APP_MODULE (e.g. APP_MODULE=mypackage.web:app)"
    )
    return f"main:{settings.variable_name}"


def find_config_file(
    variable: str, given: str | None, default_name: str, facts: Facts, problems: list[str]
) -> str | None:
    """A config file named by `variable`, else one in the app directory, else the default beside start.py."""
    if given:
        prefix, colon, rest = given.partition(":")
        if colon and prefix == "python":
            if not _is_dotted_name(rest) or not module_exists(rest, facts.search_path):
                problems.append(f"{variable}={given!r}: module {rest!r} not found")
            return given
        path = rest if colon and prefix == "file" else given
        if not facts.is_file(path):
            problems.append(f"{variable}={given!r}: no such file {facts.path(path)}")
        return ("file:" if colon and prefix == "file" else "") + facts.path(path)
    for candidate in (default_name, os.path.join("app", default_name)):
        if facts.is_file(candidate):
            return facts.path(candidate)
    beside_start = os.path.join(facts.start_dir, default_name)
    return beside_start if os.path.isfile(beside_start) else None


class UsersConfig:
    """A config file of the user's own: where the server finds it (`file:PATH`, `python:MODULE` or
    `toml:PATH`), its path on disk and its text (read once; None where it cannot be read)."""

    def __init__(self, location: str, path: str | None, text: str | None) -> None:
        self.location, self.path, self.text = location, path, text


def users_config(config_file: str | None, default_name: str, facts: Facts) -> UsersConfig | None:
    """The config file when it is the user's own; None when there is none or it is start.py's default, which
    reads the options start.py hands over (also when it is not beside start.py: the old images kept their
    default where users now put their own)."""
    if config_file is None:
        return None
    if config_file.startswith(("file:", "python:")):
        location = config_file
    else:  # a bare path: Python to Gunicorn; TOML to Hypercorn, which needs `file:` for Python (see plan_hypercorn)
        location = ("toml:" if default_name == "hypercorn_conf.py" else "file:") + config_file
    kind, _, where = location.partition(":")
    path = module_origin(where, facts.search_path) if kind == "python" else where
    text = _read(path) if path else None
    return None if text is not None and OPTIONS_VARIABLE in text else UsersConfig(location, path, text)


# What start.py reads, without running it, from a config file of the user's own: what it reports
# (the worker class, the listeners and the worker count that will really run).
CONFIG_FILE_REPORTS = ("worker_class", "bind", "workers")


def config_assignments(users: UsersConfig, problems: list[str], variable: str, given: str | None) -> dict[str, Any]:
    """Which of CONFIG_FILE_REPORTS the user's config file sets, read without running it (the server runs
    it, once): each to the value the file writes as a literal, else to the words `set by LOCATION`."""
    location, path, text = users.location, users.path, users.text
    kind = location.partition(":")[0]
    if path is None or text is None:
        return {}  # reported by find_config_file, or the server's to report
    computed = f"set by {location}"
    named = f"{variable}={given!r}: {path}" if given else f"{path} ({variable} unset: found in the app directory)"
    if kind == "toml":
        try:
            import tomllib  # type: ignore[import-not-found,unused-ignore]  # novermin -- 3.11+
        except ImportError:  # before 3.11 only the names are known
            return {name: computed for name in CONFIG_FILE_REPORTS if f"\n{name}" in "\n" + text}
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            problems.append(f"{named} is not valid TOML: {error}")
            return {}
        return {name: table[name] for name in CONFIG_FILE_REPORTS if name in table}
    import ast

    try:
        tree = ast.parse(text, path)
    except (SyntaxError, ValueError) as error:
        line = getattr(error, "lineno", None)
        problems.append(
            f"{named} is not valid Python{f' (line {line})' if line else ''}: {getattr(error, 'msg', error)}"
        )
        return {}
    assigned: dict[str, list[Any]] = {}
    pending = list(tree.body)
    while pending:  # module level, through if/try/with/for blocks, not into functions or classes
        node = pending.pop()
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if getattr(target, "id", None) in CONFIG_FILE_REPORTS:
                    assigned.setdefault(getattr(target, "id", ""), []).append(node)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                pending += getattr(node, field, None) or []
    found: dict[str, Any] = {}
    for name, [only, *more] in assigned.items():
        found[name] = computed
        if not more and only in tree.body and isinstance(only, ast.Assign):
            try:
                found[name] = ast.literal_eval(only.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue  # not a literal: computed
    return found


def find_prestart(settings: Settings, facts: Facts, problems: list[str]) -> list[str] | None:
    """The command that runs the pre-start script, or None."""
    if settings.pre_start_path:
        path = facts.path(settings.pre_start_path)
        if not os.path.isfile(path):
            problems.append(f"PRE_START_PATH={settings.pre_start_path!r}: no such file {path}")
            return None
    else:
        found = [facts.path(name) for name in ("prestart.py", "prestart.sh") if facts.is_file(name)]
        if not found:
            return None
        path = found[0]
    if path.endswith(".py"):
        return [sys.executable, path]
    if path.endswith(".sh"):
        return ["sh", path]
    if not os.access(path, os.X_OK):
        problems.append(
            f"PRE_START_PATH={settings.pre_start_path or path!r}: {path} is neither .py, .sh nor executable"
        )
        return None
    return [path]


def check_paths(settings: Settings, facts: Facts, problems: list[str]) -> None:
    for var in VARIABLES:
        value = settings.values[var.name]
        if var.is_path and value and not facts.is_file(value):
            problems.append(f"{var.name}={value!r}: no such file {facts.path(value)}")
    for name in ("ACCESS_LOG", "ERROR_LOG"):
        value = settings.values[name]
        if value and value != "-":
            directory = os.path.dirname(facts.path(value))
            if not os.path.isdir(directory):
                problems.append(f"{name}={value!r}: directory {directory} does not exist")
    for directory in settings.reload_dirs or ():
        if not os.path.isdir(facts.path(directory)):
            problems.append(f"RELOAD_DIRS: {facts.path(directory)} is not a directory")
    metrics = settings.prometheus_multiproc_dir
    if metrics and os.path.lexists(facts.path(metrics)) and not os.path.isdir(facts.path(metrics)):
        problems.append(f"PROMETHEUS_MULTIPROC_DIR={metrics!r}: {facts.path(metrics)} exists and is not a directory")


def require_installed(module: str, facts: Facts, why: str, problems: list[str]) -> bool:
    if facts.installed(module):
        return True
    problems.append(
        f"{why} needs {module}, which is not installed for {sys.executable}: pip install {PACKAGE_OF_MODULE.get(module, module)}"
    )
    return False


def table_options(server: str, settings: Settings, facts: Facts) -> list[Option]:
    """The one-to-one settings of the table, as this server's options, in the table's order."""
    options = []
    for var in VARIABLES:
        to = var.to.get(server)
        if to is None:
            continue
        value = settings.values[var.name]
        if value is None or value is False:
            value = to.default
        elif var.is_path:
            value = facts.path(value)
        if value is not None and value is not False and to.convert is not None:
            try:
                value = to.convert(value)
            except ValueError:  # reported by check_combinations
                value = None
        if value is not None and value is not False:
            options.append((to.key, to.flag, value))
    return options


def as_config(options: Iterable[Option]) -> dict[str, Any]:
    return {key: value for key, _, value in options if key}


def as_flags(options: Iterable[Option], problems: list[str], server: str) -> list[str]:
    """Options as command-line flags; one that has no flag is a problem (it needs the config file)."""
    argv: list[str] = []
    for key, flag, value in options:
        if value is None or value is False:
            continue
        if flag is None:
            problems.append(config_only_problem(server, key))
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    return argv


def config_only_problem(server: str, key: str | None) -> str:
    for var in VARIABLES:
        to = var.to.get(server)
        if to is not None and to.key == key:
            return (
                f"{var.name} needs a {server.capitalize()} config file ({server}_conf.py beside start.py): {to.no_flag}"
            )
    return f"{server}: setting {key} needs a config file"


# Uvicorn's worker classes for Gunicorn, and the launcher's subclasses that give them ROOT_PATH.
UVICORN_WORKERS = {
    "uvicorn_worker.UvicornWorker": "asgi_start.UvicornWorker",
    "uvicorn_worker.UvicornH11Worker": "asgi_start.UvicornH11Worker",
    "uvicorn.workers.UvicornWorker": "asgi_start.UvicornWorker",
    "uvicorn.workers.UvicornH11Worker": "asgi_start.UvicornH11Worker",
}


def gunicorn_worker_class(settings: Settings, facts: Facts, problems: list[str]) -> str:
    """The worker class start.py gives Gunicorn: WORKER_CLASS or Uvicorn's, and with ROOT_PATH the launcher's
    subclass of it (Gunicorn and uvicorn-worker have no setting for the ASGI root_path)."""
    return with_root_path(resolve_gunicorn_worker_class(settings, facts, problems), "WORKER_CLASS", settings, problems)


def with_root_path(worker_class: str, source: str, settings: Settings, problems: list[str]) -> str:
    """The launcher's subclass of a Uvicorn worker class where ROOT_PATH or HTTP2=on needs it."""
    if not (settings.root_path or settings.http2 == "on") or worker_class in UVICORN_WORKERS.values():
        return worker_class
    if worker_class not in UVICORN_WORKERS:
        if settings.root_path:
            problems.append(
                f"ROOT_PATH under SERVER=gunicorn needs one of Uvicorn's worker classes, not {worker_class!r} ({source})"
            )
        return worker_class
    return UVICORN_WORKERS[worker_class]


def worker_class_in_args(raw: str | None) -> str | None:
    """The worker class GUNICORN_CMD_ARGS names (-k X, -kX, --worker-class X, --worker-class=X), if any."""
    if not raw or ("-k" not in raw and "--worker-class" not in raw):
        return None
    words = parse_server_args(raw)
    found = None
    for index, word in enumerate(words):
        if word in ("-k", "--worker-class") and index + 1 < len(words):
            found = words[index + 1]
        elif word.startswith("--worker-class="):
            found = word.partition("=")[2]
        elif word.startswith("-k") and not word.startswith("--"):
            found = word[2:]
    return found


def resolve_gunicorn_worker_class(settings: Settings, facts: Facts, problems: list[str]) -> str:
    if settings.worker_class:
        name = str(settings.worker_class).strip()
        if name in GUNICORN_WORKER_ALIASES:
            return name
        if not _is_dotted_name(name) or "." not in name:
            problems.append(
                f"WORKER_CLASS={name!r} is not valid; expected a class path such as uvicorn_worker.UvicornWorker, or one of {' '.join(GUNICORN_WORKER_ALIASES)}"
            )
            return name
        top = name.partition(".")[0]
        if not facts.installed(top):
            problems.append(
                f"WORKER_CLASS={name!r}: module {top!r} is not installed (pip install {PACKAGE_OF_MODULE.get(top, top)})"
            )
        return name
    if facts.installed("uvicorn_worker"):
        return "uvicorn_worker.UvicornWorker"
    if facts.installed("uvicorn"):
        return "uvicorn.workers.UvicornWorker"
    problems.append("SERVER=gunicorn needs Uvicorn workers: pip install uvicorn-worker")
    return "uvicorn_worker.UvicornWorker"


# Gunicorn's own worker classes that speak HTTP/2 (Gunicorn >= 26.2 with h2: ALPN, and h2c from trusted peers).
GUNICORN_HTTP2_WORKERS = ("asgi", "gthread", "gevent", "eventlet")
UVICORN_HTTP2_VERSION = (0, 53)  # --http zttp --http2
GUNICORN_HTTP2_VERSION = (26, 2)  # http_protocols with http2_cleartext


def uvicorn_http2(facts: Facts, where: str, problems: list[str]) -> None:
    """HTTP2=on through Uvicorn: its version and the zttp package, else one problem line each."""
    version = facts.version("uvicorn")
    if (0,) < version < UVICORN_HTTP2_VERSION:
        problems.append(
            f"HTTP2=on {where} needs uvicorn 0.53 or newer (installed: {'.'.join(map(str, version))}): pip install 'uvicorn>=0.53' zttp"
        )
    require_installed("zttp", facts, f"HTTP2=on {where}", problems)


def gunicorn_http2(settings: Settings, facts: Facts, launch: Launch, problems: list[str]) -> list[Option]:
    """HTTP2=on under Gunicorn: Uvicorn's HTTP/2 in the launcher's Uvicorn worker class, or Gunicorn's own
    (h2 and h2c by prior knowledge or Upgrade beside HTTP/1.1; h2c only from FORWARDED_ALLOW_IPS)."""
    if settings.http2 != "on":
        return []
    worker_class = str(launch.worker_class)
    if worker_class in UVICORN_WORKERS.values():
        uvicorn_http2(facts, "under SERVER=gunicorn (Uvicorn workers)", problems)
        launch.env[HTTP2_VARIABLE] = "on"
        return []
    short = worker_class.rpartition(".")[2].lower()
    own = worker_class in GUNICORN_HTTP2_WORKERS or (
        worker_class.startswith("gunicorn.workers.") and not short.startswith("sync")
    )
    if not own:
        problems.append(
            f"HTTP2=on under SERVER=gunicorn needs Uvicorn's worker class or one of Gunicorn's {', '.join(GUNICORN_HTTP2_WORKERS)}; {worker_class!r} speaks HTTP/1.1 only (or set HTTP2=off)"
        )
        return []
    version = facts.version("gunicorn")
    if (0,) < version < GUNICORN_HTTP2_VERSION:
        problems.append(
            f"HTTP2=on with Gunicorn's {worker_class} worker needs gunicorn 26.2 or newer (installed: {'.'.join(map(str, version))}): pip install 'gunicorn[http2]>=26.2'"
        )
    require_installed("h2", facts, f"HTTP2=on with Gunicorn's {worker_class} worker", problems)
    return [("http_protocols", "--http-protocols", "h2,h1"), ("http2_cleartext", "--http2-cleartext", "both")]


def gunicorn_options(settings: Settings, facts: Facts, workers: int, worker_class: str) -> list[Option]:
    """Everything Gunicorn is told, as options: what the planner computes, then the table's."""
    options: list[Option] = [
        ("bind", "--bind", settings.binds),
        ("workers", "--workers", workers),
        ("worker_class", "--worker-class", worker_class),
        # Where records go and how they look is the logging configuration's business;
        # accesslog only switches the access log on or off at its source.
        ("accesslog", "--access-logfile", "-" if settings.access_log else None),
        ("access_log_format", "--access-logformat", GUNICORN_ACCESS_FORMAT),
        ("errorlog", "--error-logfile", "-"),
        # Gunicorn >= 25.1 opens a control socket under $HOME or $XDG_RUNTIME_DIR by
        # default; two instances share the path and read-only or home-less containers
        # warn. The launcher does not use it, so it is off unless asked for.
        ("control_socket_disable", "--no-control-socket", True),
    ]
    if facts.dev_shm:
        # The heartbeat file on an overlay filesystem can block workers (Gunicorn's FAQ).
        options.append(("worker_tmp_dir", "--worker-tmp-dir", "/dev/shm"))
    return options + table_options("gunicorn", settings, facts)


def hypercorn_options(settings: Settings, facts: Facts, workers: int) -> list[Option]:
    options: list[Option] = [
        ("bind", "--bind", settings.binds),
        ("insecure_bind", "--insecure-bind", settings.insecure_binds),  # a list: Hypercorn iterates it
        ("workers", "--workers", workers),
        ("worker_class", "--worker-class", settings.worker_class or "asyncio"),
        ("accesslog", "--access-logfile", "-" if settings.access_log else None),
        ("access_log_format", "--access-logformat", HYPERCORN_ACCESS_FORMAT),
        ("errorlog", "--error-logfile", "-" if settings.error_log else None),
        ("use_reloader", "--reload", settings.with_reload),
    ]
    return options + table_options("hypercorn", settings, facts)


def quote_for_gunicorn(argument: str) -> str:
    # Gunicorn splits GUNICORN_CMD_ARGS with shlex.split (never a shell); quote for that.
    if argument and all(char.isalnum() or char in "-_./:=,[]@%+" for char in argument):
        return argument
    return "'" + argument.replace("'", "'\"'\"'") + "'"


class Plan:
    """Everything start.py will do, as data: each field declared once, below. `--dry-run` prints them in
    this order (as_dict), the few that are not plain data as as_dict says."""

    server: str
    requested_server: str
    argv: list[str]
    env: dict[str, str]
    app_module: str
    workers: int
    workers_reason: str
    cpus: CpuCount
    memory_limit: int | None
    bind: list[str]
    config_file: str | None
    prestart: list[str] | None
    reload: bool
    log_level: str
    log_format: str
    worker_class: str | None
    prebind: str | None
    runtime_dir: str
    files: dict[str, str]  # path -> content, written by start.py before exec
    warnings: list[str]  # said before the server starts
    metrics_dir: str | None  # prometheus_client's, prepared before the server starts
    backlog: int  # of the listener start.py binds itself (prebind)

    def __init__(self, **fields: Any) -> None:
        declared = type(self).__annotations__.keys()
        if fields.keys() != declared:
            raise TypeError(
                f"Plan fields: missing {sorted(declared - fields.keys())}, unknown {sorted(fields.keys() - declared)}"
            )
        self.__dict__.update(fields)

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {}
        for name in type(self).__annotations__:
            value = self.__dict__[name]
            if name == "cpus":
                shown["cpus"], shown["cpus_source"] = value.count, value.source
            elif name == "prestart":
                shown["prestart"], shown["prestart_command"] = (value[-1] if value else None), value
            elif name == "prebind":
                shown["prebound_socket"] = value
            elif name == "files":
                shown["files"] = sorted(value)
            elif name != "backlog":
                shown[name] = value
        return shown

    def summary(self) -> str:
        parts = [self.server]
        if self.worker_class:
            parts[0] += f" ({self.worker_class})"
        if self.server != self.requested_server:
            parts[0] += f" instead of {self.requested_server} (WITH_RELOAD)"
        parts.append(f"app {self.app_module}")
        parts.append(self.workers_reason)
        parts.append("bind " + ", ".join(self.bind))
        parts.append(f"config {self.config_file or 'none (settings on the command line)'}")
        return " | ".join(parts)


class App:
    """What every server's planner is given: the app, the worker count, the logging file, extra arguments."""

    def __init__(self, module: str, workers: int, log_file: str, extra: Sequence[str] = ()) -> None:
        self.module = module
        self.workers = workers
        self.log_file = log_file
        self.extra = list(extra)


class Launch:
    """What one server's planner decides: the server's module and its arguments, and what start.py must
    prepare for it. The hand-over (hand_over in the runtime module) runs the module with the arguments."""

    def __init__(self, module: str, argv: list[str] | None = None) -> None:
        self.module = module
        self.argv = argv or []
        self.hand_over_flags: list[str] = []
        self.env: dict[str, str] = {}
        self.files: dict[str, str] = {}
        self.config_file: str | None = None
        self.worker_class: str | None = None
        self.prebind: str | None = None
        self.warnings: list[str] = []
        self.file_sets: dict[str, Any] = {}  # what the user's own config file sets of CONFIG_FILE_REPORTS


def gunicorn_hooks(settings: Settings) -> dict[str, str]:
    """Gunicorn's server hooks, by the name of their function in the module `asgi_start`.

    A hook is code, so it can only reach Gunicorn through a config file, which
    looks the names up (JSON carries names, not functions).
    """
    hooks = {}
    if settings.prometheus_multiproc_dir:
        hooks["child_exit"] = "gunicorn_child_exit"
    if settings.preload_app:
        hooks["when_ready"] = "gunicorn_when_ready"
    return hooks


# The directory of opentelemetry-instrumentation's sitecustomize, which `opentelemetry-instrument` and the
# OpenTelemetry Operator put on PYTHONPATH so that every Python process instruments itself at start.
OTEL_SITECUSTOMIZE_DIR = os.path.join("opentelemetry", "instrumentation", "auto_instrumentation")


def otel_sitecustomize_dirs(python_path: str | None) -> list[str]:
    """The entries of PYTHONPATH holding OpenTelemetry's auto-instrumenting sitecustomize."""
    return [
        entry
        for entry in (python_path or "").split(os.pathsep)
        if os.path.normpath(entry).endswith(os.sep + OTEL_SITECUSTOMIZE_DIR)
        and os.path.isfile(os.path.join(entry, "sitecustomize.py"))
    ]


def observing(settings: Settings, facts: Facts, problems: list[str]) -> dict[str, str]:
    """What the server's processes are told to observe in each worker (see the module asgi_start_observe).

    OpenTelemetry's sitecustomize would start the SDK in the server's main
    process, whose workers then inherit a provider and a resource made before
    the fork (or, spawned, start their own only by chance): it is taken off
    the server's PYTHONPATH, and each worker starts the same auto-instrumentation
    itself, then puts it back for the processes the app starts.
    """
    kinds = ["metrics"] if settings.prometheus_multiproc_dir else []
    env: dict[str, str] = {}
    injected = otel_sitecustomize_dirs(settings.python_path)
    if injected:
        kinds.append("otel")
        env["PYTHONPATH"] = os.pathsep.join(
            entry for entry in (settings.python_path or "").split(os.pathsep) if entry not in injected
        )
        env[OTEL_SITECUSTOMIZE_VARIABLE] = injected[0]
    elif settings.otel_auto_instrument:
        kinds.append("otel")
        if facts.version("opentelemetry-instrumentation") == (0,):
            problems.append(
                f"OTEL_AUTO_INSTRUMENT=true needs opentelemetry-distro, which is not installed for {sys.executable}: "
                "pip install opentelemetry-distro opentelemetry-exporter-otlp"
            )
    if kinds:
        env[OBSERVE_VARIABLE] = ",".join(kinds)
    return env


def config_file_options(server: str, settings: Settings, facts: Facts, options: list[Option]) -> dict[str, Any]:
    """What a config file sets: the options with a key, Gunicorn's hooks by name, the logging dictionary."""
    config = as_config(options)
    if server == "gunicorn":
        config[HOOKS_KEY] = gunicorn_hooks(settings)
    config["logconfig_dict"] = effective_logging(settings, facts)
    return config


def with_users_config(
    config: dict[str, Any],
    users: UsersConfig,
    facts: Facts,
    over: dict[str, Any],
    root_path_workers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The options, with what layered_config needs to lay the user's config file over them."""
    config[USERS_CONFIG_KEY] = users.location
    config[BUILT_IN_LOGGING_KEY] = facts.user_logging is None
    if over:
        config[OVER_USERS_KEY] = over
    if root_path_workers:
        config[ROOT_PATH_WORKERS_KEY] = root_path_workers
    return config


def layered_config_file(facts: Facts) -> str:
    """The config file the server is given when the user has one of their own (see layered_config);
    written with the runtime module (prepare_runtime)."""
    return os.path.join(facts.runtime_dir, LAYERED_CONFIG_NAME)


def hand_over_options(facts: Facts, config: dict[str, Any], launch: Launch) -> None:
    """Give the config file the finished options, so that it translates them instead of planning again."""
    content = to_json(config, indent=1, sort_keys=True)
    path = facts.generated("options", content)
    launch.files[path] = content
    launch.env[OPTIONS_VARIABLE] = path


def plan_gunicorn(settings: Settings, facts: Facts, app: App, problems: list[str]) -> Launch:
    require_installed("gunicorn", facts, "SERVER=gunicorn", problems)
    worker_class = gunicorn_worker_class(settings, facts, problems)
    config_file = find_config_file("GUNICORN_CONF", settings.gunicorn_conf, "gunicorn_conf.py", facts, problems)
    users = users_config(config_file, "gunicorn_conf.py", facts)
    launch = Launch("gunicorn")
    launch.config_file = config_file
    launch.file_sets = config_assignments(users, problems, "GUNICORN_CONF", settings.gunicorn_conf) if users else {}
    # The class that will run: GUNICORN_CMD_ARGS's (Gunicorn reads them last), else WORKER_CLASS, else the
    # user's config file's, else start.py's. With ROOT_PATH, the launcher's subclass of a Uvicorn class;
    # one named in GUNICORN_CMD_ARGS gets it on the command line, which Gunicorn reads after them.
    in_args = worker_class_in_args(settings.gunicorn_cmd_args)
    if in_args:
        launch.worker_class = with_root_path(in_args, "GUNICORN_CMD_ARGS", settings, problems)
        if launch.worker_class != in_args:
            launch.argv += ["--worker-class", launch.worker_class]
    elif users and not settings.worker_class and "worker_class" in launch.file_sets:
        in_file = launch.file_sets["worker_class"]
        computed = not isinstance(in_file, str) or in_file.startswith("set by ")
        launch.worker_class = str(in_file) if computed else with_root_path(in_file, users.location, settings, problems)
    else:
        launch.worker_class = worker_class
    # a worker forked while a stop signal is on its way starts with the default action, as under Granian
    launch.hand_over_flags.append(FORK_GUARD_FLAG)
    if settings.root_path:
        launch.env[ROOT_PATH_VARIABLE] = settings.root_path
    options = gunicorn_options(settings, facts, app.workers, worker_class) + gunicorn_http2(
        settings, facts, launch, problems
    )
    trusted = settings.forwarded_allow_ips or ""
    if "/" in trusted and facts.version("gunicorn") < (24,):
        problems.append(
            f"FORWARDED_ALLOW_IPS={trusted!r}: Gunicorn before 24 takes addresses only, not networks; list the addresses"
        )
    if users:
        launch.argv += ["--config", layered_config_file(facts)]
        config = config_file_options("gunicorn", settings, facts, options)
        over = {"worker_class": worker_class} if settings.worker_class else {}
        root_path_workers = dict(UVICORN_WORKERS) if settings.root_path or settings.http2 == "on" else {}
        hand_over_options(facts, with_users_config(config, users, facts, over, root_path_workers), launch)
    elif config_file:
        # start.py's default: it sets the options handed over; GUNICORN_CMD_ARGS can still override any.
        launch.argv += ["--config", config_file]
        hand_over_options(facts, config_file_options("gunicorn", settings, facts, options), launch)
    else:
        for hook in gunicorn_hooks(settings).keys() & HOOK_PURPOSE.keys():
            launch.warnings.append(
                f"without a Gunicorn config file its {hook} hook cannot be set: {HOOK_PURPOSE[hook]}"
            )
        # No config file: hand the settings over in GUNICORN_CMD_ARGS, ahead of the
        # user's own, so Gunicorn's precedence (their flags win) still holds.
        if facts.version("gunicorn") < (25, 1):
            # a config file may name settings an older Gunicorn lacks; its command line may not
            options = [option for option in options if option[0] != "control_socket_disable"]
        options.append(("logconfig_json", "--log-config-json", app.log_file))
        ours = " ".join(quote_for_gunicorn(flag) for flag in as_flags(options, problems, "gunicorn"))
        launch.env["GUNICORN_CMD_ARGS"] = f"{ours} {settings.gunicorn_cmd_args}" if settings.gunicorn_cmd_args else ours
    launch.argv += [*app.extra, app.module]
    return launch


def plan_uvicorn(settings: Settings, facts: Facts, app: App, problems: list[str]) -> Launch:
    require_installed("uvicorn", facts, "SERVER=uvicorn" if settings.server == "uvicorn" else "WITH_RELOAD", problems)
    module, factory = split_factory(app.module)
    launch = Launch("uvicorn", [module, *(["--factory"] if factory else [])])
    address = settings.binds[0]
    if address.startswith("unix:"):
        launch.argv += ["--uds", facts.path(address[len("unix:") :])]
    elif address.startswith("fd://"):
        launch.argv += ["--fd", address[len("fd://") :]]
    elif app.workers > 1 or split_host_port(address)[0] == "::":
        # Uvicorn's multi-process mode binds with proto 0, so asyncio never sets
        # TCP_NODELAY on accepted connections and every response waits ~40 ms for
        # a delayed ACK. A listener bound here with TCP_NODELAY passes it on. On
        # its own, Uvicorn binds :: to IPv6 only; bound here, :: is dual-stack, as
        # under the other servers.
        launch.prebind = address
        launch.argv += ["--fd", str(UVICORN_SOCKET_FD)]
    else:
        host, port = split_host_port(address)
        launch.argv += ["--host", host, "--port", str(port)]
    if settings.with_reload:
        launch.argv.append("--reload")
        for directory in settings.reload_dirs or [facts.app_dir]:
            launch.argv += ["--reload-dir", facts.path(directory)]
    else:
        launch.argv += ["--workers", str(app.workers)]
        if app.workers == 1 and (settings.worker_max_memory or settings.worker_lifetime):
            name = "WORKER_MAX_MEMORY" if settings.worker_max_memory else "WORKER_LIFETIME"
            problems.append(
                f"{name} under SERVER=uvicorn needs 2 workers or more (WEB_CONCURRENCY): with one, Uvicorn runs without the supervisor that replaces workers"
            )
    # Levels come from the logging configuration, so LOG_LEVEL does not silence the access log.
    launch.argv += ["--log-config", app.log_file]
    if not settings.access_log:
        launch.argv.append("--no-access-log")
    if settings.http2 == "on":
        uvicorn_http2(
            facts,
            f"under SERVER={settings.server}" + (" (WITH_RELOAD)" if settings.server != "uvicorn" else ""),
            problems,
        )
        launch.argv += ["--http", "zttp", "--http2"]
    launch.argv += [*as_flags(table_options("uvicorn", settings, facts), problems, "uvicorn"), *app.extra]
    return launch


def plan_hypercorn(settings: Settings, facts: Facts, app: App, problems: list[str]) -> Launch:
    require_installed("hypercorn", facts, "SERVER=hypercorn", problems)
    worker_class = settings.worker_class or "asyncio"
    if worker_class != "asyncio" and worker_class in HYPERCORN_WORKER_CLASSES:
        require_installed(worker_class, facts, f"WORKER_CLASS={worker_class}", problems)
    config_file = find_config_file("HYPERCORN_CONF", settings.hypercorn_conf, "hypercorn_conf.py", facts, problems)
    if config_file and config_file.endswith(".py") and not config_file.startswith(("file:", "python:")):
        config_file = "file:" + config_file
    launch = Launch("hypercorn")
    launch.config_file, launch.worker_class = config_file, worker_class
    options = hypercorn_options(settings, facts, app.workers)
    users = users_config(config_file, "hypercorn_conf.py", facts)
    if users:
        # start.py's options, the user's file over them, WORKER_CLASS when set over that (see layered_config)
        launch.file_sets = config_assignments(users, problems, "HYPERCORN_CONF", settings.hypercorn_conf)
        if not settings.worker_class:
            launch.worker_class = str(launch.file_sets.get("worker_class", worker_class))
        launch.argv += ["--config", "file:" + layered_config_file(facts)]
        config = config_file_options("hypercorn", settings, facts, options)
        over = {"worker_class": worker_class} if settings.worker_class else {}
        hand_over_options(facts, with_users_config(config, users, facts, over), launch)
    elif config_file:
        launch.argv += ["--config", config_file]
        hand_over_options(facts, config_file_options("hypercorn", settings, facts, options), launch)
    else:
        options.append(("logconfig", "--log-config", "json:" + app.log_file))
        launch.argv += as_flags(options, problems, "hypercorn")
    # Hypercorn reads no X-Forwarded-* headers: the launcher's wrapper applies
    # FORWARDED_ALLOW_IPS around the app, as Uvicorn does (same default).
    launch.env[WRAPPED_APP_VARIABLE] = app.module
    launch.env[TRUSTED_PROXIES_VARIABLE] = settings.forwarded_allow_ips or DEFAULT_TRUSTED_PROXIES
    if settings.http2 == "off":
        launch.env[HTTP2_VARIABLE] = "off"
    launch.argv += [*app.extra, f"{RUNTIME_MODULE}:proxied_app()"]
    return launch


def plan_granian(settings: Settings, facts: Facts, app: App, problems: list[str]) -> Launch:
    """Granian has no config file: everything it is told is a flag. Its CLI reads a GRANIAN_*
    variable for each flag not given here; the flags given here win over those."""
    if require_installed("granian", facts, "SERVER=granian", problems) and (0,) < facts.version("granian") < (2, 6):
        # --ssl-protocol-min and the worker signal handling start.py relies on (tested with 2.8)
        problems.append("SERVER=granian needs granian 2.6 or newer (Python 3.10+): pip install 'granian[reload]>=2.6'")
    launch = Launch("granian", ["--interface", "asgi"])
    address = settings.binds[0]
    if address.startswith("unix:"):
        launch.argv += ["--uds", facts.path(address[len("unix:") :])]
    else:
        host, port = split_host_port(address)
        if port is not None:  # else fd://, reported by check_combinations
            launch.argv += ["--host", host, "--port", str(port)]
    launch.argv += [
        "--workers",
        str(app.workers),
        # A worker that dies is replaced, as under Gunicorn and Uvicorn; Granian's own default stops the server.
        "--respawn-failed-workers",
        "--log-config",
        app.log_file,
    ]
    if settings.access_log:
        launch.argv += ["--access-log", "--access-log-fmt", GRANIAN_ACCESS_FORMAT]
    else:
        launch.argv.append("--no-access-log")
    if settings.tls:
        # Granian's own minimum is TLS 1.3; the other servers serve TLS 1.2 clients too.
        launch.argv += ["--ssl-protocol-min", "tls1.2"]
        if settings.keyfile and is_encrypted_key(facts.path(settings.keyfile)):
            problems.append(
                f"KEYFILE={settings.keyfile!r} is encrypted, which SERVER=granian cannot read (every worker would fail); give it the key decrypted (openssl pkey -in KEY -out PLAIN)"
            )
    if settings.keep_alive == 0:
        launch.argv.append("--no-http1-keep-alive")
    if settings.with_reload:
        require_installed("watchfiles", facts, "WITH_RELOAD under SERVER=granian", problems)
        launch.argv.append("--reload")
        for directory in settings.reload_dirs or [facts.app_dir]:
            launch.argv += ["--reload-paths", facts.path(directory)]
        for name in settings.reload_excludes or ():
            if not any(char in name for char in "*?[]/"):
                launch.argv += ["--reload-ignore-dirs", name]  # a plain name may be a directory, as Uvicorn reads it
    if settings.worker_class in ("uvloop", "rloop"):
        require_installed(settings.worker_class, facts, f"WORKER_CLASS={settings.worker_class}", problems)
    if settings.worker_max_memory:  # WORKER_MAX_MEMORY's rule, in Granian's terms (its own default: 1 sample, 30 s)
        launch.argv += ["--rss-samples", str(MEMORY_CHECKS), "--rss-sample-interval", str(MEMORY_CHECK_SECONDS)]
    launch.argv += as_flags(table_options("granian", settings, facts), problems, "granian")
    # Granian reads no X-Forwarded-* headers and gives ports as strings: the launcher's
    # wrapper serves the app (see granian_app), once per worker.
    launch.env[WRAPPED_APP_VARIABLE] = app.module
    launch.env[TRUSTED_PROXIES_VARIABLE] = settings.forwarded_allow_ips or DEFAULT_TRUSTED_PROXIES
    launch.hand_over_flags.append(FORK_GUARD_FLAG)
    if app.workers > 1 and facts.migrate_req is False and facts.version("granian") >= (2, 8):
        launch.warnings.append(
            f"SERVER=granian with {app.workers} workers and net.ipv4.tcp_migrate_req=0: Granian 2.8+ gives each worker its own SO_REUSEPORT socket, so connections queued on a worker's socket are reset when it is respawned; set it to 1 (sysctl -w net.ipv4.tcp_migrate_req=1, or in Kubernetes the pod's securityContext.sysctls, which it does not count as safe: the kubelet must allow it with --allowed-unsafe-sysctls)"
        )
    launch.worker_class = settings.worker_class or "auto"
    launch.argv += ["--factory", f"{RUNTIME_MODULE}:granian_app", *app.extra]
    return launch


def is_encrypted_key(path: str) -> bool:
    """Whether a PEM private key is encrypted (PKCS#8 `ENCRYPTED PRIVATE KEY` or PKCS#1 `Proc-Type: 4,ENCRYPTED`)."""
    try:
        with open(path, "rb") as file:
            return b"ENCRYPTED" in file.read(1 << 16)
    except OSError:  # reported as a missing file by check_paths
        return False


class Profile:
    """What start.py knows of one server, in one place (the table's column says what each setting becomes):
    its name in messages, its loggers, the limits checked before planning, its exit status when its
    workers cannot start, and its planner. A fifth server is one more column of the table, one profile and its planner,
    and its workarounds in the runtime section."""

    __slots__ = (
        "access_logger",
        "crash_loop_status",
        "error_logger",
        "plan",
        "self_levelled",
        "single_bind",
        "takes_fd",
        "title",
        "worker_class_words",
        "worker_classes",
    )

    def __init__(
        self,
        title: str,
        plan: Callable[[Settings, Facts, App, list[str]], Launch],
        error_logger: str,
        access_logger: str,
        crash_loop_status: int,
        self_levelled: bool = False,
        single_bind: bool = False,
        takes_fd: bool = True,
        worker_classes: tuple[str, ...] = (),
        worker_class_words: str = "",
    ) -> None:
        self.title = title
        self.plan = plan
        self.error_logger = error_logger  # its server records; `self_levelled`: it sets the level from its loglevel
        self.access_logger = access_logger
        self.self_levelled = self_levelled
        self.crash_loop_status = crash_loop_status  # its exit status when workers die as they start, again and again
        self.single_bind = single_bind  # BIND takes one address
        self.takes_fd = takes_fd  # BIND=fd://N works
        self.worker_classes = worker_classes  # WORKER_CLASS's choices; empty: checked by the planner
        self.worker_class_words = worker_class_words


PROFILES = {
    "gunicorn": Profile(
        "Gunicorn (Uvicorn workers)", plan_gunicorn, "gunicorn.error", "gunicorn.access", 3, self_levelled=True
    ),
    "uvicorn": Profile("Uvicorn", plan_uvicorn, "uvicorn", "uvicorn.access", 3, single_bind=True),
    "hypercorn": Profile(
        "Hypercorn",
        plan_hypercorn,
        "hypercorn.error",
        "hypercorn.access",
        3,
        self_levelled=True,
        worker_classes=HYPERCORN_WORKER_CLASSES,
        worker_class_words="its worker classes",
    ),
    # `_granian` is Granian's main logger; its workers log as `_granian.serve` and `_granian.utils`.
    "granian": Profile(
        "Granian",
        plan_granian,
        "_granian",
        "granian.access",
        1,  # its own crash-loop rule: the same worker dying twice within 5.5 s
        single_bind=True,
        takes_fd=False,
        worker_classes=GRANIAN_LOOPS,
        worker_class_words="its event loops",
    ),
}


def plan_launch(settings: Settings, facts: Facts, extra: Sequence[str] = (), problems: list[str] | None = None) -> Plan:
    """Settings and facts -> the complete plan. Pure: nothing is run or written.

    Problems join `problems`; without a list, any problem raises ConfigError.
    """
    collected: list[str] = [] if problems is None else problems
    first = len(collected)
    check_paths(settings, facts, collected)
    app_module = find_app_module(settings, facts, collected)
    prestart = find_prestart(settings, facts, collected)
    workers, reason = compute_workers(settings, facts.cpus, facts.memory_limit)
    server = settings.effective_server
    log_file, log_content = logging_file(settings, facts)  # one configuration, written once, for any server
    arguments = [*(settings.server_args or []), *extra]  # SERVER_ARGS, then what follows --
    launch = PROFILES[server].plan(settings, facts, App(app_module, workers, log_file, arguments), collected)
    if server != "granian" and (settings.worker_max_memory or settings.worker_lifetime):
        # Granian recycles its workers itself (its flags); the keeper does it in the other servers' main process
        recycling = {"max_memory": settings.worker_max_memory, "lifetime": settings.worker_lifetime}
        launch.env[RECYCLE_VARIABLE] = to_json(recycling, sort_keys=True)
    launch.env.update(observing(settings, facts, collected))
    if problems is None and len(collected) > first:
        raise ConfigError(collected[first:])
    bind = settings.binds + (settings.insecure_binds + (settings.quic_bind or []) if server == "hypercorn" else [])
    if "bind" in launch.file_sets:  # the user's config file wins
        given = launch.file_sets["bind"]
        bind = [given] if isinstance(given, str) else [str(address) for address in given]
    if "workers" in launch.file_sets:
        given = launch.file_sets["workers"]
        if isinstance(given, int) and given > 0:
            workers, reason = given, f"{plural(given, 'worker')} = {launch.config_file} (start.py's rule: {workers})"
        else:
            reason = f"{given} (start.py's rule: {reason})"
    # the server's interpreter runs the hand-over first, which runs the server's module (see hand_over)
    hand_over = os.path.join(facts.runtime_dir, HAND_OVER_NAME)
    return Plan(
        server=server,
        requested_server=settings.server,
        argv=[sys.executable, hand_over, *launch.hand_over_flags, launch.module, *launch.argv],
        env=launch.env,
        app_module=app_module,
        workers=workers,
        workers_reason=reason,
        cpus=facts.cpus,
        bind=bind,
        config_file=launch.config_file,
        prestart=prestart,
        reload=settings.with_reload,
        log_level=settings.log_level,
        log_format=settings.log_format,
        runtime_dir=facts.runtime_dir,
        worker_class=launch.worker_class,
        prebind=launch.prebind,
        files={log_file: log_content, **launch.files},
        memory_limit=facts.memory_limit,
        warnings=worker_warnings(settings, workers, facts.memory_limit)
        + launch.warnings
        + [f"{name} is not read: {NOT_READ[name]}" for name in settings.not_read],
        metrics_dir=facts.path(settings.prometheus_multiproc_dir) if settings.prometheus_multiproc_dir else None,
        backlog=settings.backlog or 2048,
    )


# --------------------------------------------------------------------------
# The default config files call these when they run without start.py in front
# (`gunicorn -c gunicorn_conf.py`): they plan from the environment, as start.py
# would, and exit the way start.py would, one line per problem and status 2.
# --------------------------------------------------------------------------


def server_config(server: str, settings: Settings, facts: Facts, problems: list[str]) -> dict[str, Any]:
    """The options a config file sets for `server` (gunicorn or hypercorn)."""
    workers, _ = compute_workers(settings, facts.cpus, facts.memory_limit)
    if server == "gunicorn":
        launch = Launch("gunicorn")
        launch.worker_class = gunicorn_worker_class(settings, facts, problems)
        options = gunicorn_options(settings, facts, workers, launch.worker_class)
        options += gunicorn_http2(settings, facts, launch, problems)
    else:
        options = hypercorn_options(settings, facts, workers)
    return config_file_options(server, settings, facts, options)


def config_by_hand(server: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    settings = parse_settings(environ, problems)
    facts = probe_facts(settings, problems)
    config = server_config(server, settings, facts, problems)
    if problems:
        exit_with_problems(problems, log_format_of(environ))
    make_runtime_importable(facts, settings.log_format)
    if server == "gunicorn" and settings.root_path:
        os.environ[ROOT_PATH_VARIABLE] = settings.root_path  # for the launcher's worker class, as start.py does
    if server == "gunicorn" and settings.http2 == "on":
        os.environ[HTTP2_VARIABLE] = "on"  # likewise
    return config


def gunicorn_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Gunicorn settings from the environment, for gunicorn_conf.py run by hand."""
    return config_by_hand("gunicorn", environ)


def hypercorn_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Hypercorn settings from the environment, for hypercorn_conf.py run by hand."""
    return config_by_hand("hypercorn", environ)


def make_runtime_importable(facts: Facts, log_format: str) -> None:
    """A config file run by hand, not through start.py, sets up what start.py would have.

    On sys.path, not PYTHONPATH: Hypercorn's spawned workers get the master's
    sys.path from multiprocessing, and the app's own processes get nothing.
    """
    if facts.runtime_dir in sys.path:
        return  # start.py's hand-over did it
    try:
        prepare_runtime(facts.runtime_dir, {})  # the config file hands its server the dictionary itself
    except ConfigError as error:
        exit_with_problems(error.problems, log_format)
    sys.path.insert(0, facts.runtime_dir)


# --------------------------------------------------------------------------
# Effects: the only code that runs or writes anything.
# --------------------------------------------------------------------------


def log_format_of(environ: Mapping[str, str]) -> str:
    """LOG_FORMAT as far as it can be told, also when the environment has errors."""
    return "json" if environ.get("LOG_FORMAT", "").strip().lower() == "json" else "text"


def say(log_format: str, level: str, message: str) -> None:
    print(launcher_line(log_format, level, one_line(message)), file=sys.stderr, flush=True)


def exit_with_problems(problems: Iterable[str], log_format: str = "text") -> NoReturn:
    for problem in problems:
        if log_format == "json":
            say(log_format, "error", problem)
        else:
            print(f"{PROG}: error: {one_line(problem)}", file=sys.stderr)
    sys.stderr.flush()
    raise SystemExit(2)


def run_prestart(command: list[str], environ: Mapping[str, str], log_format: str) -> int:
    """Run the pre-start script to completion; its exit status (128+N if killed by signal N).

    SIGTERM and SIGINT meanwhile go to the script, and start.py stops with it:
    as PID 1 without a handler start.py would ignore `docker stop` (the kernel
    drops the signal), and killed it would orphan the script.
    """
    import signal

    say(log_format, "info", f"running pre-start script {command[-1]}")
    relay = log_format == "json"  # the script's lines become JSON records too
    actions: list[tuple[Any, ...]] = []
    if relay:
        reader, writer = os.pipe()
        actions = [(os.POSIX_SPAWN_DUP2, writer, 1), (os.POSIX_SPAWN_DUP2, writer, 2), (os.POSIX_SPAWN_CLOSE, reader)]
    received: list[int] = []
    child: list[int] = []

    def forward(signum: int, _frame: Any) -> None:
        received.append(signum)
        if child:
            os.kill(child[0], signum)

    # installed before the spawn, so that no signal falls between the two; SIGTERM, held
    # back since start.py began (see hold_sigterm), is taken while the script runs
    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT)}
    held = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    try:
        try:
            child.append(os.posix_spawnp(command[0], command, dict(environ), file_actions=actions, setsigmask=()))
        except OSError as error:
            say(log_format, "error", f"PRE_START_PATH: cannot run {command[-1]}: {error.strerror}")
            if relay:
                os.close(reader)
            return 2
        finally:
            if relay:
                os.close(writer)
        if received:  # arrived while spawning
            os.kill(child[0], received[0])
        status = relay_output(reader, child[0], log_format) if relay else os.waitpid(child[0], 0)[1]
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        say(log_format, "info", f"pre-start script stopped by signal {received[0]}; not starting the server")
        return 128 + received[0]
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def relay_output(reader: int, pid: int, log_format: str) -> int:
    """Pass the script's output on as log lines until it exits; its wait status.

    It stops when the script exits even if a background process it started
    still holds the pipe open.
    """
    import select

    pending = b""
    status = None
    while status is None:
        readable = select.select([reader], [], [], 0.2)[0]
        chunk = os.read(reader, 65536) if readable else b""
        if readable and not chunk:
            break  # end of output
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            say(log_format, "info", line.decode(errors="replace"))
        if not readable:
            finished, wait_status = os.waitpid(pid, os.WNOHANG)
            if finished:
                status = wait_status
                while select.select([reader], [], [], 0)[0] and (chunk := os.read(reader, 65536)):
                    pending += chunk
    if pending.strip():
        for line in pending.split(b"\n"):
            say(log_format, "info", line.decode(errors="replace"))
    os.close(reader)
    return status if status is not None else os.waitpid(pid, 0)[1]


# The code of the last section, written out as the module the servers import.
SERVER_SIDE_BEGIN = "# >>> inside the servers"
SERVER_SIDE_END = "# <<< inside the servers"
RUNTIME_MODULE_HEADER = (
    '"""asgi-start: the code that runs inside the servers, written out by start.py. Do not edit."""\n\n'
    "from __future__ import annotations\n\nimport os\n\nTYPE_CHECKING = False\nif TYPE_CHECKING:\n"
    "    from collections.abc import Sequence\n    from typing import Any\n\n"
)


# What start.py execs: the server's interpreter runs this script, which puts the runtime directory on
# sys.path (not on PYTHONPATH, which the app's own processes would inherit) and hands over (hand_over).
HAND_OVER_NAME = "hand_over.py"
HAND_OVER = (
    '"""asgi-start: the server process\'s first code; written out by start.py. Do not edit."""\n\n'
    "import os\nimport sys\n\n"
    "here = os.path.dirname(os.path.abspath(__file__))\n"
    "if sys.path[:1] == [here]:  # a script's own directory; `python -m SERVER` has the working directory there\n"
    "    sys.path[0] = os.getcwd()\n"
    "sys.path.insert(1, here)\n\n"
    "import asgi_start  # noqa: E402\n\n"
    "asgi_start.hand_over(sys.argv[1:])\n"
)


# The config file the server is given when the user has one of their own: start.py's options, then theirs.
LAYERED_BEGIN = "# >>> the layered config file"
LAYERED_END = "# <<< the layered config file"
LAYERED_CONFIG_HEADER = (
    '"""asgi-start: start.py\'s options, then your own config file over them; written by start.py. Do not edit."""\n\n'
    "from __future__ import annotations\n\nimport os\n\nTYPE_CHECKING = False\nif TYPE_CHECKING:\n"
    "    from collections.abc import Mapping\n    from typing import Any\n\n"
)
LAYERED_CONFIG_FOOTER = "\n_settings_only(globals())\n"
LAYERED_CONFIG_NAME = "layered_config.py"


# The module the main process of Hypercorn and of Uvicorn's supervisor imports to keep its workers.
KEEPER_BEGIN = "# >>> the worker keeper"
KEEPER_END = "# <<< the worker keeper"
KEEPER_MODULE = "asgi_start_workers"
KEEPER_HEADER = (
    '"""asgi-start: what keeps the server\'s workers, in its main process; written by start.py. Do not edit."""\n\n'
    "from __future__ import annotations\n\nimport os\n\nTYPE_CHECKING = False\nif TYPE_CHECKING:\n"
    "    from collections.abc import Sequence\n    from typing import Any\n\n"
)


# The module every worker imports when start.py asks it to observe (OBSERVE_VARIABLE; OBSERVE_MODULE).
OBSERVE_BEGIN = "# >>> observing the workers"
OBSERVE_END = "# <<< observing the workers"
OBSERVE_HEADER = (
    '"""asgi-start: what each worker observes, OpenTelemetry and prometheus_client; written by start.py. '
    'Do not edit."""\n\n'
    "from __future__ import annotations\n\nimport os\n\nTYPE_CHECKING = False\nif TYPE_CHECKING:\n"
    "    from typing import Any\n\n"
)


def observe_source() -> str:
    return OBSERVE_HEADER + section_of_this_file(OBSERVE_BEGIN, OBSERVE_END)


# The module of the access log's handler (ACCESS_HANDLER), imported where the access log goes to stdout.
ACCESS_BEGIN = "# >>> the access log"
ACCESS_END = "# <<< the access log"
ACCESS_MODULE = "asgi_start_access"
ACCESS_HEADER = (
    '"""asgi-start: the access log\'s handler, in every server process; written by start.py. Do not edit."""\n\n'
    "from __future__ import annotations\n\nimport os\n\nTYPE_CHECKING = False\nif TYPE_CHECKING:\n"
    "    from typing import Any\n\n"
)


def access_source() -> str:
    return ACCESS_HEADER + section_of_this_file(ACCESS_BEGIN, ACCESS_END)


def runtime_module_source() -> str:
    """The section of this file that runs inside the servers, as the module `asgi_start`."""
    return RUNTIME_MODULE_HEADER + section_of_this_file(SERVER_SIDE_BEGIN, SERVER_SIDE_END)


def layered_config_source() -> str:
    return LAYERED_CONFIG_HEADER + section_of_this_file(LAYERED_BEGIN, LAYERED_END) + LAYERED_CONFIG_FOOTER


def keeper_source() -> str:
    return KEEPER_HEADER + section_of_this_file(KEEPER_BEGIN, KEEPER_END)


def section_of_this_file(begin_marker: str, end_marker: str) -> str:
    with open(launcher_path(), encoding="utf-8") as file:
        text = file.read()
    begin = text.index("\n" + begin_marker + "\n")
    end = text.index("\n" + end_marker + "\n", begin)
    return text[begin + 1 : end + 1]


def write_if_changed(path: str, content: str) -> bool:
    """Write `content` atomically unless the file holds it already; whether it wrote."""
    try:
        with open(path, encoding="utf-8") as file:
            if file.read() == content:
                return False
    except OSError:
        pass
    temporary = f"{path}.{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(content)
    os.replace(temporary, path)
    return True


def write_bytecode(source_path: str, source: str) -> None:
    """The module's bytecode where the import system looks for it, so that no server process compiles it.

    Written here because the servers may not (PYTHONDONTWRITEBYTECODE, as in
    the image, or a read-only directory); checked by the source's mtime and size
    like any cached module. Compiling the small module costs about a millisecond.
    """
    import marshal

    bootstrap: Any = sys.modules.get("_frozen_importlib_external")  # importlib's own, always loaded
    if bootstrap is None:
        import importlib.util as bootstrap
    cache = bootstrap.cache_from_source(source_path)
    info = os.stat(source_path)
    header = bootstrap.MAGIC_NUMBER + b"\0\0\0\0"  # flags 0: checked by timestamp
    header += (int(info.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (info.st_size & 0xFFFFFFFF).to_bytes(
        4, "little"
    )
    try:
        with open(cache, "rb") as file:
            if file.read(16) == header:
                return
    except OSError:
        pass
    code = compile(source, source_path, "exec", dont_inherit=True)
    os.makedirs(os.path.dirname(cache), 0o700, exist_ok=True)
    temporary = f"{cache}.{os.getpid()}"
    with open(temporary, "wb") as file:
        file.write(header + marshal.dumps(code))
    os.replace(temporary, cache)


def prepare_runtime(directory: str, files: Mapping[str, str]) -> None:
    """Create start.py's private directory: the module `asgi_start` with its bytecode, and this start's files.

    The directory is predictable, so it must be ours alone: a real directory,
    owned by this user, closed to everyone else.
    """
    import stat

    try:
        os.makedirs(directory, 0o700, exist_ok=True)
        info = os.lstat(directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise ConfigError([f"TMPDIR: {directory} exists but is not a private directory of user {os.getuid()}"])
        module = os.path.join(directory, RUNTIME_MODULE + ".py")
        if os.path.islink(module):  # an earlier release linked start.py itself here
            os.unlink(module)
        for stale in ("sitecustomize.py", "__pycache__/sitecustomize" + (sys.implementation.cache_tag or "")):
            # an earlier release's start-up hook; nothing imports it now, and nothing should
            for path in (os.path.join(directory, stale), os.path.join(directory, stale) + ".pyc"):
                if os.path.isfile(path):
                    os.unlink(path)
        for name, source in (
            (module, runtime_module_source()),
            (os.path.join(directory, LAYERED_CONFIG_NAME), layered_config_source()),
            (os.path.join(directory, KEEPER_MODULE + ".py"), keeper_source()),
            (os.path.join(directory, OBSERVE_MODULE + ".py"), observe_source()),
            (os.path.join(directory, ACCESS_MODULE + ".py"), access_source()),
        ):
            write_if_changed(name, source)
            write_bytecode(name, source)
        write_if_changed(os.path.join(directory, HAND_OVER_NAME), HAND_OVER)  # run as a script: never cached
        for path, content in files.items():
            write_if_changed(path, content)
    except OSError as error:
        raise ConfigError(
            [f"TMPDIR: cannot prepare {directory}: {error.strerror}; point TMPDIR at a writable directory"]
        ) from None


def bind_listener(address: str, backlog: int) -> int:
    """Bind a TCP listener with TCP_NODELAY (inherited by accepted sockets); its descriptor."""
    import socket

    host, port = split_host_port(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if host == "::":  # every address, IPv4 too, whatever the system's bindv6only says
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    listener.bind((host, port))
    listener.listen(backlog)
    return listener.detach()


# prometheus_client's multiprocess files: `<type>_<pid>.db`, gauges `gauge_<mode>_<pid>.db`.
METRIC_FILE_TYPES = ("counter", "histogram", "summary", "gauge")


def is_metric_file(name: str) -> bool:
    stem, dot, suffix = name.rpartition(".")
    kind, _, pid = stem.rpartition("_")
    return dot == "." and suffix == "db" and pid.isdigit() and kind.partition("_")[0] in METRIC_FILE_TYPES


def prepare_metrics_dir(directory: str) -> None:
    """Create PROMETHEUS_MULTIPROC_DIR, and remove an earlier run's metric files (nothing else) from it."""
    try:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if is_metric_file(name):
                os.unlink(os.path.join(directory, name))
        probe = os.path.join(directory, f".asgi-start-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(
            [f"PROMETHEUS_MULTIPROC_DIR: cannot prepare {directory}: {error.strerror}; it must be a writable directory"]
        ) from None


def exec_server(plan: Plan, environ: Mapping[str, str]) -> NoReturn:
    try:
        prepare_runtime(plan.runtime_dir, plan.files)
        if plan.metrics_dir:
            prepare_metrics_dir(plan.metrics_dir)
    except ConfigError as error:
        exit_with_problems(error.problems, plan.log_format)
    if plan.prebind:
        try:
            descriptor = bind_listener(plan.prebind, plan.backlog)
        except OSError as error:
            say(plan.log_format, "error", f"cannot listen on {plan.prebind}: {error.strerror}")
            raise SystemExit(1) from None
        if descriptor != UVICORN_SOCKET_FD:
            os.dup2(descriptor, UVICORN_SOCKET_FD, inheritable=True)
            os.close(descriptor)
        else:
            os.set_inheritable(descriptor, True)
    env = dict(environ)
    env.update(plan.env)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(plan.argv[0], plan.argv, env)  # noqa: S606 -- an argv list, never a shell


# --------------------------------------------------------------------------
# Health check (the image's HEALTHCHECK): stdlib only, no curl needed.
# --------------------------------------------------------------------------


def healthcheck_target(settings: Settings) -> tuple[str, int, bool]:
    """Host, port and TLS flag of the first TCP listener, reached from inside the container."""
    for address in settings.binds:
        host, port = split_host_port(address)
        if port is not None:
            if host in ("0.0.0.0", ""):
                host = "127.0.0.1"
            elif host == "::":
                host = "::1"
            return host, port, settings.tls
    raise ConfigError(["--healthcheck needs a HOST:PORT listener; BIND has none"])


def healthcheck(settings: Settings, timeout: float = 5.0) -> int:
    import http.client
    import ssl

    host, port, tls = healthcheck_target(settings)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the server's own, possibly self-signed, certificate
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            host, port, timeout=timeout, context=context
        )
    else:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
    url = f"{'https' if tls else 'http'}://{join_host_port(host, port)}{settings.healthcheck_path}"
    try:
        connection.request("GET", settings.healthcheck_path, headers={"User-Agent": f"{PROG}-healthcheck"})
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        print(f"{PROG}: unhealthy: {url}: {error}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    healthy = status < 500
    print(f"{PROG}: {'healthy' if healthy else 'unhealthy'}: {url} answered {status}", file=sys.stderr)
    return 0 if healthy else 1


# --------------------------------------------------------------------------


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

USAGE = "usage: python start.py [--dry-run | --healthcheck | --help | --version] [-- SERVER-ARGS...]"


def usage_text() -> str:
    """--help's head, from the list of servers and their profiles."""
    titles = [PROFILES[server].title for server in SERVERS]
    statuses: dict[int, list[str]] = {}
    for server in SERVERS:
        statuses.setdefault(PROFILES[server].crash_loop_status, []).append(PROFILES[server].title.split(" (")[0])
    crash_loop = "; ".join(
        f"{status} under {', '.join(names[:-1]) + ' and ' if names[1:] else ''}{names[-1]}"
        for status, names in sorted(statuses.items(), reverse=True)
    )
    text = f"""{USAGE}

Start an ASGI app under {", ".join(titles[:-1])} or {titles[-1]},
configured from the environment, then become the server (exec).

  --dry-run      print the plan as one JSON object and exit; runs nothing
  --healthcheck  request HEALTHCHECK_PATH from the running server; 0 if healthy
  --help         this text and the environment variables
  --version      print the version
  -- ARGS        appended unchanged to the server's command line

Exit status: 0 dry-run/help done, 2 configuration error, the pre-start
script's status when it fails, otherwise the server's own (start.py execs it).

A worker that dies is replaced, under every server. When workers die as
they start, again and again, the server stops with a status other than 0
({crash_loop})"""
    return text + ".\n"


def only_with(var: Var) -> str:
    """The table's restriction of a variable to some servers, in words."""
    if var.servers == SERVERS:
        return ""
    return " (only with " + " or ".join(f"`SERVER={server}`" for server in var.servers) + ")"


def help_text() -> str:
    lines = [usage_text(), "Environment variables (unset or empty means the default):"]
    group = None
    for var in VARIABLES:
        if var.group != group:
            group = var.group
            lines.append(f"\n{group}:")
        names = " / ".join((var.name, *var.aliases))
        lines.append(f"  {names}  [default: {var.shown.replace('`', '')}]")
        lines.append(f"      {(var.help + only_with(var)).replace('`', '')}")
    return "\n".join(lines) + "\n"


def markdown_table() -> str:
    """The README's environment table, generated from VARIABLES."""
    lines = []
    group = None
    for var in VARIABLES:
        if var.group != group:
            if group is not None:
                lines.append("")
            group = var.group
            lines += [f"#### {group}", "", "| variable | default | meaning |", "|---|---|---|"]
        names = f"`{var.name}`" + "".join(f" (alias `{alias}`)" for alias in var.aliases)
        lines.append(f"| {names} | {var.shown} | {var.help}{only_with(var)} |")
    return "\n".join(lines) + "\n"


def server_table() -> str:
    """The README's table of what each one-to-one variable becomes under each server, from VARIABLES."""
    lines = ["| variable | " + " | ".join(SERVERS) + " |", "|---" * (len(SERVERS) + 1) + "|"]
    for var in VARIABLES:
        if not var.to:
            continue
        cells = []
        for server in SERVERS:
            to = var.to.get(server)
            if to is None:
                cells.append(var.via.get(server, "—") if server in var.servers else "error")
                continue
            parts = [f"`{to.key}`"] if to.key else []
            parts += [f"`{to.flag}`"] if to.flag else ["(config file only)"]
            if to.default is not None:
                parts.append(f"default {to.default}")
            cells.append(" / ".join(parts) + (f" ({to.note})" if to.note else ""))
        lines.append(f"| `{var.name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def hold_sigterm() -> None:
    """Block SIGTERM from here until the server's interpreter can act on it.

    A container's PID 1 without a handler does not even receive SIGTERM (the
    kernel drops it), and a handler does not survive exec: a `docker stop` or a
    pod deletion in the first few hundred milliseconds was lost and the
    container killed after the grace period. Blocked, the signal waits; the
    block survives exec, and the hand-over lifts it in the server's
    interpreter (hand_over), with a handler that stops it at once until the
    server installs its own.
    """
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def release_sigterm() -> None:
    signals: Any = sys.modules["_signal"]  # loaded by the interpreter; `signal` would cost an import
    signals.pthread_sigmask(signals.SIG_UNBLOCK, {signals.SIGTERM})


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    extra: list[str] = []
    if "--" in args:
        split = args.index("--")
        args, extra = args[:split], args[split + 1 :]
    known = {"--dry-run", "--healthcheck", "--help", "-h", "--version"}
    unknown = [arg for arg in args if arg not in known]
    if unknown or len(args) > 1:
        print(
            f"{PROG}: error: unexpected arguments {' '.join(unknown or args)} (server arguments go after --)",
            file=sys.stderr,
        )
        print(USAGE, file=sys.stderr)
        return 2
    mode = args[0] if args else "start"
    if mode in ("--help", "-h"):
        sys.stdout.write(help_text())
        return 0
    if mode == "--version":
        print(f"{PROG} {__version__}")
        return 0
    if mode == "start":
        hold_sigterm()
    else:  # only a start hands SIGTERM on to a server
        release_sigterm()
    problems: list[str] = []
    settings = parse_settings(environ, problems)
    if mode == "--healthcheck":
        if problems:
            exit_with_problems(problems, log_format_of(environ))
        try:
            return healthcheck(settings)
        except ConfigError as error:
            exit_with_problems(error.problems, log_format_of(environ))
    plan = plan_launch(settings, probe_facts(settings, problems), extra, problems)
    if problems:
        exit_with_problems(problems, log_format_of(environ))
    if mode == "--dry-run":
        print(to_json(plan.as_dict(), indent=2))
        return 0
    if plan.prestart:
        status = run_prestart(plan.prestart, environ, plan.log_format)
        if status != 0:
            message = f"pre-start script {plan.prestart[-1]} exited with status {status}; not starting the server"
            say(plan.log_format, "error", message)
            return status
    for warning in plan.warnings:
        say(plan.log_format, "warning", warning)
    say(plan.log_format, "info", plan.summary())
    exec_server(plan, environ)


# --------------------------------------------------------------------------
# Inside the servers. Everything from the marker below to the end marker is
# written out by start.py as the module `asgi_start` (with its bytecode) and
# imported by every server process: the dictConfig names these factories.
# It must stand alone: no names from the rest of this file.
# --------------------------------------------------------------------------

# >>> inside the servers
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
TEXT_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
ACCESS_LOGGERS = ("gunicorn.access", "uvicorn.access", "hypercorn.access", "granian.access")
ACCESS_HANDLER = "asgi_start_access.access_handler"

_LOG_CLASSES: dict[str, Any] = {}
_UTC_SECOND: list[tuple[Any, str]] = [(None, "")]


def log_handler(target: str | None, stream: str, buffered: bool = False) -> dict[str, Any]:
    if target is None:
        return {"class": "logging.NullHandler"}
    if target == "-" and buffered:  # the access log, written in batches (module asgi_start_access)
        return {"()": ACCESS_HANDLER, "formatter": "asgi_start", "stream": stream}
    if target == "-":
        return {"class": "logging.StreamHandler", "formatter": "asgi_start", "stream": stream}
    return {"class": "logging.FileHandler", "formatter": "asgi_start", "filename": target}


def json_formatter(**_: Any) -> Any:
    """A logging.Formatter writing one JSON object per record (fields in the README)."""
    return _log_classes()["JsonFormatter"]()


def text_formatter(**_: Any) -> Any:
    """A logging.Formatter writing `time LEVEL logger [pid] message`, one line per record.

    A traceback or a multi-line message stays on its record's line, with its
    line breaks written as \\n: a container's log driver makes an event of
    every line, and a traceback cut into twenty events is no longer one.
    """
    return _log_classes()["TextFormatter"](TEXT_FORMAT, TEXT_DATE_FORMAT)


def access_path_filter(paths: Sequence[str] = ()) -> Any:
    """A logging.Filter dropping access records of these paths (exact, or a prefix ending at /)."""
    return _log_classes()["AccessPathFilter"](paths)


def granian_request_line_filter(**_: Any) -> Any:
    """A filter on Granian's access logger: the request line shows the query, as the other servers' do."""
    return _log_classes()["GranianRequestLine"]()


def iso_utc(created: float) -> str:
    import time

    second, text = _UTC_SECOND[0]  # strftime costs more than the rest of a record: once a second
    if int(created) != second:
        _UTC_SECOND[0] = second, text = int(created), time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{text}.{int(created % 1 * 1000):03d}Z"


def _dash_is_none(value: Any) -> Any:
    return None if value in ("-", "", None) else value


def access_fields(record: Any) -> dict[str, Any] | None:
    """The structured fields of an access record, whichever server wrote it; None for other records."""
    args = record.args
    if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        # Uvicorn: (client, method, path with query, HTTP version, status); no duration, no user agent.
        client, method, full_path, version, status = args
        path, _, query = str(full_path).partition("?")
        return {
            "client": client,
            "method": method,
            "path": path,
            "query": query,
            "status": int(status),
            "protocol": f"HTTP/{version}",
            "duration_ms": None,
            "user_agent": None,
        }
    if record.name == "granian.access" and hasattr(args, "get"):
        # Granian: addr, method (- for a WebSocket), path, query_string, protocol, status, dt_ms.
        status = args.get("status")
        duration = args.get("dt_ms")
        return {
            "client": _dash_is_none(args.get("addr")),
            "method": _dash_is_none(args.get("method")),
            "path": args.get("path"),
            "query": args.get("query_string") or "",
            "status": status if isinstance(status, int) else None,
            "protocol": args.get("protocol"),
            "duration_ms": round(duration, 3) if isinstance(duration, (int, float)) else None,
            "user_agent": None,
        }
    if record.name in ("gunicorn.access", "hypercorn.access") and hasattr(args, "get"):
        # Gunicorn's and Hypercorn's atoms: h client, m method, U path, q query, H protocol,
        # s status, a user agent, D duration in microseconds.
        protocol = str(args.get("H") or "")
        status = args.get("s")
        duration = args.get("D")
        return {
            "client": _dash_is_none(args.get("h")),
            "method": args.get("m"),
            "path": args.get("U"),
            "query": args.get("q") or "",
            "status": int(status) if str(status).isdigit() else None,
            "protocol": protocol if protocol.startswith("HTTP/") or not protocol else f"HTTP/{protocol}",
            "duration_ms": round(int(duration) / 1000, 3) if str(duration).isdigit() else None,
            "user_agent": _dash_is_none(args.get("a")),
        }
    return None


def _log_classes() -> dict[str, Any]:
    if _LOG_CLASSES:
        return _LOG_CLASSES
    import json
    import logging
    import sys

    encode = json.JSONEncoder(ensure_ascii=False, default=str).encode  # json.dumps makes one per call

    class JsonFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            entry: dict[str, Any] = {
                "time": iso_utc(record.created),
                "level": record.levelname.lower(),
                "logger": record.name,
                "pid": record.process,
                "message": record.getMessage(),
            }
            fields = access_fields(record) if record.name in ACCESS_LOGGERS else None
            if fields:
                entry.update(fields)
            elif not record.exc_info and record.name.startswith("_granian"):
                # Granian writes an app's exception with its traceback inside the message
                message, marker, trace = entry["message"].partition("\nTraceback (most recent call last):\n")
                if marker:
                    entry["message"], record.exc_text = message, marker.lstrip("\n") + trace
            trace = sys.modules.get("opentelemetry.trace")  # written inside a span: the ids of its trace
            span = trace.get_current_span().get_span_context() if trace else None
            if span and span.is_valid:
                entry["trace_id"], entry["span_id"] = format(span.trace_id, "032x"), format(span.span_id, "016x")
            if record.exc_info:
                record.exc_text = record.exc_text or self.formatException(record.exc_info)
            if record.exc_text:
                entry["exception"] = record.exc_text
            if record.stack_info:
                entry["stack"] = self.formatStack(record.stack_info)
            return encode(entry)

    class TextFormatter(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return one_line(super().format(record))

        def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
            second, fmt, text = getattr(self, "second", (None, None, ""))  # as iso_utc: strftime once a second
            if (second, fmt) != (int(record.created), datefmt):
                self.second = int(record.created), datefmt, (text := super().formatTime(record, datefmt))
            return str(text)

    class AccessPathFilter(logging.Filter):
        def __init__(self, paths: Sequence[str]) -> None:
            super().__init__()
            self.exact = frozenset(path.rstrip("/") or "/" for path in paths)
            self.prefixes = tuple(path.rstrip("/") + "/" for path in paths)

        def filter(self, record: logging.LogRecord) -> bool:
            path = (access_fields(record) or {}).get("path")
            return path is None or not (str(path) in self.exact or str(path).startswith(self.prefixes))

    class GranianRequestLine(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            args: Any = record.args
            # Granian configures logging in its main and again in each forked worker, and dictConfig
            # adds a logger's filters without removing the ones it had: this may run twice per record.
            message = record.msg
            if (
                isinstance(args, dict)
                and args.get("query_string")
                and isinstance(message, str)
                and "%(path)s?" not in message
            ):
                record.msg = message.replace("%(path)s", "%(path)s?%(query_string)s", 1)
            return True

    _LOG_CLASSES.update(
        JsonFormatter=JsonFormatter,
        TextFormatter=TextFormatter,
        AccessPathFilter=AccessPathFilter,
        GranianRequestLine=GranianRequestLine,
    )
    return _LOG_CLASSES


def hand_over(argv: Sequence[str]) -> None:
    """The server process's first code: `[--fork-guard] MODULE ARGS...` from start.py, run by hand_over.py.

    SIGTERM has been blocked since start.py began (see hold_sigterm): take it
    now, and until the server installs its own handler let it stop the process
    at once (nothing is served yet). With --fork-guard, workers the server forks
    start with the stop signals at their defaults. Then the server's module runs
    as `python -m MODULE ARGS...` would run it, in this process; a server it
    spawns gets this process's sys.path, runtime directory included.
    """
    import runpy
    import sys

    args = list(argv)
    fork_guard = args[:1] == ["--fork-guard"]
    del args[: int(fork_guard)]
    if not args:
        raise SystemExit("asgi-start: error: the hand-over needs the server's module (start.py passes it)")
    signals: Any = sys.modules["_signal"]  # loaded by the interpreter; `signal` would import enum
    signals.signal(signals.SIGTERM, _stop_before_serving)
    signals.pthread_sigmask(signals.SIG_UNBLOCK, {signals.SIGTERM})
    if fork_guard:
        _guard_forked_workers(os.getpid())
    if args[0] in ("gunicorn", "hypercorn", "uvicorn", "granian"):
        __import__("asgi_start_workers").keep_workers(args[0], argv)
    if os.environ.get(OBSERVE_VARIABLE):
        __import__(OBSERVE_MODULE).observe_workers(args[0])
    sys.argv = args  # run_module puts the module's path in argv[0], as `python -m` does
    runpy.run_module(args[0], run_name="__main__", alter_sys=True)


def _guard_forked_workers(server_pid: int) -> None:
    """A worker forked by the server's main process starts with SIGTERM, SIGINT and SIGQUIT at their defaults.

    Gunicorn's forked worker inherits the master's handlers, which only queue a
    signal in the worker's copy of the arbiter, until it installs its own: a
    SIGTERM that met a booting worker was lost, and the master waited
    GRACEFUL_TIMEOUT for it (SIGQUIT, Gunicorn's quick stop, alike).

    Granian's forked worker keeps the main's handler (which only sets a flag in
    the worker's copy of the main) until it installs its own, after the app is
    imported: a stop signal in that window was lost, and the main waited for
    the worker until its kill timeout. With the defaults, the signal ends the
    worker, which serves nothing yet. The signals stay blocked across the fork,
    so one sent right after it waits for the defaults instead of being lost.
    """
    import sys

    signals: Any = sys.modules["_signal"]
    stops = {signals.SIGTERM, signals.SIGINT, signals.SIGQUIT}
    saved: list[Any] = []

    def before() -> None:
        if os.getpid() == server_pid:
            saved.append(signals.pthread_sigmask(signals.SIG_BLOCK, stops))

    def after_in_parent() -> None:
        if saved:
            signals.pthread_sigmask(signals.SIG_SETMASK, saved.pop())

    def after_in_child() -> None:
        if saved:
            for signum in stops:
                signals.signal(signum, signals.SIG_DFL)
            signals.pthread_sigmask(signals.SIG_SETMASK, saved.pop())

    os.register_at_fork(before=before, after_in_parent=after_in_parent, after_in_child=after_in_child)


def _stop_before_serving(signum: int, frame: Any) -> None:
    """SIGTERM before the server has its own handler: stop now, with any worker already started."""
    import contextlib
    import sys

    try:
        # Every child the kernel knows, not multiprocessing's list (which may be half
        # imported, and misses a worker whose spawn this signal interrupted): still
        # starting, they serve nothing. The resource tracker is spared: it removes
        # the semaphores the workers leave.
        tracker = getattr(sys.modules.get("multiprocessing.resource_tracker"), "_resource_tracker", None)
        spared = getattr(tracker, "_pid", None)
        for child in _child_pids():
            if child != spared:
                with contextlib.suppress(OSError):
                    os.kill(child, 9)  # SIGKILL; `signal` is not imported yet
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    finally:
        os._exit(0)


def _child_pids() -> list[int]:
    """This process's children as the kernel knows them (parent PID in /proc/N/stat)."""
    me = os.getpid()
    children: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc mounted
        return children
    for entry in entries:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as file:
                    stat = file.read()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2 :].split()[1]) == me:
                children.append(int(entry))
    return children


def __getattr__(name: str) -> Any:
    """What the servers load by name, built on first use: importing a server here would cost every process."""
    if name in ("UvicornWorker", "UvicornH11Worker"):
        return _uvicorn_worker_with_root_path(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Names the launcher and this section share, written once here (the launcher reads them from this section).
# What the proxy-headers wrapper serves, and whom it trusts (see proxied_app), by default as Uvicorn does.
WRAPPED_APP_VARIABLE = "ASGI_START_APP"
TRUSTED_PROXIES_VARIABLE = "ASGI_START_FORWARDED_ALLOW_IPS"
DEFAULT_TRUSTED_PROXIES = "127.0.0.1,::1"
# Where start.py left the finished options for a config file (the default ones, or the layered one).
OPTIONS_VARIABLE = "ASGI_START_OPTIONS"
# ROOT_PATH as start.py parsed it, for the launcher's Uvicorn worker classes under Gunicorn.
ROOT_PATH_VARIABLE = "ASGI_START_ROOT_PATH"
HTTP2_VARIABLE = "ASGI_START_HTTP2"  # `on` for the launcher's Uvicorn worker classes, `off` for Hypercorn's h2c
# What each worker observes (`otel`, `metrics`), by the module asgi_start_observe.
OBSERVE_VARIABLE = "ASGI_START_OBSERVE"
OBSERVE_MODULE = "asgi_start_observe"


def _uvicorn_worker_with_root_path(name: str) -> Any:
    """Uvicorn's Gunicorn worker class, giving Uvicorn ROOT_PATH (Gunicorn has no such setting) and HTTP2=on."""
    import importlib

    try:
        base = getattr(importlib.import_module("uvicorn_worker"), name)
    except ImportError:
        base = getattr(importlib.import_module("uvicorn.workers"), name)
    http2 = {"http": "zttp", "http2": True} if os.environ.get(HTTP2_VARIABLE) == "on" else {}
    kwargs = {**base.CONFIG_KWARGS, "root_path": os.environ.get(ROOT_PATH_VARIABLE, ""), **http2}
    worker = type(name, (base,), {"CONFIG_KWARGS": kwargs})
    globals()[name] = worker
    return worker


def proxied_app() -> Any:
    """The app of ASGI_START_APP (`module:attribute` or `module:factory()`), behind the proxy-headers wrapper.

    Hypercorn evaluates `proxied_app()` in this module, once per worker. A WSGI
    app (Hypercorn serves those too) is returned as it is.

    From here the worker ignores SIGTERM: Hypercorn's master terminate()s the
    other workers as soon as the first has stopped, which would cut off their
    requests in flight; they stop gracefully through Hypercorn's shutdown event.
    """
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get(HTTP2_VARIABLE) == "off":  # Hypercorn has no setting for h2c: neither preface nor Upgrade taken
        import asyncio
        import importlib

        importlib.import_module("hypercorn.protocol.h11").H11Protocol._check_protocol = lambda *_: asyncio.sleep(0)

    if os.environ.get(OBSERVE_VARIABLE):  # this worker's OpenTelemetry and metrics, before the app (see hand_over)
        __import__(OBSERVE_MODULE).worker_started()
    app = _load_app(os.environ[WRAPPED_APP_VARIABLE])
    import inspect

    # ASGI as Hypercorn tells it (hypercorn.utils.is_asgi): a coroutine function, or an object whose __call__ is one
    if not (inspect.iscoroutinefunction(app) or (callable(app) and inspect.iscoroutinefunction(type(app).__call__))):
        return app
    return ProxyHeaders(app, os.environ.get(TRUSTED_PROXIES_VARIABLE, DEFAULT_TRUSTED_PROXIES))


def granian_app() -> Any:
    """Granian's target (a factory, called once per worker): the app of ASGI_START_APP behind the
    proxy-headers wrapper, which also gives the scope's ports as numbers (Granian's are strings).

    An app that fails to load is one log record with its traceback, in LOG_FORMAT,
    and the worker exits 1 (Granian then stops: the same worker failing twice
    in a row is a crash loop to it).
    """
    _stop_granian_workers_once()
    if os.environ.get(OBSERVE_VARIABLE):
        __import__(OBSERVE_MODULE).worker_started()
    target = os.environ[WRAPPED_APP_VARIABLE]
    try:
        app = _load_app(target, hypercorn=False)
    except Exception:
        import logging
        import sys

        logging.getLogger("_granian").exception("Cannot load application from '%s'", target)
        sys.exit(1)
    return ProxyHeaders(app, os.environ.get(TRUSTED_PROXIES_VARIABLE, DEFAULT_TRUSTED_PROXIES), numeric_ports=True)


def _stop_granian_workers_once() -> None:
    """In a Granian worker: every stop signal reaches the worker's stop event, and only once.

    Granian (2.8) handles SIGTERM in a worker on its event loop only. Under
    uvloop, which sees signals only while its loop runs, a SIGTERM between the
    app's lifespan startup and the server's start was never seen: the worker
    served on and the main waited GRACEFUL_TIMEOUT to kill it. A handler at the
    Python level runs whether the loop runs or not. The event must be set once:
    it is a channel of one message, and a set() that finds it full blocks the
    worker for good (a second SIGTERM did that too). Patched before Granian
    looks up `set_loop_signals` in its worker.
    """
    import importlib

    try:
        granian_signals: Any = importlib.import_module("granian._signals")
    except ImportError:
        return
    install = getattr(granian_signals, "set_loop_signals", None)
    if install is None or getattr(install, "sets_once", False):
        return

    def set_loop_signals(loop: Any) -> Any:
        import contextlib
        import signal

        stops = (signal.SIGTERM, signal.SIGINT)
        held = signal.pthread_sigmask(signal.SIG_BLOCK, stops)  # none lost while the handlers change
        event = install(loop)
        unset = [event]  # list.pop is one step: a signal handler cannot slip in between check and take

        def stop(*_: Any) -> None:
            if unset:
                with contextlib.suppress(IndexError):  # another handler took it in between
                    unset.pop().set()

        for signum in stops:
            loop.add_signal_handler(signum, stop)  # wakes a running loop (replaces Granian's handler)
            signal.signal(signum, stop)  # runs when the loop does not
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return event

    set_loop_signals.sets_once = True  # type: ignore[attr-defined]
    granian_signals.set_loop_signals = set_loop_signals


def _load_app(target: str, hypercorn: bool = True) -> Any:
    """`module:attribute` or `module:factory()`, imported; a missing module or attribute names the user's target."""
    import importlib

    module_name, _, attribute = target.partition(":")
    try:
        app: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise
        raise _no_app(target, "module", hypercorn) from None
    for part in attribute.removesuffix("()").split("."):
        if not hasattr(app, part):
            raise _no_app(target, "application", hypercorn)
        app = getattr(app, part)
    return app() if attribute.endswith("()") else app


def _no_app(target: str, missing: str, hypercorn: bool = True) -> Exception:
    """Hypercorn's own error for an app it cannot load (elsewhere LookupError), naming the user's app rather than the wrapper."""
    import contextlib
    import importlib

    error: Any = LookupError
    if hypercorn:
        with contextlib.suppress(ImportError, AttributeError):
            error = importlib.import_module("hypercorn.utils").NoAppError
    return error(f"Cannot load application from '{target}', {missing} not found.")  # type: ignore[no-any-return]


class ProxyHeaders:
    """X-Forwarded-For and X-Forwarded-Proto from trusted peers, as Uvicorn reads them, for servers that do not.

    From a peer in FORWARDED_ALLOW_IPS, X-Forwarded-For sets the scope's client
    (the nearest address that is not itself trusted) and X-Forwarded-Proto its
    scheme; from any other peer both are ignored.
    """

    def __init__(self, app: Any, trusted: str, numeric_ports: bool = False) -> None:
        import ipaddress

        self.app = app
        self.numeric_ports = numeric_ports
        self.trust_all = False
        self.addresses: set[str] = set()
        self.networks: list[Any] = []
        for item in (part.strip() for part in trusted.split(",")):
            if item == "*":
                self.trust_all = True
            elif item:
                try:
                    network = ipaddress.ip_network(item, strict=False)
                except ValueError:
                    self.addresses.add(item)  # a name or unix: path, compared as written
                    continue
                if network.num_addresses == 1:
                    address = network.network_address
                    self.addresses.add(str(address))
                    mapped = getattr(address, "ipv4_mapped", None)
                    if mapped:  # ::ffff:7f00:1 is written ::ffff:127.0.0.1 by the servers
                        self.addresses.add(f"::ffff:{mapped}")
                else:
                    self.networks.append(network)

    def trusts(self, host: str | None) -> bool:
        if host is None:
            return False
        if self.trust_all or host in self.addresses:
            return True
        if not self.networks:
            return False
        import ipaddress

        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            if self.numeric_ports:
                self.number_ports(scope)
            client = scope.get("client")
            if client and self.trusts(client[0]):
                self.apply(scope)
            root_path = scope.get("root_path")
            if root_path and not scope["path"].startswith(root_path):
                # Uvicorn, and so every other server here, puts root_path in front of path, as the ASGI spec reads
                scope["path"] = root_path + scope["path"]
                if scope.get("raw_path") is not None:
                    scope["raw_path"] = root_path.encode("latin-1") + scope["raw_path"]
        await self.app(scope, receive, send)

    @staticmethod
    def number_ports(scope: Any) -> None:
        """The ASGI spec's (host, port) with port an int, where the server gives a string."""
        for key in ("client", "server"):
            pair = scope.get(key)
            if pair and type(pair[1]) is str:
                scope[key] = (pair[0], int(pair[1]) if pair[1].isdigit() else None)

    def apply(self, scope: Any) -> None:
        proto, forwarded_for = None, []
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                proto = value.decode("latin-1").strip()  # as Uvicorn reads it: no case folding
            elif name == b"x-forwarded-for":
                forwarded_for.append(value.decode("latin-1"))
        if proto in ("http", "https", "ws", "wss"):
            scope["scheme"] = proto.replace("http", "ws") if scope["type"] == "websocket" else proto
        hosts = [host.strip() for host in ",".join(forwarded_for).split(",") if host.strip()]
        if hosts:
            # the nearest hop that is not a trusted proxy is the client; all trusted: the farthest
            client = next((host for host in reversed(hosts) if not self.trusts(host)), hosts[0])
            scope["client"] = (client, 0)


def gunicorn_child_exit(server: Any, worker: Any) -> None:
    """Gunicorn's child_exit hook: an exited worker's live gauges leave prometheus_client's sums."""
    __import__(OBSERVE_MODULE).worker_ended(worker.pid)


def gunicorn_when_ready(server: Any) -> None:
    """Gunicorn's when_ready hook, in the master after the preloaded app and before the first fork: its
    objects move to the permanent generation, which the collector never traverses, so a worker's
    collections do not write to (and so copy) the pages it shares with the master."""
    if server.cfg.preload_app:
        import gc

        gc.freeze()


def one_line(message: str) -> str:
    """Values can hold line breaks (a path, say); a message stays one line whatever they hold."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


# <<< inside the servers


# --------------------------------------------------------------------------
# The layered config file. Everything from the marker below to the end marker
# is written out as the config file the server is given when the user has one
# of their own (see layered_config_file); only the server's main process runs
# it. It must stand alone, like the section above, and uses that section as
# the module `asgi_start`.
# --------------------------------------------------------------------------

# >>> the layered config file
# Keys of the options start.py hands a config file: Gunicorn's hooks by function name; the user's own
# config file; what must win over it; the launcher's Uvicorn worker classes that carry ROOT_PATH.
HOOKS_KEY = "asgi_start_hooks"
USERS_CONFIG_KEY = "asgi_start_users_config"
OVER_USERS_KEY = "asgi_start_over_users_config"
ROOT_PATH_WORKERS_KEY = "asgi_start_root_path_workers"
BUILT_IN_LOGGING_KEY = "asgi_start_built_in_logging"  # false with LOGGING_CONF: the dictionary is the user's


def layered_config() -> dict[str, Any]:
    """The settings of the config file start.py names when the user has one of their own.

    Their file sits where the old images' did, over start.py's options: what it
    sets wins (bind, workers, timeouts, log level and destinations, its own
    logging configuration, a worker class), and the rest of start.py's settings
    still apply, as the old images' start scripts passed theirs around the
    user's file. Over their file: WORKER_CLASS when set (tiangolo's `-k`), and
    ROOT_PATH's subclass of whichever Uvicorn worker class their file names.
    start.py's Gunicorn hooks run before theirs of the same name, so that
    dead workers still leave the metrics (child_exit).
    """
    import importlib
    import json

    runtime: Any = importlib.import_module("asgi_start")  # the hooks and the log handlers are its
    with open(os.environ[runtime.OPTIONS_VARIABLE], encoding="utf-8") as file:
        options = json.load(file)
    location = options.pop(USERS_CONFIG_KEY)
    over = options.pop(OVER_USERS_KEY, {})
    root_path_workers = options.pop(ROOT_PATH_WORKERS_KEY, {})
    built_in_logging = options.pop(BUILT_IN_LOGGING_KEY, False)
    hooks = {hook: getattr(runtime, function) for hook, function in options.pop(HOOKS_KEY, {}).items()}
    theirs = _load_users_config(location)
    if any(theirs.get(key) for key in ("logconfig", "logconfig_dict", "logconfig_json")):
        options.pop("logconfig_dict", None)  # their logging configuration replaces start.py's
    elif built_in_logging:  # LOGGING_CONF's dictionary says itself where records go
        _follow_users_log_destinations(options["logconfig_dict"], theirs, runtime)
    for hook, ours in hooks.items():
        if callable(theirs.get(hook)) and theirs[hook] is not ours:
            theirs[hook] = _both_hooks(ours, theirs[hook])
    settings = {**options, **hooks, **theirs, **over}
    worker_class = settings.get("worker_class")
    if root_path_workers and isinstance(worker_class, str) and worker_class not in root_path_workers.values():
        if worker_class not in root_path_workers:
            import sys

            sys.stderr.write(
                f"asgi-start: error: ROOT_PATH under SERVER=gunicorn needs one of Uvicorn's worker classes, not {worker_class!r} ({location})\n"
            )
            raise SystemExit(2)
        settings["worker_class"] = root_path_workers[worker_class]
    return settings


def _load_users_config(location: str) -> dict[str, Any]:
    """The names a config file sets, loaded as its server would: `file:PATH`, `python:MODULE[.OBJECT]`, `toml:PATH`."""
    kind, _, where = location.partition(":")
    if kind == "toml":  # Hypercorn's own reader (tomllib, or tomli before Python 3.11); what it set is
        import importlib  # in the instance, a property's value under its underscored name

        config_class = importlib.import_module("hypercorn.config").Config
        read = vars(config_class.from_toml(where))
        return {
            key[1:] if key[:1] == "_" and isinstance(getattr(config_class, key[1:], None), property) else key: value
            for key, value in read.items()
        }
    if kind == "python":
        import importlib

        try:
            namespace = vars(importlib.import_module(where))
        except ImportError:  # Hypercorn's `python:module.object`
            module, _, name = where.rpartition(".")
            instance = getattr(importlib.import_module(module), name)
            namespace = {key: getattr(instance, key) for key in dir(instance)}
    else:
        import runpy

        namespace = runpy.run_path(where, run_name="__config__")
    return {key: value for key, value in namespace.items() if not key.startswith("__") and type(value) is not type(os)}


def _both_hooks(ours: Any, theirs: Any) -> Any:
    # Gunicorn checks each hook's arity: when_ready takes (server), child_exit (server, worker)
    if ours.__code__.co_argcount == 1:

        def one(server: Any) -> Any:
            ours(server)
            return theirs(server)

        return one

    def hook(server: Any, worker: Any) -> Any:
        ours(server, worker)
        return theirs(server, worker)

    return hook


def _follow_users_log_destinations(config: dict[str, Any], theirs: Mapping[str, Any], runtime: Any) -> None:
    """Their errorlog and accesslog say where records go; start.py's dictionary still says how they look."""
    for setting, handler, stream, loggers in (
        ("errorlog", "error", "ext://sys.stderr", ()),
        ("accesslog", "access", "ext://sys.stdout", runtime.ACCESS_LOGGERS),
    ):
        if setting not in theirs:
            continue
        target = theirs[setting]
        filters = config["handlers"].get(handler, {}).get("filters")
        config["handlers"][handler] = runtime.log_handler(
            target if isinstance(target, str) else None, stream, buffered=handler == "access"
        )
        if filters:
            config["handlers"][handler]["filters"] = filters
        for name in loggers:
            config["loggers"][name]["handlers"] = [handler] if isinstance(target, str) else []


def _settings_only(namespace: dict[str, Any]) -> None:
    """Leave only the settings in the config file's namespace: Hypercorn copies every name into its
    Config and pickles that for its spawned workers, which functions of this file would not survive."""
    settings = layered_config()
    for name in [name for name in namespace if not name.startswith("__")]:
        del namespace[name]
    namespace.update(settings)


# <<< the layered config file


# --------------------------------------------------------------------------
# The worker keeper. Everything from the marker below to the end marker is
# written out as the module `asgi_start_workers`, which the main process of
# every server imports (hand_over), and Uvicorn's spawned workers for their
# graceful stop; it stands alone like the sections above.
# --------------------------------------------------------------------------

# >>> the worker keeper
# A worker that dies younger than this never got going; this many of them in a row, with no
# worker living longer in between, is a crash loop: the server stops with STOPPED_BY_DEAD_WORKERS.
YOUNG_DEATH_SECONDS = 10.0
YOUNG_DEATHS_TO_STOP = 5
STOPPED_BY_DEAD_WORKERS = 3  # Gunicorn's WORKER_BOOT_ERROR and Uvicorn's STARTUP_FAILURE
# WORKER_MAX_MEMORY and WORKER_LIFETIME, from start.py (JSON): a worker is replaced when its RSS stays
# above the size for MEMORY_CHECKS checks MEMORY_CHECK_SECONDS apart, or when it has lived its lifetime
# plus a random jitter of up to LIFETIME_JITTER of it, so that workers started together leave apart.
RECYCLE_VARIABLE = "ASGI_START_RECYCLE"
MEMORY_CHECKS = 3
MEMORY_CHECK_SECONDS = 10
LIFETIME_JITTER = 0.1
SETTLE_SECONDS = 5  # after a worker starts, before the next is replaced: the new one has warmed up


class Recycler:
    """Which worker WORKER_MAX_MEMORY or WORKER_LIFETIME replaces now, and why in words. The caller asks
    only when no replacement is under way, so that one worker of a server is replaced at a time."""

    def __init__(self, max_memory: int | None, lifetime: int | None) -> None:
        import random
        import time

        self.max_memory = max_memory
        self.lifetime = lifetime
        self.random = random.Random()  # noqa: S311 -- a jitter, not a secret
        self.deadlines: dict[int, float] = {}  # pid: when its lifetime (with jitter) ends
        self.above: dict[int, int] = {}  # pid: consecutive checks above max_memory
        self.next_check = time.monotonic() + MEMORY_CHECK_SECONDS

    @classmethod
    def from_environment(cls) -> Recycler | None:
        import json

        raw = os.environ.get(RECYCLE_VARIABLE)
        if not raw:
            return None
        given = json.loads(raw)
        return cls(given.get("max_memory"), given.get("lifetime"))

    def due(self, workers: dict[int, float], now: float) -> tuple[int, str] | None:
        """`workers`: each serving worker's PID and start (time.monotonic()); the one to replace, and why.
        None as well while the youngest worker is still settling in."""
        if any(now - started < SETTLE_SECONDS for started in workers.values()):
            return None
        for gone in [pid for pid in (*self.deadlines, *self.above) if pid not in workers]:
            self.deadlines.pop(gone, None)
            self.above.pop(gone, None)
        if self.lifetime:
            for pid, started in workers.items():
                if pid not in self.deadlines:
                    self.deadlines[pid] = started + self.lifetime * (1 + self.random.uniform(0, LIFETIME_JITTER))
                deadline = self.deadlines[pid]
                if now >= deadline:
                    age = now - started
                    return (
                        pid,
                        f"{age:.0f} s old, past WORKER_LIFETIME {self.lifetime} s (+{deadline - started - self.lifetime:.0f} s of jitter)",
                    )
        if self.max_memory and now >= self.next_check:
            self.next_check = now + MEMORY_CHECK_SECONDS
            sizes = {pid: resident_memory(pid) or 0 for pid in workers}
            for pid, size in sizes.items():
                self.above[pid] = self.above.get(pid, 0) + 1 if size > self.max_memory else 0
            over = [pid for pid in workers if self.above[pid] >= MEMORY_CHECKS]
            if over:
                pid = max(over, key=sizes.__getitem__)
                return pid, (
                    f"RSS {sizes[pid] / (1 << 20):.0f} MiB, above WORKER_MAX_MEMORY {self.max_memory / (1 << 20):.0f} MiB "
                    f"for {self.above[pid]} checks {MEMORY_CHECK_SECONDS} s apart"
                )
        return None


def resident_memory(pid: int) -> int | None:
    """A process's resident set size in bytes (/proc/PID/statm), None when it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None


def keep_workers(server: str, argv: Sequence[str] = ()) -> None:
    """Before the server's module runs: its main process replaces a dead worker, logs it, and
    exits non-zero when workers die in a loop (Hypercorn 0.18 stopped altogether, with status 0;
    Uvicorn replaced workers that died on every start for ever, and exited 0 after a failed startup;
    Gunicorn exited 1 with a traceback when two workers failed to boot at once)."""
    if server == "hypercorn":
        _keep_hypercorn_workers()
    elif server == "uvicorn":
        _keep_uvicorn_workers()
        _read_before_closing()  # Uvicorn in one process; its spawned workers: see run_uvicorn_worker
    elif server == "gunicorn":
        _reexec_through_hand_over(argv)
        _halt_gunicorn_once()
        _recycle_gunicorn_workers()
        _read_before_closing()  # inherited by the forked Uvicorn workers
    elif server == "granian":
        _signal_safe_granian_main()


def _read_before_closing() -> None:
    """Uvicorn's graceful stop (0.54) closes its listeners and at once every connection without a request
    under way, among them one accepted a moment before whose request is not read yet: that client got a
    reset instead of an answer (2 in 18,000 requests across two worker replacements). Here the listeners
    close first, and the connections a moment later, once what has arrived is read and under way."""
    import importlib

    try:
        server_class: Any = importlib.import_module("uvicorn.server").Server
    except ImportError:
        return
    shutdown = server_class.shutdown
    if getattr(shutdown, "reads_first", False):
        return

    async def read_then_shut_down(self: Any, sockets: Any = None) -> None:
        import asyncio

        for listener in self.servers:
            listener.close()
        await asyncio.sleep(0.05)  # a few turns of the loop: requests already received start being served
        await shutdown(self, sockets)

    read_then_shut_down.reads_first = True  # type: ignore[attr-defined]
    server_class.shutdown = read_then_shut_down


def run_uvicorn_worker(target: Any, *args: Any, **kwargs: Any) -> None:
    """A spawned Uvicorn worker's target (see _keep_uvicorn_workers): its graceful stop reads first."""
    _read_before_closing()
    target(*args, **kwargs)


def _reexec_through_hand_over(argv: Sequence[str]) -> None:
    """Gunicorn re-executes itself on SIGUSR2 with its own argv: through the hand-over again, so that the
    new master finds this runtime and gets the same guards (Gunicorn lets START_CTX be changed for this)."""
    import importlib
    import sys

    arbiter_class: Any = importlib.import_module("gunicorn.arbiter").Arbiter
    setup = arbiter_class.__init__
    again = [sys.executable, os.path.abspath(sys.argv[0]), *argv]  # sys.argv: still hand_over.py's

    def __init__(self: Any, app: Any) -> None:
        setup(self, app)
        self.START_CTX["args"] = list(again)

    arbiter_class.__init__ = __init__


def _signal_safe_granian_main() -> None:
    """Granian's main (2.8) sets a threading.Event from its SIGTERM handler; when the signal came while the
    main thread held that Event's lock (entering its wait, as it does at each turn of its loop), the
    handler waited for the lock forever and the server never stopped (2 SIGTERMs in 6 after worker
    recycling, until SIGKILL). Its Event gets a re-entrant lock, which the handler may take again."""
    import importlib
    import threading

    try:
        server_class: Any = importlib.import_module("granian.server.common").AbstractServer
    except (ImportError, AttributeError):
        return
    setup = server_class.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        setup(self, *args, **kwargs)
        event = getattr(self, "main_loop_interrupt", None)
        if isinstance(event, threading.Event):
            event._cond = threading.Condition(threading.RLock())  # type: ignore[attr-defined]  # before any wait

    server_class.__init__ = __init__


def _halt_gunicorn_once() -> None:
    """Gunicorn (27) halts with WORKER_BOOT_ERROR (3) or APP_LOAD_ERROR (4) when a worker cannot start; a
    second such worker, reaped while it halts, raised that again out of its halt: a traceback and exit
    status 1. While it halts, a worker's exit status is only a worker's exit status."""
    import importlib

    arbiter_class: Any = importlib.import_module("gunicorn.arbiter").Arbiter
    halt = arbiter_class.halt

    def halt_once(self: Any, reason: Any = None, exit_status: int = 0) -> None:
        self.WORKER_BOOT_ERROR = self.APP_LOAD_ERROR = -1  # no exit status; instance attributes, read by reap_workers
        halt(self, reason, exit_status)

    arbiter_class.halt = halt_once


def _recycle_gunicorn_workers() -> None:
    """WORKER_MAX_MEMORY and WORKER_LIFETIME in Gunicorn's master, checked once a loop (about every second):
    the worker due is stopped gracefully (SIGTERM, as MAX_REQUESTS does), and Gunicorn starts another."""
    import importlib
    import signal
    import time

    recycler = Recycler.from_environment()
    if recycler is None:
        return
    arbiter_class: Any = importlib.import_module("gunicorn.arbiter").Arbiter
    murder_workers = arbiter_class.murder_workers
    started: dict[int, float] = {}  # pid: when this loop first saw it
    replacing: list[int] = []

    def murder_and_recycle(self: Any) -> None:
        murder_workers(self)
        now = time.monotonic()
        for pid in self.WORKERS:
            started.setdefault(pid, now)
        for pid in [pid for pid in started if pid not in self.WORKERS]:
            del started[pid]
        if (replacing and replacing[0] in self.WORKERS) or len(self.WORKERS) < self.num_workers:
            return  # one at a time: the last one replaced is still draining, or its successor not started
        replacing.clear()
        due = recycler.due(dict(started), now)
        if due:
            pid, why = due
            replacing.append(pid)
            self.log.info("worker %s replaced: %s; it stops gracefully, and another starts", pid, why)
            self.kill_worker(pid, signal.SIGTERM)

    arbiter_class.murder_workers = murder_and_recycle


def _worker_ended(pid: int | None) -> None:
    """PROMETHEUS_MULTIPROC_DIR: a worker that ended leaves the live gauges (see asgi_start_observe)."""
    runtime: Any = __import__("asgi_start")  # its names, written once there; loaded by the hand-over
    if pid and "metrics" in os.environ.get(runtime.OBSERVE_VARIABLE, "").split(","):
        __import__(runtime.OBSERVE_MODULE).worker_ended(pid)


def how_it_ended(exitcode: int | None) -> str:
    """A multiprocessing exit code in words: `exited with status 1`, `was killed by SIGKILL`."""
    import signal

    if exitcode is None:
        return "vanished"
    if exitcode >= 0:
        return f"exited with status {exitcode}"
    try:
        name = signal.Signals(-exitcode).name
    except ValueError:
        name = f"signal {-exitcode}"
    return f"was killed by {name}" + (" (out of memory?)" if exitcode == -signal.SIGKILL else "")


class WorkerDeaths:
    """The one rule for a worker that ended on its own: a death is replaced and logged in one line,
    unless it completes a crash loop. With MAX_REQUESTS, an exit with status 0 is a recycling, not a
    death; without, it is one (Uvicorn before 0.40 exits 0 when its app's startup fails)."""

    def __init__(self, logger: Any, recycles_by_count: bool = False) -> None:
        self.logger = logger
        self.recycles_by_count = recycles_by_count
        self.young_in_a_row = 0

    def ends_the_server(self, pid: int | None, exitcode: int | None, age: float) -> bool:
        if exitcode == 0 and self.recycles_by_count:
            return False
        self.young_in_a_row = self.young_in_a_row + 1 if age < YOUNG_DEATH_SECONDS else 0
        if self.young_in_a_row < YOUNG_DEATHS_TO_STOP:
            return False
        self.logger.error(
            "worker %s %s %.1f s after it started, the %d. worker in a row to end within %g s of its start: "
            "stopping the server, exit status %d",
            pid,
            how_it_ended(exitcode),
            age,
            self.young_in_a_row,
            YOUNG_DEATH_SECONDS,
            STOPPED_BY_DEAD_WORKERS,
        )
        return True

    def replaced(self, pid: int | None, exitcode: int | None, age: float, replacement: int | None) -> None:
        log = self.logger.info if exitcode == 0 else self.logger.error
        log("worker %s %s after %.1f s; worker %s replaces it", pid, how_it_ended(exitcode), age, replacement)


def _keep_hypercorn_workers() -> None:
    import importlib

    run_module: Any = importlib.import_module("hypercorn.run")
    serve = run_module.run

    def run(config: Any) -> int:
        if config.workers == 0:  # one process, no workers to keep (start.py always runs workers)
            return serve(config)  # type: ignore[no-any-return]
        return HypercornWorkers(config).serve()

    run.__wrapped__ = serve  # type: ignore[attr-defined]
    run_module.run = run


class HypercornWorker:
    __slots__ = ("process", "replace", "shutdown", "started", "stopped_on_purpose")

    def __init__(self, process: Any, shutdown: Any, started: float) -> None:
        self.process = process
        self.shutdown = shutdown  # its own event: one worker can stop while the others serve
        self.started = started
        self.stopped_on_purpose = False
        self.replace = False

    def stop(self, replace: bool = False) -> None:
        if not self.stopped_on_purpose:
            self.stopped_on_purpose, self.replace = True, replace
            self.shutdown.set()


class HypercornWorkers:
    """hypercorn.run.run for config.workers > 0, with dead workers replaced instead of stopping the server.

    The rest is Hypercorn's: spawned workers that ignore SIGINT, SIGTERM and
    SIGINT stopping them gracefully through their shutdown events, SIGHUP and
    the reloader replacing them (on SIGHUP each successor starts first; for
    the reloader once the old worker has ended, so that no connection reaches
    old code after the new serves). Signal handlers only set a flag and wake
    the loop through a pipe: a multiprocessing Event's lock is not safe to
    take in a handler.
    """

    def __init__(self, config: Any) -> None:
        import importlib
        import multiprocessing
        import signal

        if config.worker_class not in ("asyncio", "uvloop", "trio"):
            raise ValueError(f"No worker of class {config.worker_class} exists")
        self.config = config
        self.signals: Any = signal
        self.utils: Any = importlib.import_module("hypercorn.utils")
        package = "trio" if config.worker_class == "trio" else "asyncio"
        runner = importlib.import_module(f"hypercorn.{package}.run")
        self.worker_function = getattr(runner, f"{config.worker_class}_worker")
        self.context: Any = multiprocessing.get_context("spawn")
        # Logging set up here as in each worker; not through config.log, which would be pickled for the workers
        self.logger = config.logger_class(config).error_logger or importlib.import_module("logging").getLogger(
            "hypercorn.error"
        )
        self.deaths = WorkerDeaths(self.logger, config.max_requests is not None)
        self.recycler = Recycler.from_environment()
        self.workers: dict[Any, HypercornWorker] = {}  # by the process's sentinel
        self.wake_up, self.waker = os.pipe()
        os.set_blocking(self.waker, False)
        self.stopping = False
        self.restarting = False
        self.status = 0

    def serve(self) -> int:
        import time
        from multiprocessing.connection import wait

        config = self.config
        if config.pid_path is not None:
            self.utils.write_pid_file(config.pid_path)
        self.sockets = config.create_sockets()
        files: list[Any] = []
        if config.use_reloader:
            # as Hypercorn does: the app imported here, so that its files are the ones watched
            self.utils.load_application(config.application_path, config.wsgi_max_body_size)
            files = self.utils.files_to_watch()
        for _ in range(config.workers):
            self.start_worker()
        for name in ("SIGINT", "SIGTERM"):
            self.signals.signal(getattr(self.signals, name), self.stop)
        self.signals.signal(self.signals.SIGHUP, self.restart)
        kill_at = None
        while self.workers:
            for ready in wait([*self.workers, self.wake_up], timeout=1):
                if ready == self.wake_up:
                    os.read(self.wake_up, 64)
                else:
                    self.ended(ready)
            if files and not self.stopping and self.utils.check_for_updates(files):
                files = self.utils.files_to_watch()  # as Hypercorn's loop does after each reload
                for worker in self.workers.values():
                    worker.stop(replace=True)  # no old code serves once a new worker does
            if self.restarting and not self.stopping:
                self.restarting = False
                for worker in list(self.workers.values()):
                    self.start_worker()  # SIGHUP: each successor first, so that none of the capacity goes
                    worker.stop()
            if self.recycler and not self.stopping:
                self.recycle(self.recycler)
            if self.stopping:
                for worker in self.workers.values():
                    worker.stop()
                kill_at = kill_at or time.monotonic() + config.graceful_timeout + 5
                if time.monotonic() > kill_at:
                    for worker in self.workers.values():
                        self.logger.error("worker %s did not stop within GRACEFUL_TIMEOUT: killed", worker.process.pid)
                        worker.process.kill()
                    kill_at = float("inf")
        for sock in (*self.sockets.secure_sockets, *self.sockets.insecure_sockets):
            sock.close()
        return self.status

    def start_worker(self) -> Any:
        import time

        shutdown = self.context.Event()
        process = self.context.Process(
            target=self.worker_function,
            kwargs={"config": self.config, "shutdown_event": shutdown, "sockets": self.sockets},
        )
        process.daemon = getattr(self.config, "daemon", False)  # Hypercorn 0.17 has none
        # Spawned with SIGINT ignored, as Hypercorn's workers are: an ignored signal survives the exec
        handler = self.signals.signal(self.signals.SIGINT, self.signals.SIG_IGN)
        try:
            process.start()
        finally:
            self.signals.signal(self.signals.SIGINT, handler)
        self.workers[process.sentinel] = HypercornWorker(process, shutdown, time.monotonic())
        return process

    def ended(self, sentinel: Any) -> None:
        import time

        worker = self.workers.pop(sentinel)
        worker.process.join()
        _worker_ended(worker.process.pid)
        if self.stopping or worker.stopped_on_purpose:
            if worker.replace and not self.stopping:
                self.start_worker()
            return
        age = time.monotonic() - worker.started
        pid, exitcode = worker.process.pid, worker.process.exitcode
        if self.deaths.ends_the_server(pid, exitcode, age):
            self.status = STOPPED_BY_DEAD_WORKERS
            self.stopping = True
            return
        self.deaths.replaced(pid, exitcode, age, self.start_worker().pid)

    def recycle(self, recycler: Recycler) -> None:
        """WORKER_MAX_MEMORY and WORKER_LIFETIME: the successor starts, then the worker due stops gracefully."""
        import time

        serving = {worker.process.pid: worker for worker in self.workers.values() if not worker.stopped_on_purpose}
        if len(serving) < len(self.workers):
            return  # one at a time: the last one replaced is still draining
        due = recycler.due({pid: worker.started for pid, worker in serving.items()}, time.monotonic())
        if due:
            pid, why = due
            successor = self.start_worker()
            serving[pid].stop()
            self.logger.info("worker %s replaced: %s; worker %s takes its place", pid, why, successor.pid)

    def stop(self, *_: Any) -> None:
        self.stopping = True
        self.wake()

    def restart(self, *_: Any) -> None:
        self.restarting = True
        self.wake()

    def wake(self) -> None:
        try:  # noqa: SIM105 -- no import in a signal handler
            os.write(self.waker, b"!")
        except BlockingIOError:  # the pipe is full: the loop has wake-ups enough
            pass


def _keep_uvicorn_workers() -> None:
    """Uvicorn's `--workers` supervisor (0.30+), with its replacement of a dead worker made to log
    the death in one line, and to stop the server non-zero on a failed startup or a crash loop."""
    import importlib
    import time

    module: Any = importlib.import_module("uvicorn.supervisors.multiprocess")
    supervisor, worker = module.Multiprocess, module.Process
    if not hasattr(supervisor, "keep_subprocess_alive"):  # an older Uvicorn replaces no worker
        return
    # a worker's exit status when its app's startup failed (in uvicorn.main before 0.40)
    startup_failure = getattr(importlib.import_module("uvicorn.config"), "STARTUP_FAILURE", 3)
    logger = __import__("logging").getLogger("uvicorn.error")
    start, run = worker.start, supervisor.run
    recycler = Recycler.from_environment()
    draining: list[Any] = []  # workers replaced by the recycler, finishing their requests

    def start_stamped(self: Any) -> None:
        self.started_at = time.monotonic()
        start(self)

    spawn = module.get_subprocess

    def new_worker(self: Any) -> Any:
        # Uvicorn before 0.40 (Python 3.9's) gives each worker the supervisor's target
        return (
            worker(self.config, self.target, self.sockets)
            if hasattr(self, "target")
            else worker(self.config, self.sockets)
        )

    def get_subprocess(config: Any, target: Any, sockets: Any) -> Any:
        import functools

        return spawn(config, functools.partial(run_uvicorn_worker, target), sockets)

    def keep_subprocess_alive(self: Any) -> None:
        if self.should_exit.is_set():
            return
        deaths = self.__dict__.get("asgi_start_deaths")
        if deaths is None:
            deaths = self.asgi_start_deaths = WorkerDeaths(logger, self.config.limit_max_requests is not None)
        for index, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            hung = process.process.is_alive()
            process.kill()
            process.join()
            _worker_ended(process.pid)
            if self.should_exit.is_set():
                return
            age = time.monotonic() - getattr(process, "started_at", time.monotonic())
            if hung:
                logger.error(
                    "worker %s did not answer the health check within %g s: killed",
                    process.pid,
                    self.config.timeout_worker_healthcheck,
                )
            if process.process.exitcode == startup_failure:
                # its app's startup failed: every replacement would fail the same way (as Uvicorn judges)
                logger.error(
                    "worker %s failed to start its app: stopping the server, exit status %d",
                    process.pid,
                    STOPPED_BY_DEAD_WORKERS,
                )
                self.asgi_start_status = STOPPED_BY_DEAD_WORKERS
                self.should_exit.set()
                return
            if deaths.ends_the_server(process.pid, process.process.exitcode, age):
                self.asgi_start_status = STOPPED_BY_DEAD_WORKERS
                self.should_exit.set()
                return
            replacement = new_worker(self)
            replacement.start()
            self.processes[index] = replacement
            deaths.replaced(process.pid, process.process.exitcode, age, replacement.pid)
        for old in [old for old in draining if not old.process.is_alive()]:
            old.join()
            _worker_ended(old.pid)
            draining.remove(old)
        if recycler and not draining:
            recycle(self, recycler)

    def recycle(self: Any, recycler: Recycler) -> None:
        """WORKER_MAX_MEMORY and WORKER_LIFETIME: the successor starts, then the worker due stops gracefully."""
        now = time.monotonic()
        due = recycler.due({process.pid: getattr(process, "started_at", now) for process in self.processes}, now)
        if due:
            pid, why = due
            index = next(index for index, process in enumerate(self.processes) if process.pid == pid)
            successor = new_worker(self)
            successor.start()
            old, self.processes[index] = self.processes[index], successor
            old.terminate()
            draining.append(old)
            logger.info("worker %s replaced: %s; worker %s takes its place", pid, why, successor.pid)

    def run_to_status(self: Any) -> None:
        run(self)
        for old in draining:  # told to stop already: let them finish
            old.join()
        if getattr(self, "asgi_start_status", 0):
            raise SystemExit(self.asgi_start_status)

    worker.start = start_stamped
    module.get_subprocess = get_subprocess  # the name Process.__init__ looks up
    supervisor.keep_subprocess_alive = keep_subprocess_alive
    supervisor.run = run_to_status


# <<< the worker keeper


# --------------------------------------------------------------------------
# Observing the workers. Everything from the marker below to the end marker
# is written out as the module `asgi_start_observe`, imported only by the
# processes of a server that start.py asked to observe its workers
# (OTEL_AUTO_INSTRUMENT or an injected OpenTelemetry sitecustomize, and
# PROMETHEUS_MULTIPROC_DIR); it stands alone like the sections above.
# --------------------------------------------------------------------------

# >>> observing the workers
# prometheus_client's live gauges: `gauge_<mode>_<pid>.db` with one of these modes.
LIVE_GAUGE_PREFIX = "gauge_live"
# The server's main process, which never starts OpenTelemetry (set there by observe_workers).
MAIN_PID_VARIABLE = "ASGI_START_MAIN_PID"
# The OpenTelemetry sitecustomize directory start.py took off PYTHONPATH, for the app's own processes.
OTEL_SITECUSTOMIZE_VARIABLE = "ASGI_START_OTEL_SITECUSTOMIZE"
_STARTED: list[int] = []  # the process whose worker_started ran (a fork copies the list)


def _observing() -> list[str]:
    import importlib

    return os.environ.get(importlib.import_module("asgi_start").OBSERVE_VARIABLE, "").split(",")


def observe_workers(server: str) -> None:
    """In the server's main process, before its module runs: every worker it starts calls worker_started
    before it imports the app. Hypercorn's and Granian's do it in start.py's app wrappers."""
    import importlib

    if server in ("hypercorn", "granian"):  # their main process may load the app through the wrapper (a reloader)
        os.environ[MAIN_PID_VARIABLE] = str(os.getpid())
    if server == "gunicorn":
        worker_class: Any = importlib.import_module("gunicorn.workers.base").Worker
        init_process = worker_class.init_process

        def init_process_observed(self: Any) -> None:
            worker_started()
            init_process(self)

        worker_class.init_process = init_process_observed
    elif server == "uvicorn":
        # Spawned workers (--workers, --reload) unpickle their target by name: this module's, which runs
        # Uvicorn's own in the worker. With one worker Uvicorn serves in its main process: that is the worker.
        spawning: Any = importlib.import_module("uvicorn._subprocess")
        spawning.subprocess_started = uvicorn_subprocess_started
        server_class: Any = importlib.import_module("uvicorn.server").Server
        run = server_class.run

        def run_observed(self: Any, sockets: Any = None) -> None:
            worker_started()
            run(self, sockets)

        server_class.run = run_observed


def uvicorn_subprocess_started(**kwargs: Any) -> None:
    """A spawned Uvicorn worker's first code, then Uvicorn's own (`subprocess_started` of its `_subprocess` module)."""
    import importlib

    worker_started()
    importlib.import_module("uvicorn._subprocess").subprocess_started(**kwargs)


def worker_started() -> None:
    """In a worker, before it imports the app: prometheus_client's files of dead workers swept, OpenTelemetry
    started; and at the worker's end, its providers flushed and its live gauges removed."""
    if os.getpid() in _STARTED or os.environ.get(MAIN_PID_VARIABLE) == str(os.getpid()):
        return
    _STARTED[:] = [os.getpid()]
    observing = _observing()
    if "metrics" in observing:
        sweep_dead_workers(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""))
    if "otel" in observing:
        start_opentelemetry()
    import atexit
    import importlib
    import sys

    atexit.register(worker_ends)
    if "multiprocessing" in sys.modules and sys.modules["multiprocessing"].parent_process() is not None:
        # a multiprocessing child (Granian's forked worker) ends with os._exit: no atexit, only its finalizers
        importlib.import_module("multiprocessing.util").Finalize(None, worker_ends, exitpriority=0)
    if "uvicorn" in sys.modules:
        _end_after_uvicorn_shutdown(importlib.import_module("uvicorn.server").Server)


def _end_after_uvicorn_shutdown(server_class: Any) -> None:
    """Uvicorn, once shut down, raises again the SIGTERM it caught, and the worker dies of it (no atexit)."""
    shutdown = server_class.shutdown

    async def shutdown_then_end(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            await shutdown(self, *args, **kwargs)
        finally:
            worker_ends()

    server_class.shutdown = shutdown_then_end


def worker_ends() -> None:
    if os.getpid() not in _STARTED:
        return
    _STARTED.clear()
    observing = _observing()
    if "otel" in observing:
        stop_opentelemetry()
    if "metrics" in observing:
        worker_ended(os.getpid())


def start_opentelemetry() -> None:
    """opentelemetry-instrumentation's auto-instrumentation, as its sitecustomize runs it, in this worker.

    The resource gets a service.instance.id of this worker's own: a random one,
    or the one given (the Operator gives one per container) with the PID after it.
    """
    import importlib

    injected = os.environ.pop(OTEL_SITECUSTOMIZE_VARIABLE, "")
    if injected:  # the app's own processes are instrumented as the wrapped command asked
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, (injected, os.environ.get("PYTHONPATH"))))
    given = os.environ.get("OTEL_RESOURCE_ATTRIBUTES")
    os.environ["OTEL_RESOURCE_ATTRIBUTES"] = with_instance_id(given or "", os.getpid())
    try:
        importlib.import_module("opentelemetry.instrumentation.auto_instrumentation").initialize()
    finally:
        if given is None:
            del os.environ["OTEL_RESOURCE_ATTRIBUTES"]
        else:
            os.environ["OTEL_RESOURCE_ATTRIBUTES"] = given


def with_instance_id(attributes: str, pid: int) -> str:
    """OTEL_RESOURCE_ATTRIBUTES (`key=value,...`) with a service.instance.id for the worker `pid`."""
    import uuid

    pairs = [pair for pair in attributes.split(",") if pair.strip()]
    given = [
        pair.partition("=")[2].strip() for pair in pairs if pair.partition("=")[0].strip() == "service.instance.id"
    ]
    others = [pair for pair in pairs if pair.partition("=")[0].strip() != "service.instance.id"]
    instance = f"{given[-1]}-{pid}" if given and given[-1] else str(uuid.uuid4())
    return ",".join([*others, f"service.instance.id={instance}"])


def stop_opentelemetry() -> None:
    """Every provider the SDK set flushed and shut down (the SDK's own atexit handlers then do nothing)."""
    import contextlib
    import importlib

    for module, getter in (
        ("opentelemetry.trace", "get_tracer_provider"),
        ("opentelemetry.metrics", "get_meter_provider"),
        ("opentelemetry._logs", "get_logger_provider"),
    ):
        with contextlib.suppress(Exception):
            provider = getattr(importlib.import_module(module), getter)()
            if hasattr(provider, "shutdown"):  # the API's proxies have none: nothing was set up
                provider.shutdown()


def sweep_dead_workers(directory: str) -> None:
    """The live gauges of processes that are gone (and of an earlier process with this PID, which this worker
    has not written to yet): under Granian, whose main process has no hook, a dead worker's end is seen here."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    dead = set()
    for name in names:
        if name.startswith(LIVE_GAUGE_PREFIX) and name.endswith(".db"):
            number = name[: -len(".db")].rpartition("_")[2]
            if number.isdigit() and (int(number) == os.getpid() or not is_running(int(number))):
                dead.add(int(number))
    for pid in sorted(dead):
        worker_ended(pid)


def is_running(pid: int) -> bool:
    """Whether the process exists and has not ended (a zombie has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return True  # no /proc: it exists
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"


def worker_ended(pid: int) -> None:
    """A worker that ended leaves prometheus_client's live gauges (as Gunicorn's child_exit hook does)."""
    import importlib

    try:
        multiprocess = importlib.import_module("prometheus_client.multiprocess")
    except ImportError:  # the app does not use prometheus_client
        return
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        multiprocess.mark_process_dead(pid, directory)


# <<< observing the workers


# --------------------------------------------------------------------------
# The access log. Everything from the marker below to the end marker is
# written out as the module `asgi_start_access`, which the logging
# configuration names for the access log on stdout (the default); it stands
# alone like the sections above.
# --------------------------------------------------------------------------

# >>> the access log
# Records wait at most this long, or until this many characters wait, before one write: at most this much of
# the log is lost when a worker is killed (SIGKILL, out of memory); a graceful stop loses nothing.
FLUSH_SECONDS = 0.1
FLUSH_CHARACTERS = 64 * 1024
_HANDLERS: list[Any] = []  # every access handler of this process, flushed when a worker ends
_CLASS: list[Any] = []


def access_handler(stream: Any) -> Any:
    """The access log's handler: the records formatted as they come, written in batches (see the README)."""
    if not _CLASS:
        _CLASS.append(_handler_class())
    handler = _CLASS[0](stream)
    _HANDLERS.append(handler)
    return handler


def flush_all() -> None:
    for handler in list(_HANDLERS):
        handler.flush()


def _handler_class() -> Any:
    import logging
    import threading

    class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
        """A StreamHandler that writes what gathered in one write call: a system call, and a wake-up of the
        reader of a pipe (the container runtime), for each batch instead of each record.

        Lines are formatted in the caller's context (trace ids, as they are) and
        kept per process: a forked child drops what its parent had not written.
        A thread writes them every FLUSH_SECONDS; the end of the process writes
        the rest (logging's atexit, a multiprocessing child's finalizers, and
        Uvicorn's shutdown, after which Uvicorn dies of the signal it caught).
        """

        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self.lines: list[str] = []
            self.characters = 0
            self.pid = 0

        def emit(self, record: logging.LogRecord) -> None:
            try:
                line = self.format(record) + "\n"
            except Exception:
                self.handleError(record)
                return
            if self.pid != os.getpid():
                self.started()
            self.lines.append(line)
            self.characters += len(line)
            if self.characters >= FLUSH_CHARACTERS:
                self.flush()

        def flush(self) -> None:
            with self.lock:  # type: ignore[union-attr]
                if self.pid != os.getpid():
                    self.lines, self.characters = [], 0  # a fork's copy: the parent writes them
                elif self.lines:
                    text, self.lines, self.characters = "".join(self.lines), [], 0
                    try:
                        self.stream.write(text)
                        self.stream.flush()
                    except Exception:
                        self.handleError(logging.makeLogRecord({"msg": "access log: write failed"}))

        def started(self) -> None:
            """The first record of this process: its writer thread, and its flush at the end."""
            import sys

            self.pid, self.lines, self.characters = os.getpid(), [], 0
            threading.Thread(target=self.write_every, args=(self.pid,), name="access log", daemon=True).start()
            if "multiprocessing" in sys.modules and sys.modules["multiprocessing"].parent_process() is not None:
                # Granian's forked worker ends with os._exit: no atexit, only multiprocessing's finalizers
                sys.modules["multiprocessing"].util.Finalize(None, flush_all, exitpriority=10)
            if "uvicorn.server" in sys.modules:
                _flush_after_uvicorn_shutdown(sys.modules["uvicorn.server"].Server)

        def close(self) -> None:
            self.flush()
            self.pid = -1  # its writer thread ends
            super().close()

        def write_every(self, pid: int) -> None:
            import time

            while self.pid == pid:
                time.sleep(FLUSH_SECONDS)
                if self.lines:
                    self.flush()

    return BatchingHandler


def _flush_after_uvicorn_shutdown(server_class: Any) -> None:
    shutdown = server_class.shutdown
    if getattr(shutdown, "flushes_access_log", False):
        return

    async def shutdown_then_flush(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            await shutdown(self, *args, **kwargs)
        finally:
            flush_all()

    shutdown_then_flush.flushes_access_log = True  # type: ignore[attr-defined]
    server_class.shutdown = shutdown_then_flush


# <<< the access log


def run_source_if_bytecode_is_stale(argv: Sequence[str]) -> None:
    """Run as its compiled bytecode (`python /start.pyc`, as the image does, which skips
    compiling this file on every start): if start.py beside it has changed since it was
    compiled (an image built FROM ours that copies a newer start.py), run that instead.

    The image compiles it with a checked source hash, the one CPython's own
    hash-based .pyc files carry, so this costs one read of start.py.
    """
    if not __file__.endswith(".pyc"):
        return
    import _imp

    bootstrap: Any = sys.modules["_frozen_importlib_external"]
    source_path = launcher_path()
    try:
        with open(__file__, "rb") as file:
            header = file.read(16)
        with open(source_path, "rb") as file:
            source = file.read()
    except OSError:
        return  # no source beside it: the bytecode is all there is
    flags = int.from_bytes(header[4:8], "little")
    if flags & 1 and header[8:16] == _imp.source_hash(bootstrap._RAW_MAGIC_NUMBER, source):
        return
    os.execve(sys.executable, [sys.executable, source_path, *argv], os.environ)  # noqa: S606 -- an argv list


if __name__ == "__main__":
    run_source_if_bytecode_is_stale(sys.argv[1:])
    sys.exit(main())
