"""`geni-am image build|list|show|delete|verify`: the site's guest images."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def images_dir(args: argparse.Namespace) -> Path:
    if args.images:
        return Path(args.images)
    state = args.state_dir or os.environ.get("GENI_AM_STATE_DIR") or str(
        Path.home() / ".local/state/geni-am")
    return Path(state).expanduser() / "images"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("image", help="build and list guest images (containers, VMs)")
    p.add_argument("--state-dir", help="the AM's state directory (images live in <state-dir>/images)")
    p.add_argument("--images", help="the image store folder itself (overrides --state-dir)")
    isub = p.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    b = isub.add_parser("build", help="build an image from Debian packages with a recipe")
    b.add_argument("recipe", nargs="?", help="recipe name (omit to list recipes)")
    b.add_argument("--name", help="image name (default: the recipe's name)")
    b.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="recipe option (repeatable)")
    b.set_defaults(func=_build)
    ls = isub.add_parser("list", help="list images with their checksums")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    for name, fn, text in (("show", _show, "one image's record"),
                           ("delete", _delete, "remove an image name (and its content if unused)"),
                           ("verify", _verify, "recompute an image's checksum")):
        q = isub.add_parser(name, help=text)
        q.add_argument("name")
        q.set_defaults(func=fn)


def _store(args: argparse.Namespace):
    from drivers.images.store import ImageStore
    return ImageStore(images_dir(args))


def _fail(exc: Exception) -> int:
    print(f"geni-am image: {exc}", file=sys.stderr)
    return 1


def _build(args: argparse.Namespace) -> int:
    from drivers.images import recipes
    from drivers.images.store import ImageError
    if not args.recipe:
        for r in recipes.recipes().values():
            print(f"{r.name:24} {r.kind:7} {r.description}")
        return 0
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            return _fail(ValueError(f"option {item!r} is not KEY=VALUE"))
        options[key] = value
    try:
        image = recipes.build(_store(args), args.recipe, args.name, options)
    except ImageError as exc:
        return _fail(exc)
    print(f"{image.name} {image.digest} {image.size} bytes")
    return 0


def _list(args: argparse.Namespace) -> int:
    from drivers.images.store import image_dict
    images = _store(args).list()
    if args.json:
        print(json.dumps([image_dict(i) for i in images], indent=1))
        return 0
    for i in images:
        print(f"{i.name:24} {i.kind:7} {i.size / 2**20:9.1f} MiB  {i.digest}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from drivers.images.store import ImageError, image_dict
    try:
        print(json.dumps(image_dict(_store(args).get(args.name)), indent=1))
    except ImageError as exc:
        return _fail(exc)
    return 0


def _delete(args: argparse.Namespace) -> int:
    from drivers.images.store import ImageError
    try:
        image = _store(args).delete(args.name)
    except ImageError as exc:
        return _fail(exc)
    print(f"deleted {image.name} ({image.digest})")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from drivers.images.store import ImageError
    try:
        ok = _store(args).verify(args.name)
    except ImageError as exc:
        return _fail(exc)
    print("ok" if ok else "checksum mismatch")
    return 0 if ok else 1
