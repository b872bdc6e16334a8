"""Bad input never crashes the launcher: arbitrary strings in every variable of the contract.

Property: `start.py --dry-run` either succeeds (exit 0, stdout one JSON object) or exits 2
with every stderr line starting `asgi-start: error: ` and naming a variable that was set;
never a traceback, never another status. The bulk runs in-process (`start.main`), a small
sample through a real subprocess with the values in a real environment.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import start

PREFIX = "asgi-start: error: "
NAMES = sorted({name for var in start.VARIABLES for name in (var.name, *var.aliases)})

settings.register_profile(
    "env-fuzz",
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("env-fuzz-subprocess", parent=settings.get_profile("env-fuzz"), max_examples=30)
# A longer hunt, by hand: ENV_FUZZ_EXAMPLES=20000 python -m pytest tests/unit/test_env_fuzz.py
HUNT = int(os.environ.get("ENV_FUZZ_EXAMPLES") or 0)

# Values at the edges of what the parsers accept: things that parse and then break later.
EDGES = [
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "-0",
    "+0",
    "0",
    "1",
    "+5",
    " 8 ",
    "-1",
    "0x10",
    "0o7",
    "0b1",
    "1_000",
    "1e309",
    "-1e309",
    "1e308",
    "1.7976931348623157e308",
    "1e300",
    "1e-320",
    "5e-324",
    "0.0000001",
    "inf",
    "-inf",
    "Infinity",
    "nan",
    "NaN",
    "٣",  # ARABIC-INDIC DIGIT THREE: int() says 3
    "١٠٠",
    "１２",  # fullwidth
    "𝟗",  # mathematical bold nine
    "²",
    "½",
    "65535",
    "65536",
    "2147483648",
    "18446744073709551616",
    "1" + "0" * 400,  # parses as int, too large for a float
    "9" * 4300,
    "9" * 5000,  # beyond CPython's int-string limit
    "default",
    "true",
    "TRUE",
    "y",
    "no",
    "maybe",
    "gunicorn",
    "Hypercorn",
    " uvicorn ",
    "asgi",
    "uvloop",
    "trio",
    "python:os",
    "file:",
    "python:",
    ":",
    "main:app",
    "main:",
    ":app",
    "app.main:app",
    "-",
    "/",
    ".",
    "..",
    "../..",
    "/dev/null",
    "/proc/self/environ",
    "unix:",
    "unix:/",
    "fd://",
    "fd://-1",
    "fd://٣",
    "fd://99999999999999999999",
    "127.0.0.1:0",
    "127.0.0.1:٣",
    "127.0.0.1:+80",
    "[::1]:80",
    "[::1]",
    "[:80",
    "::1:80",
    ":80",
    "a:b:c",
    ",",
    ",,,",
    "127.0.0.1:80,",
    " a b ",
    "x\ny",
    "dir\n/file",
    "a\rb",
    "\x1b[31mred",
    "\x7f",
    "\u2028",
    "\u200b",
    "\ufeff1",
    "\udcff",  # an undecodable byte in the environment, as os.environ shows it
    "é",
    "💥",
    "a" * 100_000,
]

SHORT = [value for value in EDGES if len(value) < 1000]

# Text the environment can carry: no NUL, and no lone surrogates except the
# \udc80-\udcff that os.environ uses for undecodable bytes.
ENV_CHARACTERS = st.one_of(
    st.characters(min_codepoint=1, max_codepoint=0x7F),
    st.characters(min_codepoint=1, blacklist_categories=("Cs",)),
    st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),
)
CONTROL = st.characters(min_codepoint=1, max_codepoint=0x1F)


@st.composite
def numbers_at_the_edges(draw) -> str:
    digits = draw(st.sampled_from(["0123456789", "٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９", "𝟎𝟏𝟐𝟑𝟒𝟓𝟔𝟕𝟖𝟗"]))
    body = "".join(draw(st.lists(st.sampled_from(digits), min_size=1, max_size=6)))
    number = draw(
        st.one_of(
            st.just(body),
            st.integers(min_value=-(2**70), max_value=2**70).map(str),
            st.floats(allow_nan=True, allow_infinity=True).map(repr),
            st.sampled_from(["1e", "e5", ".", "1.", ".5", "-.0", "1e-400", "1e400", "0.5"]),
        )
    )
    sign = draw(st.sampled_from(["", "", "+", "-", " -", "--"]))
    pad = draw(st.sampled_from(["", "", " ", "\t", "\n", "\x0b", "\x1c", "\u3000", "\xa0"]))
    return f"{pad}{sign}{number}{pad}"


VALUES = st.one_of(
    st.sampled_from(EDGES),
    numbers_at_the_edges(),
    st.text(ENV_CHARACTERS, max_size=40),
    st.text(CONTROL, min_size=1, max_size=5),
    st.builds(
        "{}{}{}".format, st.sampled_from(SHORT), st.sampled_from(["", ",", ":", "/", "\n", " "]), st.sampled_from(SHORT)
    ),
    st.builds(
        "{}:{}".format, st.sampled_from(["127.0.0.1", "::1", "[::1]", "", "localhost", "é"]), numbers_at_the_edges()
    ),
    st.text(ENV_CHARACTERS, min_size=2000, max_size=5000),
)
ENVIRONS = st.dictionaries(st.sampled_from(NAMES), VALUES, min_size=1, max_size=4)

# Environments that once crashed start.py with a traceback (overflow in the worker
# arithmetic); now refused by the parsers' upper bounds with a one-line error.
FORMER_CRASHES = [
    {"WORKERS_PER_CORE": "1e308"},
    {"WORKERS_PER_CORE": "1.7976931348623157e308"},
    {"PYTHON_CPU_COUNT": "1" + "0" * 400},
    {"PYTHON_CPU_COUNT": "9" * 4300},
    {"WORKERS_PER_CORE": "1e200", "PYTHON_CPU_COUNT": "1" + "0" * 200},
    {"BACKLOG": str(2**32)},
]


# Paths are printed in error messages: a newline in one must not split the one-line error.
NEWLINE_IN_PATHS = [
    {"ACCESS_LOG": "dir\n/file"},
    {"ERROR_LOG": "dir\n/file"},
    {"GUNICORN_CONF": "x\ny"},
    {"SERVER": "hypercorn", "HYPERCORN_CONF": "x\ny"},
    {"PRE_START_PATH": "x\ny"},
    {"CERTFILE": "x\ny", "KEYFILE": "x\ny"},
    {"CA_CERTS": "x\ny"},
    {"RELOAD_DIRS": "x\ny"},
    {"RELOAD_DIRS": "a,b\nc"},
    {"LOGGING_CONF": "x\ny"},
    {"LOG_FORMAT": "json", "ACCESS_LOG": "dir\n/file"},
]


def mentions(line: str, names: set[str]) -> bool:
    return any(re.search(rf"(?<![A-Z_]){name}(?![A-Z_])", line) for name in names)


def check_outcome(environ: dict[str, str], status: object, stdout: str, stderr: str) -> None:
    """The property, for one run of `--dry-run`."""
    assert "Traceback" not in stderr, stderr[-3000:]
    assert status in (0, 2), f"exit status {status!r}\n{stderr[-3000:]}"
    if status == 0:
        plan = json.loads(stdout)
        assert isinstance(plan, dict)
        assert plan["workers"] >= 1 and plan["argv"]
        return
    assert stdout == "", stdout[:500]
    lines = stderr.rstrip("\n").split("\n")
    assert lines != [""], "exit 2 without a message"
    as_json = environ.get("LOG_FORMAT", "").strip().lower() == "json"
    for line in lines:
        if as_json:  # LOG_FORMAT=json: one JSON object per line, level "error"
            entry = json.loads(line)
            assert entry["level"] == "error" and entry["logger"] == "asgi-start", line[:300]
            line = PREFIX + entry["message"]  # noqa: PLW2901
            assert "\n" not in line, f"a JSON message with a newline in it: {line[:300]!r}"
        assert line.startswith(PREFIX), f"not a one-line error: {line[:300]!r}\nin {stderr[:2000]!r}"
        assert mentions(line, set(environ)), f"names none of {sorted(environ)}: {line[:300]!r}"


APP = "async def app(scope, receive, send):\n    pass\n"


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory):
    """start.py reads the working directory as the app directory: one with a main.py."""
    directory = tmp_path_factory.mktemp("fuzz-app")
    (directory / "main.py").write_text(APP)
    previous = os.getcwd()
    os.chdir(directory)
    yield directory
    os.chdir(previous)


def dry_run_in_process(environ: dict[str, str]) -> tuple[object, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status: object = start.main(["--dry-run"], environ)
        except SystemExit as exit_:
            status = exit_.code
        except Exception as error:  # anything else escaping main() is a traceback for the user
            status = f"{type(error).__name__}: {error!s:.300}"
            stderr.write(f"Traceback (in process): {status}\n")
    return status, stdout.getvalue(), stderr.getvalue()


@settings(settings.get_profile("env-fuzz"), max_examples=HUNT or 400)
@given(environ=ENVIRONS)
def test_any_environment_gives_a_plan_or_one_line_errors_in_process(app_dir, environ):
    status, stdout, stderr = dry_run_in_process(environ)
    check_outcome(environ, status, stdout, stderr)


@pytest.fixture(scope="module")
def without_config_files(tmp_path_factory):
    """start.py as if copied alone: no config file beside it, so every setting goes on the command line."""
    empty = tmp_path_factory.mktemp("start-alone")
    (empty / "start.py").write_text(Path(start.__file__).read_text())
    original = start.launcher_path
    start.launcher_path = lambda: str(empty / "start.py")
    yield
    start.launcher_path = original


@settings(settings.get_profile("env-fuzz"), max_examples=HUNT or 300)
@given(environ=ENVIRONS)
def test_any_environment_without_config_files_gives_a_plan_or_one_line_errors(app_dir, without_config_files, environ):
    status, stdout, stderr = dry_run_in_process(environ)
    check_outcome(environ, status, stdout, stderr)
    if status == 0 and not {"GUNICORN_CONF", "HYPERCORN_CONF"} & set(environ):
        assert json.loads(stdout)["config_file"] is None


@pytest.mark.parametrize("name", NAMES)
def test_every_edge_value_in_every_variable(app_dir, name):
    """Each edge value alone in each variable, deterministically."""
    failures = []
    for value in EDGES:
        environ = {name: value}
        status, stdout, stderr = dry_run_in_process(environ)
        try:
            check_outcome(environ, status, stdout, stderr)
        except AssertionError as error:
            failures.append(f"{value[:40]!r}: {str(error)[:200]}")
    assert failures == []


@pytest.mark.parametrize("environ", FORMER_CRASHES)
def test_numbers_too_large_are_one_line_errors(app_dir, environ):
    status, stdout, stderr = dry_run_in_process(environ)
    assert status == 2
    check_outcome(environ, status, stdout, stderr)


@pytest.mark.parametrize("environ", NEWLINE_IN_PATHS)
def test_a_newline_in_a_path_does_not_split_the_error_line(app_dir, environ):
    status, stdout, stderr = dry_run_in_process(environ)
    assert status == 2
    check_outcome(environ, status, stdout, stderr)
