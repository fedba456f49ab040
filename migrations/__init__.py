"""flywheel's Alembic script directory (env.py, script.py.mako, versions/), shipped as a package of its own.

`flywheel.store.migrate` finds it through `importlib.resources`, in a checkout and in an installed wheel alike.
"""

OWNER = "flywheel"  # tells this package apart from another top-level `migrations` that may shadow it
