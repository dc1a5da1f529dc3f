"""Images of container slivers through the API: the ProtoGENI AM API extension's CreateImage,
ListImages and DeleteImage (same names and arguments), on every driver that keeps images.

An image is named `urn:publicid:IDN+<authority>+image+<name>`; it belongs to the project of the
slice it was made from (the slice URN's authority, e.g. `ch.geni.net:myproject`) and records its
creator. Only its creator (or an operator) may delete it, and never while a sliver runs on it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from am.errors import GeniCode, GeniError
from am.service.contract import Principal
from am.store import spec_from_dict
from credentials.urn import URNError, parse_urn
from drivers.base import DriverError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ImageRef:
    urn: str
    url: str
    name: str
    owner: str
    creator: str
    digest: str
    size: int


class Images:
    def __init__(self, aggregate):
        self.agg = aggregate
        self.authority = aggregate.settings.authority

    def _drivers(self) -> list[Any]:
        return [d for d in self.agg.site.drivers.values() if d.capabilities.images]

    def urn(self, name: str) -> str:
        return f"urn:publicid:IDN+{self.authority}+image+{name}"

    def _ref(self, image) -> ImageRef:
        return ImageRef(urn=self.urn(image.name), url=f"{self.urn(image.name)}#{image.digest}",
                        name=image.name, owner=image.owner,
                        creator=str(image.meta.get("creator", "")), digest=image.digest,
                        size=image.size)

    def create(self, principal: Principal, slice_urn: str, name: str,
               sliver_urn: str) -> ImageRef:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise GeniError(GeniCode.BADARGS, f"image name {name!r} must be 1-64 letters, "
                                              "digits, '.', '_' or '-'")
        agg = self.agg
        with agg._db(), agg.store.read() as session:
            target = agg._target(session, [sliver_urn])
            agg._require_live(target, "snapshot")
            if target.slice_urn != slice_urn:
                raise GeniError(GeniCode.BADARGS, f"sliver {sliver_urn} is not in {slice_urn}")
            row = target.slivers[0]
            if row.allocation_state != "geni_provisioned":
                raise GeniError(GeniCode.BADARGS, f"sliver {sliver_urn} is not provisioned")
            spec = spec_from_dict(row.spec)
            driver = agg.site.drivers.get(row.driver)
        if driver is None or not driver.capabilities.images:
            raise GeniError(GeniCode.UNSUPPORTED, f"sliver {sliver_urn} is not a container; "
                                                  "only containers' file systems become images")
        if any(self._find(d, name) for d in self._drivers()):
            raise GeniError(GeniCode.ALREADYEXISTS, f"image {name} already exists")
        try:
            image = driver.create_image(spec, name, owner=_project(slice_urn),
                                        creator=principal.urn)
        except DriverError as exc:
            raise GeniError(GeniCode.ERROR, f"CreateImage {name}: {exc}") from None
        self._readvertise()
        return self._ref(image)

    def _readvertise(self) -> None:
        """The node's disk images changed: rebuild the components and the advertisement."""
        self.agg.site.__dict__.pop("components", None)
        with self.agg._ad_lock:
            self.agg._ads.clear()

    def list(self, principal: Principal, creator_urn: str) -> list[ImageRef]:
        _check_urn(creator_urn, "user", "creator_urn")
        return [self._ref(i) for d in self._drivers() for i in d.list_images()
                if str(i.meta.get("creator", "")).lower() == creator_urn.lower()]

    def delete(self, principal: Principal, image_urn: str) -> ImageRef:
        name = _check_urn(image_urn, "image", "image_urn")
        for driver in self._drivers():
            image = self._find(driver, name)
            if image is None:
                continue
            creator = str(image.meta.get("creator", ""))
            if creator.lower() != principal.urn.lower() and not principal.is_operator:
                raise GeniError(GeniCode.FORBIDDEN, f"image {name} was made by "
                                                    f"{creator or 'the site'}, not by you")
            try:
                driver.delete_image(name)
            except DriverError as exc:
                raise GeniError(GeniCode.BUSY if "in use" in str(exc) else GeniCode.ERROR,
                                f"DeleteImage {name}: {exc}") from None
            self._readvertise()
            return self._ref(image)
        raise GeniError(GeniCode.SEARCHFAILED, f"no image {image_urn} at this aggregate")

    @staticmethod
    def _find(driver, name: str):
        return next((i for i in driver.list_images() if i.name == name), None)


def _project(slice_urn: str) -> str:
    """A slice's project: its URN's authority (`ch.geni.net:proj` of `...+slice+x`)."""
    return parse_urn(slice_urn).authority


def _check_urn(urn: Any, kind: str, what: str) -> str:
    try:
        parsed = parse_urn(urn) if isinstance(urn, str) else None
    except URNError as exc:
        raise GeniError(GeniCode.BADARGS, f"{what}: {exc}") from None
    if parsed is None or parsed.type != kind:
        raise GeniError(GeniCode.BADARGS, f"{what} must be a {kind} URN, not {urn!r}")
    return parsed.name


__all__ = ["ImageRef", "Images"]
