"""Xen hosts through libvirt: VM slivers, guest/Dom0 forwarding for virtual routers."""
from drivers.xen.driver import SYNC_ROUTES, XEN_SLIVER_TYPES, XenDriver

__all__ = ["SYNC_ROUTES", "XEN_SLIVER_TYPES", "XenDriver"]
