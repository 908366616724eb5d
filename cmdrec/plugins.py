"""Components of your own (backbones, fusions, losses, readers, derived features) are registered by
importing the module that defines them. The `cmdrec` command imports, before it reads any config,
every module named in the `CMDREC_PLUGINS` environment variable (comma-separated) and every entry
point of the `cmdrec.plugins` group that an installed package declares; Dask workers and distributed
training ranks do the same, so they know the same components."""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

from cmdrec.errors import InputError

ENVIRONMENT = "CMDREC_PLUGINS"
ENTRY_POINT_GROUP = "cmdrec.plugins"
_loaded: set[str] = set()


def load_plugins() -> list[str]:
    """Import every configured plugin once; returns the names loaded by this call."""
    loaded = []
    for name in [n.strip() for n in os.environ.get(ENVIRONMENT, "").split(",") if n.strip()]:
        if name not in _loaded:
            try:
                importlib.import_module(name)
            except Exception as error:
                raise InputError(f"{ENVIRONMENT}: cannot import plugin {name!r}: {error}") from error
            _loaded.add(name)
            loaded.append(name)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        key = f"{point.name} = {point.value}"
        if key not in _loaded:
            try:
                point.load()
            except Exception as error:
                raise InputError(f"entry point {key!r} of {ENTRY_POINT_GROUP}: cannot load it: {error}") from error
            _loaded.add(key)
            loaded.append(key)
    return loaded
