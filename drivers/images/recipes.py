"""Build recipes behind `geni-am image build RECIPE`.

A driver contributes recipes from its own module (listed in RECIPE_MODULES) with the
`recipe` decorator. A recipe fills a staging `data/` directory from Debian packages and returns
facts for the image record (kernel version, the files a driver boots from...). The store then
seals it content-addressed, so rebuilding the same packages yields the same image.
"""
from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
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
          options: dict[str, Any] | None = None, *, description: str = "",
          cache: ImageStore | None = None) -> Image:
    """Run a recipe into a staging directory and publish the result; nothing is listed on error.

    With `cache` (a store shared by the host's AMs, e.g. the default site's and the tests'),
    a result built before from the same recipe source and options is copied from it (hard
    links where the filesystem allows) instead of built again; a fresh build is put there."""
    known = recipes()
    if recipe_name not in known:
        raise ImageError(f"no image recipe {recipe_name!r}; recipes: {', '.join(known) or 'none'}")
    r = known[recipe_name]
    key = _cache_key(r, options or {}) if cache is not None else ""
    if cache is not None and cache.exists(key):
        hit = cache.get(key)
        return copy_into(store, hit, image_name or recipe_name,
                         description=description or r.description)
    staging = store.staging()
    try:
        meta = r.build(staging / "data", dict(options or {}))
        meta = {"recipe": recipe_name, **(meta or {})}
        image = store.publish(staging, image_name or recipe_name, kind=r.kind,
                              description=description or r.description, meta=meta)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if cache is not None:
        copy_into(cache, image, key, description=image.description)
    return image


def copy_into(store: ImageStore, image: Image, name: str, *, description: str = "",
              owner: str = "") -> Image:
    """Publish `image` (from any store) in `store` as `name`: hard links when both share a
    filesystem, copies otherwise; content-addressed, so the digest is the same."""
    staging = store.staging()
    try:
        (staging / "data").rmdir()
        shutil.copytree(image.data, staging / "data", symlinks=True, copy_function=link_or_copy)
        return store.publish(staging, name, kind=image.kind, owner=owner,
                             description=description or image.description, meta=image.meta)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def link_or_copy(src: str, dst: str) -> None:
    """Hard-link `src` to `dst` (image files are never written), copying across filesystems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _cache_key(r: Recipe, options: dict[str, Any]) -> str:
    source = inspect.getsource(inspect.getmodule(r.build))
    blob = json.dumps([r.name, sorted((str(k), str(v)) for k, v in options.items()), source])
    return f"{r.name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


__all__ = ["RECIPE_MODULES", "Recipe", "build", "copy_into", "link_or_copy", "recipe", "recipes"]
