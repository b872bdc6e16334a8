"""Default Gunicorn configuration of asgi-start.

Under ``python start.py`` this file plans nothing: start.py has computed every
setting once and left them in the JSON file named by ``ASGI_START_OPTIONS``;
this file only sets them. Run by hand, with start.py beside it, it plans from
the environment through start.py:

    gunicorn -c gunicorn_conf.py main:app

To extend it rather than replace it, begin your own config file with

    import runpy
    globals().update(runpy.run_path("/gunicorn_conf.py"))  # the path of this file

and set below that line only what you change.
"""


def _asgi_start_options():
    import os

    path = os.environ.get("ASGI_START_OPTIONS")
    if path:
        import json

        with open(path, encoding="utf-8") as file:
            options = json.load(file)
    else:
        # By hand: start.py, loaded as a module (its cached bytecode is used), as `asgi_start`,
        # the name under which the servers also find its log formatters and hooks.
        import importlib.util
        import sys

        launcher_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "start.py")
        spec = importlib.util.spec_from_file_location("asgi_start", launcher_path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"asgi-start: error: cannot load {launcher_path}, which gunicorn_conf.py needs beside it")
        launcher = importlib.util.module_from_spec(spec)
        sys.modules.setdefault("asgi_start", launcher)
        spec.loader.exec_module(launcher)
        options = launcher.gunicorn_config()
    # Hooks are code: the options name their functions in the module asgi_start.
    hooks = options.pop("asgi_start_hooks", {})
    if hooks:
        import asgi_start

        options.update({hook: getattr(asgi_start, function) for hook, function in hooks.items()})
    return options


globals().update(_asgi_start_options())
del _asgi_start_options
