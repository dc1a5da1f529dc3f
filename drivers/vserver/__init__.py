"""Linux-VServer-style container slivers: network namespaces + cgroup v1 limits (docs/vserver.md)."""
from drivers.vserver.driver import SLIVER_TYPE, VServerDriver

__all__ = ["SLIVER_TYPE", "VServerDriver"]
