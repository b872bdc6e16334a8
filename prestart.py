#!/usr/bin/env python3
"""Example pre-start script for asgi-start: wait until the services the app needs accept connections.

    WAIT_FOR="db:5432,cache:6379" WAIT_FOR_TIMEOUT=30 python prestart.py

Every ``host:port`` in ``WAIT_FOR`` (comma-separated; ``[IPv6]:port`` too) is
tried over TCP until it accepts a connection or ``WAIT_FOR_TIMEOUT`` seconds
(default 30) have passed. Exit status: 0 when all are reachable (or WAIT_FOR
is empty), 1 naming the services still unreachable, 2 for a bad variable.

Put your own one-off steps (database migrations, say) after ``wait_for``.
Standard library only, like start.py.
"""

from __future__ import annotations

import os
import socket
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable

DEFAULT_TIMEOUT = 30.0
RETRY_INTERVAL = 0.5


def parse_targets(raw: str) -> list[tuple[str, int]]:
    """'db:5432, [::1]:6379' -> [('db', 5432), ('::1', 6379)]; ValueError names a bad entry."""
    targets = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = item.rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"WAIT_FOR entry {item!r} is not HOST:PORT")
        targets.append((host, int(port_text)))
    return targets


def parse_timeout(raw: str) -> float:
    try:
        timeout = float(raw) if raw.strip() else DEFAULT_TIMEOUT
    except ValueError:
        timeout = -1.0
    if not 0 <= timeout < float("inf"):
        raise ValueError(f"WAIT_FOR_TIMEOUT={raw!r} is not a number of seconds >= 0")
    return timeout


def accepts_connection(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=max(timeout, 0.1)):
            return True
    except OSError:
        return False


def wait_for(targets: list[tuple[str, int]], timeout: float, log: Callable[[str], None] = print) -> list[str]:
    """Wait until every target accepts a TCP connection; the ones that never did."""
    deadline = time.monotonic() + timeout
    pending = list(targets)
    while True:
        for host, port in list(pending):
            if accepts_connection(host, port, min(2.0, max(deadline - time.monotonic(), 0.1))):
                pending.remove((host, port))
                log(f"prestart: {host}:{port} is up")
        remaining = deadline - time.monotonic()
        if not pending or remaining <= 0:
            return [f"{host}:{port}" for host, port in pending]
        names = ", ".join(f"{host}:{port}" for host, port in pending)
        log(f"prestart: waiting for {names} ({remaining:.0f}s left)")
        time.sleep(min(RETRY_INTERVAL, remaining))


def main(environ: dict[str, str] | None = None) -> int:
    environ = dict(os.environ if environ is None else environ)
    try:
        targets = parse_targets(environ.get("WAIT_FOR", ""))
        timeout = parse_timeout(environ.get("WAIT_FOR_TIMEOUT", ""))
    except ValueError as error:
        print(f"prestart: error: {error}", file=sys.stderr)
        return 2
    if not targets:
        print("prestart: nothing to wait for (WAIT_FOR is empty)", flush=True)
        return 0
    unreachable = wait_for(targets, timeout, lambda line: print(line, flush=True))
    if unreachable:
        print(f"prestart: error: still unreachable after {timeout:g}s: {', '.join(unreachable)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
