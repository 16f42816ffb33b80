"""Plugins: a user's own parts, registered by importing their file, so the CLI and sweeps name them like ours.

A plugin is a Python file (or an importable module) whose top level calls the
registries' decorators — ``register_criterion``, ``register_allocator``,
``register_recovery``, ``register_augmentation``, ``register_model``,
``register_method`` — exactly as fewprune's own parts do. ``fewprune --plugin
FILE.py …``, the ``FEWPRUNE_PLUGINS`` environment variable and a sweep
config's ``plugins:`` list import them; each is imported once per process.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

ENVIRONMENT = "FEWPRUNE_PLUGINS"  # plugins to import in every command, separated like PATH
_loaded: dict[str, ModuleType] = {}


class PluginError(ImportError):
    """A plugin could not be found or failed while importing; the message names it."""


def load(spec: str, base: str | Path | None = None) -> ModuleType:
    """Import ``spec``, a ``.py`` file (relative to ``base`` when given) or a module name, once per process."""
    if spec.endswith(".py"):
        path = Path(spec).expanduser()
        path = (Path(base) / path if base is not None and not path.is_absolute() else path).resolve()
        key = str(path)
        if key in _loaded:
            return _loaded[key]
        if not path.is_file():
            raise PluginError(f"plugin {spec}: no such file ({path})")
        name = f"fewprune_plugin_{path.stem}_{hashlib.sha256(key.encode()).hexdigest()[:8]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # so its classes pickle (the Ray executor sends jobs to other processes)
        try:
            module_spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise PluginError(f"plugin {spec} failed while importing: {type(error).__name__}: {error}") from error
    else:
        key = spec
        if key in _loaded:
            return _loaded[key]
        try:
            module = importlib.import_module(spec)
        except Exception as error:
            raise PluginError(f"plugin {spec}: {type(error).__name__}: {error} (give a path to a .py file, or a "
                              "module on the Python path)") from error
    _loaded[key] = module
    return module


def load_all(specs, base: str | Path | None = None) -> list[ModuleType]:
    """:func:`load` every spec in order."""
    return [load(spec, base) for spec in specs]


def from_environment() -> list[ModuleType]:
    """Import the plugins ``FEWPRUNE_PLUGINS`` names (separated by ``os.pathsep``, like PATH)."""
    return load_all(s for s in os.environ.get(ENVIRONMENT, "").split(os.pathsep) if s.strip())
