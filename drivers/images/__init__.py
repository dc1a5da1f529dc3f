"""Guest images: a content-addressed store shared by every driver that boots guests.

Containers (the vserver driver) and virtual machines (the xen/libvirt driver) both boot from
images built out of Debian packages with no download beyond the package archive. This package
holds what they share: the store (`store.ImageStore`), unpacking Debian packages without
installing them (`debs`), and the registry of build recipes (`recipes`) behind
`geni-am image build`. Each driver contributes its own recipes.
"""
from drivers.images.store import Image, ImageError, ImageStore

__all__ = ["Image", "ImageError", "ImageStore"]
