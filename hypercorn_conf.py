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

import os
import runpy

_launcher = runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "start.py"))
globals().update(_launcher["hypercorn_config"]())
# Hypercorn copies every public name here into its Config and pickles that for
# its spawned workers, so only plain values may remain.
del _launcher
