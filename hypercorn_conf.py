"""Default Hypercorn configuration of asgi-start.

Every setting comes from the environment through start.py, which must sit
beside this file, so parsing, defaults and the worker arithmetic live in one
place. It works the same under ``python start.py`` and by hand:

    hypercorn -c file:hypercorn_conf.py main:app

To extend it rather than replace it, begin your own config file with

    import runpy
    globals().update(runpy.run_path("/hypercorn_conf.py"))  # the path of this file

and set below that line only what you change.
"""

import importlib.util
import os
import sys

# Loaded as a module, not run as a script, so that its cached bytecode is used; as
# `asgi_start`, the name under which the servers also find its log formatter.
_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "start.py")
_spec = importlib.util.spec_from_file_location("asgi_start", _path)
if _spec is None or _spec.loader is None:
    raise SystemExit(f"asgi-start: error: cannot load {_path}, which hypercorn_conf.py needs beside it")
_launcher = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("asgi_start", _launcher)
_spec.loader.exec_module(_launcher)
globals().update(_launcher.hypercorn_config())
# Hypercorn copies every public name here into its Config and pickles that for
# its spawned workers, so only plain values may remain.
del _path, _spec, _launcher
