"""Build recipes behind `geni-am image build RECIPE`.

A driver contributes recipes from its own module (listed in RECIPE_MODULES) with the
`recipe` decorator. A recipe fills a staging `data/` directory from Debian packages and returns
facts for the image record (kernel version, the files a driver boots from...). The store then
seals it content-addressed, so rebuilding the same packages yields the same image.
"""
from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.images.store import Image, ImageError, ImageStore

# Modules that register recipes; a module that is not there (yet) is skipped.
RECIPE_MODULES: tuple[str, ...] = (
    "drivers.vserver.images",    # container root filesystems
    "drivers.xen.images",        # VM kernels, initramfs and disks
)

BuildFn = Callable[[Path, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str                   # the Image.kind it makes
    description: str
    build: BuildFn
    options: dict[str, str] = field(default_factory=dict)   # option -> help


_RECIPES: dict[str, Recipe] = {}


def recipe(name: str, *, kind: str, description: str,
           options: dict[str, str] | None = None) -> Callable[[BuildFn], BuildFn]:
    def register(fn: BuildFn) -> BuildFn:
        _RECIPES[name] = Recipe(name, kind, description, fn, dict(options or {}))
        return fn
    return register


def recipes() -> dict[str, Recipe]:
    for module in RECIPE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return dict(sorted(_RECIPES.items()))


def build(store: ImageStore, recipe_name: str, image_name: str | None = None,
          options: dict[str, Any] | None = None, *, description: str = "") -> Image:
    """Run a recipe into a staging directory and publish the result; nothing is listed on error."""
    known = recipes()
    if recipe_name not in known:
        raise ImageError(f"no image recipe {recipe_name!r}; recipes: {', '.join(known) or 'none'}")
    r = known[recipe_name]
    staging = store.staging()
    try:
        meta = r.build(staging / "data", dict(options or {}))
        meta = {"recipe": recipe_name, **(meta or {})}
        return store.publish(staging, image_name or recipe_name, kind=r.kind,
                             description=description or r.description, meta=meta)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


__all__ = ["RECIPE_MODULES", "Recipe", "build", "recipe", "recipes"]
